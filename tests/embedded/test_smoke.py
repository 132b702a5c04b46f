"""A smoke subset on the embedded Tansu broker (the one `leadrouter demo` starts), and the
demo itself: it runs, shows a summary with routed leads and stops everything it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.integration.test_pipeline import ROUTED, form
from tests.support.worker import LEADROUTER, Topics, WorkerProcess, always_open_config, unique
from topics import catalogue as cat
from workers.core.identity import lead_id
from workers.embedded import EmbeddedBroker

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("tansu") / "broker.log"
    with EmbeddedBroker(log_path=log) as broker:
        yield broker


def test_pipeline_smoke_on_embedded_broker(tansu: EmbeddedBroker, tmp_path: Path):
    prefix = unique("smoke") + "."
    worker = WorkerProcess(
        tansu.bootstrap_servers,
        always_open_config(tmp_path / "config"),
        tmp_path / "w",
        prefix=prefix,
        group=unique("g"),
        store="memory",
    )
    topics = Topics(tansu.bootstrap_servers, prefix)
    try:
        worker.start(ready_timeout=120)
        event = form("smoke@acme-corp.com", "demo-request")
        topics.send(cat.FORM_FILLS, event)
        topics.send(cat.FORM_FILLS, event)  # a repeat is processed once
        topics.send(cat.FORM_FILLS, b"{oops", key=b"bad")
        topics.flush()
        routed = topics.read(ROUTED, lambda r: len(r) >= 1, 90, "the routed lead")
        lead = orjson.loads(routed[0].value)
        assert lead["lead_id"] == lead_id("smoke@acme-corp.com")
        assert lead["queue"] == "fast-lane" and lead["rep_id"]
        dead = topics.read([cat.DEADLETTER], lambda r: len(r) >= 1, 60, "the dead letter")
        assert dict(dead[0].headers)["error.reason"] == b"invalid_json"
        # auto: transactions only when a committed one is readable on this broker
        assert re.search(r"consuming 5 topics \((exactly|at_least)_once\)", worker.log_tail(200))
        time.sleep(1)  # a duplicate would have produced a second record by now
        again = topics.read(ROUTED, lambda r: len(r) >= 1, 30, "routed leads")
        assert len(again) == 1
    finally:
        worker.stop()
        topics.close()


def test_demo_runs_and_stops_cleanly(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["LEADROUTER_METRICS_PORT"] = "0"
    env["LEADROUTER_CONFIG_DIR"] = str(always_open_config(tmp_path / "config"))
    result = subprocess.run(
        [str(LEADROUTER), "demo", "--duration", "25", "--rate", "150", "--seed", "1"],
        env=env,
        capture_output=True,
        timeout=180,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert "embedded broker (Tansu)" in out
    assert "routed per queue" in out and "speed to lead" in out and "dead letters" in out
    routed = int(out.strip().splitlines()[-1].removeprefix("routed leads: "))
    assert routed > 0
    assert "fast-lane=" in out
    # nothing left behind: no Tansu broker process outlives the demo
    survivors = subprocess.run(["pgrep", "-f", "tansu.*broker"], capture_output=True, text=True)
    assert str(result.returncode) and not [
        pid for pid in survivors.stdout.split() if _parent_gone_child_of(pid)
    ]


def _parent_gone_child_of(pid: str) -> bool:
    """A Tansu whose parent is init was orphaned by a demo; our own fixture's is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().split()
    except OSError:
        return False
    return stat[3] == "1"


def test_demo_stops_on_ctrl_c(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["LEADROUTER_METRICS_PORT"] = "0"
    proc = subprocess.Popen(
        [str(LEADROUTER), "demo", "--rate", "50"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        seen = b""
        while b"events in" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert b"events in" in seen, "the live summary never printed"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
