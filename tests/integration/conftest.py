"""Fixtures for tests that run `leadrouter worker` against the reference broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.kafka_reference import ReferenceBroker
from tests.support.worker import Topics, WorkerProcess, always_open_config, unique

pytestmark = pytest.mark.integration


class Lane:
    """One isolated lane on the shared broker: a topic prefix, a group, its workers."""

    def __init__(self, broker: ReferenceBroker, tmp: Path) -> None:
        self.broker = broker
        self.bootstrap = broker.bootstrap_servers
        self.prefix = unique("t") + "."
        self.group = unique("g")
        self.tmp = tmp
        self.config_dir = always_open_config(tmp / "config")
        self.topics = Topics(self.bootstrap, self.prefix)
        self.workers: list[WorkerProcess] = []

    def worker(self, name: str = "w1", **kw) -> WorkerProcess:
        w = WorkerProcess(
            self.bootstrap,
            kw.pop("config_dir", self.config_dir),
            self.tmp / name,
            prefix=self.prefix,
            group=self.group,
            **kw,
        )
        self.workers.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.topics.close()


@pytest.fixture
def lane(kafka_broker: ReferenceBroker, tmp_path: Path) -> Iterator[Lane]:
    lane = Lane(kafka_broker, tmp_path)
    try:
        yield lane
    finally:
        lane.close()


@pytest.fixture
def started(lane: Lane) -> Callable[..., WorkerProcess]:
    def start(name: str = "w1", **kw) -> WorkerProcess:
        return lane.worker(name, **kw).start()

    return start
