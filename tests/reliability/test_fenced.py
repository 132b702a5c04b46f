"""A worker whose transactional producer is fenced (another producer took its transactional
id, or the broker aborted a transaction that outlived transaction.timeout.ms and bumped the
epoch) starts a new session with a new producer and goes on routing, losing nothing and
routing nobody twice. It used to exit: closing the fenced producer raised in the teardown
that should have restarted the session (seen once in `make bench`, then twice more in other
forms). A fenced producer is now closed without a flush."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from tests.reliability.conftest import Rig
from tests.support.faults import CrashableWorker, Mix, audit, wait_settled
from tests.support.worker import wait_until

pytestmark = pytest.mark.integration


def sessions(worker: CrashableWorker) -> int:
    return worker.log_text().count("consuming 6 topics (exactly_once)")


def test_a_fenced_worker_restarts_its_session_and_keeps_routing(rig: Rig, figures):
    mix = Mix(21, rig.prefix.rstrip("."))
    env = {"LEADROUTER_INSTANCE_ID": "fenced-1", "LEADROUTER_PROCESSING_GUARANTEE": "exactly_once"}
    worker = rig.worker("w1", extra_env=env).launch().wait_ready()
    traffic = rig.traffic(mix, 800).start()  # busy: a fence finds produce requests in flight
    wait_until(lambda: mix.assigned_seen > 30, 60, "routing before the fence")
    for fence in range(1, 4):
        usurper = Producer(
            {"bootstrap.servers": rig.bootstrap, "transactional.id": f"{rig.group}-fenced-1"}
        )
        usurper.init_transactions(30)  # the broker bumps the epoch: the worker is fenced
        wait_until(
            lambda fence=fence: sessions(worker) > fence or not worker.alive(),
            90,
            "the worker to see the fence and start a new session",
        )
        assert worker.alive(), f"the worker exited after fence {fence}:\n{worker.log_tail()}"
        seen = mix.assigned_seen  # the next fence only once the new session routes
        wait_until(lambda seen=seen: mix.assigned_seen > seen + 30, 90, "routing after the fence")
    assert worker.alive(), worker.log_tail()
    traffic.stop()
    wait_settled(rig.bootstrap, rig.prefix, rig.group, timeout=120)
    result = audit(rig.bootstrap, rig.prefix, mix.ledger)
    log = worker.log_text()
    worker.stop()
    assert not result.problems, result.summary()
    assert result.lost == 0 and result.duplicated == 0, result.summary()
    assert result.assigned > 30 and result.deadletters > 0
    assert "Traceback" not in log, log[log.index("Traceback") :][:4000]
    # a fenced producer is closed without a flush: confluent-kafka's flush of it has raised a
    # SystemError with no exception set, which ended the process (a clean-clone run saw it)
    assert "producer closed without flushing after a fatal error" in log, log[-4000:]
    figures(result.figures())
