"""Issue 6, point 3: the broker goes away. Under steady traffic the broker is stopped for
10 s and started again (same ports, same data). The worker must come back by itself (same
process, no manual step) and every record sent before, during and after the outage must be
accounted for (tests/support/faults.py, `audit`). The test producer is idempotent and
buffers through the outage, as a marketing system's producer would.

Runs on the spare broker (tests/reliability/conftest.py), so the session broker other
tests use is not disturbed.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import Rig
from tests.support.faults import CrashableWorker, Mix, audit, roomy_config, wait_settled
from tests.support.kafka_reference import ReferenceBroker
from tests.support.worker import http_status, wait_until
from workers.embedded import free_port

pytestmark = pytest.mark.integration


def outage_run(
    broker: ReferenceBroker,
    tmp: Path,
    *,
    outages: list[tuple[float, bool]],
    rate: float,
    seed: int,
    guarantee: str = "exactly_once",
) -> dict:
    """outages: (seconds down, killed rather than stopped) in turn."""
    started = time.monotonic()
    rig = Rig(broker, tmp)
    try:
        mix = Mix(seed, rig.prefix.rstrip("."))
        env = {"LEADROUTER_PROCESSING_GUARANTEE": guarantee}
        worker = rig.worker("w1", extra_env=env).launch().wait_ready(120)
        pid = worker.pid
        traffic = rig.traffic(mix, rate).start()
        seen = mix.assigned_seen
        wait_until(lambda: mix.assigned_seen > seen + 50, 60, "routing before the outage")
        recoveries = []
        for down, kill in outages:
            broker.stop_broker(kill=kill)
            time.sleep(down)  # the outage itself
            broker.start_broker()
            back = time.monotonic()
            seen = mix.assigned_seen
            try:
                wait_until(lambda seen=seen: mix.assigned_seen > seen + 50, 90, "recovery")
            except AssertionError:
                health = http_status(worker.metrics_url.replace("/metrics", "/healthz"))
                raise AssertionError(
                    f"no lead routed 90 s after the broker came back (worker alive: "
                    f"{worker.alive()}, /healthz {health}); log:\n{worker.log_tail(15)}"
                ) from None
            recoveries.append(round(time.monotonic() - back, 1))
        traffic.stop(flush_timeout=180)
        wait_settled(rig.bootstrap, rig.prefix, rig.group, timeout=180)
        assert worker.alive() and worker.pid == pid, "the worker was not the same process"
        assert http_status(worker.metrics_url.replace("/metrics", "/readyz")) == 200
        result = audit(rig.bootstrap, rig.prefix, mix.ledger, repeats=guarantee == "at_least_once")
        assert not result.problems, result.summary()
        assert result.lost == 0 and result.duplicated == 0, result.summary()
        assert "Traceback" not in worker.log_text(), worker.log_tail(80)
        return {
            **result.figures(),
            "outages": " ".join(f"{d:g}s{'(kill)' if k else ''}" for d, k in outages),
            "recovered_after": " ".join(f"{r}s" for r in recoveries),
            "seconds": round(time.monotonic() - started),
        }
    finally:
        rig.close()
        if not broker.is_running:
            broker.start_broker()


@pytest.mark.long
def test_broker_down_ten_seconds_under_traffic(spare, tmp_path, figures):
    figures(outage_run(spare, tmp_path, outages=[(10, False)], rate=300, seed=10))


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_broker_killed_under_traffic(spare, tmp_path, figures, guarantee):
    """The short version of the long test below: the broker SIGKILLed (no clean shutdown,
    open transactions and unflushed batches cut) and back 5 s later."""
    outages = [(5, True)]
    figures(outage_run(spare, tmp_path, outages=outages, rate=300, seed=12, guarantee=guarantee))


@pytest.mark.long
def test_broker_killed_and_stopped_repeatedly(spare, tmp_path, figures):
    outages = [(10, True), (30, False), (5, True)]
    figures(outage_run(spare, tmp_path, outages=outages, rate=600, seed=11))


def test_sigterm_while_the_broker_is_unreachable_stops_promptly(tmp_path):
    """A deploy or scale-down while the broker is away: the worker must still honour
    SIGTERM within a grace period, not sit out its connection retries first."""
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    worker = CrashableWorker(
        nobody, roomy_config(tmp_path / "config"), tmp_path / "w1", prefix="x.", group="g"
    ).launch()
    try:
        wait_until(
            lambda: http_status(worker.metrics_url.replace("/metrics", "/healthz")) == 200,
            30,
            "the worker's health endpoint",
        )
        time.sleep(1)  # inside its first attempt to reach the broker
        assert worker.process is not None
        asked = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(15)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {time.monotonic() - asked:.0f}s after SIGTERM; log:\n"
                f"{worker.log_tail(8)}"
            ) from None
        took = time.monotonic() - asked
        assert took < 15
    finally:
        worker.kill()
