"""A smoke subset on the embedded Tansu broker (the one `leadrouter demo` starts), and the
demo itself: it runs, shows a summary with routed leads and stops everything it started.

The admin commands run here as on Apache Kafka (issue 18): `topics apply` twice changes
nothing the second time and `topics check` right after says the topics match. What Tansu
0.6 answers differently, and how workers/admin.py copes: it drops the connection on a
DescribeConfigs that names keys (so every config is asked for), it reports only the configs
set on a topic (a key it never got is "not reported", not drift), it has no
CreatePartitions (partitions cannot be raised there) and no legacy AlterConfigs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import orjson
import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

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
        assert re.search(r"consuming 6 topics \((exactly|at_least)_once\)", worker.log_tail(200))
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
    # nothing left behind: the Tansu this demo started (it says where) is gone with it
    started = re.search(r"embedded broker \(Tansu\) on (127\.0\.0\.1:\d+)", out)
    assert started, out[:2000]
    listener = f"tcp://{started[1]}"
    assert not _processes_with(listener), f"the demo's broker ({listener}) outlived it"


def test_the_leftover_check_sees_a_running_broker(tansu: EmbeddedBroker):
    """The check above can fail: it finds a Tansu that is running."""
    assert tansu.process is not None
    assert _processes_with(f"tcp://{tansu.bootstrap_servers}") == [tansu.process.pid]


def _processes_with(argument: str) -> list[int]:
    """Processes whose command line has `argument` (read from /proc: no pgrep pattern to
    match too much or too little)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if argument.encode() in args:
            found.append(int(entry.name))
    return found


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


# --------------------------------------------------------------------------- admin commands
def leadrouter(*args: str, bootstrap: str, prefix: str) -> subprocess.CompletedProcess[str]:
    """The real command line, on the embedded broker, for one topic prefix."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LEADROUTER_", "KAFKA_"))},
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LEADROUTER_TOPIC_PREFIX": prefix,
    }
    return subprocess.run(
        [str(LEADROUTER), *args], env=env, capture_output=True, text=True, timeout=120
    )


def topic_names(prefix: str) -> list[str]:
    specs = cat.catalogue(
        ["fast-lane", "enterprise-amer", "enterprise-emea", "enterprise-apac", "mid-market", "smb"],
        prefix=prefix,
    )
    return [s.name for s in specs]


def test_topics_apply_twice_and_check_twice_on_embedded_broker(tansu: EmbeddedBroker):
    prefix = unique("adm") + "."
    run = partial(leadrouter, bootstrap=tansu.bootstrap_servers, prefix=prefix)
    names = topic_names(prefix)

    before = run("topics", "check")
    assert before.returncode == 1, before.stderr
    assert before.stdout.splitlines() == [f"{n}: missing" for n in names]
    assert "drift: 16 differences" in before.stderr

    first = run("topics", "apply")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        *(f"{n}: created ({1 if n.endswith('.config') else 6} partitions)" for n in names),
        "16 topics in the catalogue; 16 changes",
    ]
    for attempt in (1, 2):
        again = run("topics", "apply")
        assert again.returncode == 0, f"apply #{attempt + 1}: {again.stderr[-3000:]}"
        assert again.stdout == "16 topics in the catalogue; 0 changes\n", again.stdout
    for attempt in (1, 2):
        ok = run("topics", "check")
        assert ok.returncode == 0, f"check #{attempt}: {ok.stdout}{ok.stderr[-3000:]}"
        assert ok.stdout == "ok: 16 topics match the catalogue\n"
        assert "not reported" not in ok.stderr

    # drift made behind leadrouter's back is seen exactly, and apply puts it right
    accounts = f"{prefix}reference.accounts"
    admin = KafkaAdminClient(bootstrap_servers=tansu.bootstrap_servers)
    try:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, accounts, configs={"cleanup.policy": "delete"}
                )
            ],
            incremental=True,
            raise_on_unknown=False,
        )
    finally:
        admin.close()
    drifted = run("topics", "check")
    assert drifted.returncode == 1
    assert drifted.stdout == f"{accounts}: cleanup.policy=delete, catalogue says compact\n"
    assert "drift: 1 differences" in drifted.stderr
    fixed = run("topics", "apply")
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.splitlines() == [
        f"{accounts}: set cleanup.policy=compact",
        "16 topics in the catalogue; 1 changes",
    ]
    assert run("topics", "check").returncode == 0


def test_what_tansu_cannot_report_or_change_is_said_not_hidden(tansu: EmbeddedBroker):
    """Topics someone else created: one without configs (Tansu then reports none), one with
    too few partitions (Tansu cannot add any)."""
    prefix = unique("bare") + "."
    run = partial(leadrouter, bootstrap=tansu.bootstrap_servers, prefix=prefix)
    accounts, deadletter = f"{prefix}reference.accounts", f"{prefix}leads.deadletter"
    admin = KafkaAdminClient(bootstrap_servers=tansu.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(accounts, 6, 1), NewTopic(deadletter, 3, 1)])
    finally:
        admin.close()

    check = run("topics", "check")
    assert check.returncode == 1
    assert f"{deadletter}: 3 partitions, catalogue says 6" in check.stdout.splitlines()
    assert accounts not in check.stdout  # not reported is not drift ...
    assert f"{accounts}: cleanup.policy not reported by this broker" in check.stderr  # ... said
    assert f"{deadletter}: retention.ms not reported by this broker" in check.stderr

    first = run("topics", "apply")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert f"{accounts}: set cleanup.policy=compact (was not reported by this broker)" in lines
    assert (
        f"{deadletter}: set cleanup.policy=delete (was not reported by this broker), "
        f"retention.ms=2419200000 (was not reported by this broker)"
    ) in lines
    cannot = (
        f"{deadletter}: 3 partitions, catalogue says 6; this broker cannot add partitions "
        "(no CreatePartitions), left as is"
    )
    assert cannot in lines
    assert lines[-1] == "16 topics in the catalogue; 17 changes"  # 14 created, 2 set, 1 note

    again = run("topics", "apply")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [cannot, "16 topics in the catalogue; 1 changes"]
    for _ in (1, 2):
        after = run("topics", "check")
        assert after.returncode == 1  # the partitions, and only they
        assert after.stdout == f"{deadletter}: 3 partitions, catalogue says 6\n"
        assert "not reported" not in after.stderr
