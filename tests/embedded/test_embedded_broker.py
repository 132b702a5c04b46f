"""The embedded broker is one process, stopped when its `with` block ends, however it was
started: a second one left running would outlive the test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.embedded import EmbeddedBroker

pytestmark = pytest.mark.embedded


def test_a_started_broker_entered_is_the_same_one_and_stopped_on_leaving(tmp_path: Path):
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    first = broker.process
    assert first is not None and first.poll() is None
    with broker as entered:
        assert entered is broker and broker.process is first  # not started a second time
    assert first.poll() is not None and broker.process is None
