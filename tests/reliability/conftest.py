"""Fixtures for the reliability tests (issue 6): a rig of workers and traffic on one topic
prefix and group, always torn down, and the figures each test reports, printed at the end
of the run (records sent, routed, dead-lettered, lost, duplicated)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.faults import CrashableWorker, Mix, Traffic, roomy_config
from tests.support.kafka_reference import ReferenceBroker
from tests.support.worker import unique

FIGURES: dict[str, dict[str, Any]] = {}


class Rig:
    """One isolated lane: a topic prefix, a consumer group, its workers and its traffic."""

    def __init__(self, broker: ReferenceBroker, tmp: Path) -> None:
        self.broker = broker
        self.bootstrap = broker.bootstrap_servers
        self.prefix = unique("r") + "."
        self.group = unique("g")
        self.tmp = tmp
        self.config_dir = roomy_config(tmp / "config")
        self.workers: list[CrashableWorker] = []
        self.traffics: list[Traffic] = []

    def worker(self, name: str = "w1", **kw: Any) -> CrashableWorker:
        w = CrashableWorker(
            kw.pop("bootstrap", self.bootstrap),
            kw.pop("config_dir", self.config_dir),
            self.tmp / name,
            prefix=self.prefix,
            group=self.group,
            **kw,
        )
        self.workers.append(w)
        return w

    def traffic(self, mix: Mix, rate: float) -> Traffic:
        t = Traffic(self.bootstrap, self.prefix, mix, rate)
        self.traffics.append(t)
        return t

    def close(self) -> None:
        for t in self.traffics:
            t.close()
        for w in self.workers:
            w.stop(timeout=20)


@pytest.fixture
def rig(kafka_broker: ReferenceBroker, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(kafka_broker, tmp_path)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(scope="session")
def spare_broker() -> Iterator[ReferenceBroker]:
    """A second reference broker, with the SASL_SSL/SCRAM listener (certificates made by
    openssl for the run), for the tests that stop the broker or need TLS: the session
    broker other tests share is never disturbed."""
    with ReferenceBroker(sasl_ssl=True) as broker:
        yield broker


@pytest.fixture
def spare(spare_broker: ReferenceBroker) -> ReferenceBroker:
    """The spare broker, running (a test that stopped it and failed may have left it down)."""
    if not spare_broker.is_running:
        spare_broker.start_broker()
    return spare_broker


@pytest.fixture
def figures(request: pytest.FixtureRequest):
    """Call with a dict of figures; they are printed in the run's summary (and written to
    $LEADROUTER_FIGURES as JSON when that is set)."""

    def report(values: dict[str, Any]) -> None:
        FIGURES[request.node.nodeid] = values

    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for nodeid, values in FIGURES.items():
        terminalreporter.write_line(nodeid.rpartition("::")[2])
        terminalreporter.write_line("    " + " ".join(f"{k}={v}" for k, v in values.items()))
    target = os.environ.get("LEADROUTER_FIGURES")
    if target:
        Path(target).write_text(json.dumps(FIGURES, indent=2))
