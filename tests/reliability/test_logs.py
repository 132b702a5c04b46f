"""Issue 18, point 2: quiet, structured logs.

A real `leadrouter worker` on the reference broker loses the broker for ten seconds: its
stderr must stay a handful of lines (one per connection state change, not one per
reconnect attempt per client), it must route a lead afterwards, and with
LEADROUTER_LOG_FORMAT=json every line it writes must be one JSON object. Beside it, the
pieces of workers/logs.py without a broker: the broker watch on a fake clock, librdkafka's
messages as confluent-kafka hands them over, kafka-python's retries, the JSON format.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.test_pipeline import ROUTED, form
from tests.support.kafka_reference import ReferenceBroker
from tests.support.worker import (
    LEADROUTER,
    Topics,
    always_open_config,
    http_status,
    unique,
    wait_until,
)
from workers import logs
from workers.embedded import free_port

# What the worker may write to stderr while the broker is away (stop, ten seconds, start).
OUTAGE_LINE_BUDGET = 15
# ... and from the outage's start until a lead sent after it is routed: the group
# rebalances and the partitions are restored (a line each), and today the first commit
# after the outage also hangs 40 s and restarts the session (the same lines again).
RECOVERY_LINE_BUDGET = 40


def worker_command(config_dir: Path) -> list[str]:
    """`leadrouter worker --config DIR`, the installed console script."""
    return [str(LEADROUTER), "worker", "--config", str(config_dir)]


class LoggedWorker:
    """A worker whose stderr (its log) is kept apart from its stdout, line by line."""

    def __init__(self, broker: ReferenceBroker, tmp: Path, fmt: str) -> None:
        self.bootstrap = broker.bootstrap_servers
        self.prefix = unique("logs") + "."
        self.port = free_port()
        self.stderr_path = tmp / "stderr.log"
        self.stdout_path = tmp / "stdout.log"
        self.config_dir = always_open_config(tmp / "config")
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not (k.startswith("LEADROUTER_") or k.startswith("KAFKA_"))
            },
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "LEADROUTER_TOPIC_PREFIX": self.prefix,
            "LEADROUTER_GROUP_ID": unique("g"),
            "LEADROUTER_DATA_DIR": str(tmp / "data"),
            "LEADROUTER_STORE": "memory",
            "LEADROUTER_METRICS_PORT": str(self.port),
            "LEADROUTER_METRICS_HOST": "127.0.0.1",
            "LEADROUTER_LOG_FORMAT": fmt,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LoggedWorker:
        with self.stderr_path.open("wb") as err, self.stdout_path.open("wb") as out:
            self.process = subprocess.Popen(
                worker_command(self.config_dir),
                env=self.env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        wait_until(self.ready, 120, "the worker to be ready")
        return self

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited; stderr:\n{self.tail()}")
        return http_status(f"http://127.0.0.1:{self.port}/readyz") == 200

    def lines(self) -> list[str]:
        return self.stderr_path.read_text(errors="replace").splitlines()

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines()[-n:])

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def route_one(topics: Topics, email: str, timeout: float) -> None:
    """Send a fast-lane form and wait until its lead is on a routed topic."""
    topics.send("marketing.form-fills", form(email, "demo-request"))
    topics.flush()
    want = email.encode()
    topics.read(
        ROUTED,
        lambda records: any(want in r.value for r in records),
        timeout,
        f"the lead {email} to be routed",
    )


@pytest.mark.integration
# The JSON run takes as long as the text one (about 70 s) and its format is checked without
# a broker below, so it runs with `make test-long`.
@pytest.mark.parametrize("fmt", ["text", pytest.param("json", marks=pytest.mark.long)])
def test_broker_away_ten_seconds_costs_a_few_log_lines(
    spare: ReferenceBroker, tmp_path: Path, fmt: str, figures: Any
) -> None:
    worker = LoggedWorker(spare, tmp_path, fmt)
    topics: Topics | None = None
    try:
        worker.start()
        topics = Topics(spare.bootstrap_servers, worker.prefix)
        route_one(topics, "before.outage@acme-corp.com", 60)

        before = len(worker.lines())
        spare.stop_broker()
        time.sleep(10)  # the outage itself: a deliberate duration
        spare.start_broker()
        during = worker.lines()[before:]

        route_one(topics, "after.outage@acme-corp.com", 150)
        through = worker.lines()[before:]
        back = wait_until(
            lambda: [line for line in worker.lines()[before:] if "reachable again" in line],
            30,
            "the log to say the broker is reachable again",
        )
        figures({"format": fmt, "outage_lines": len(during), "until_routed_lines": len(through)})
        shown = "\n".join(through)
        assert len(during) <= OUTAGE_LINE_BUDGET, f"{len(during)} lines in the outage:\n{shown}"
        assert len(through) <= RECOVERY_LINE_BUDGET, f"{len(through)} lines:\n{shown}"
        unreachable = [line for line in during if "unreachable" in line]
        assert len(unreachable) == 1, shown  # one line for the state change, not per retry
        assert spare.bootstrap_servers in unreachable[0]
        assert len(back) == 1, shown
        assert not [line for line in worker.lines() if line.startswith("%")], (
            "librdkafka wrote to stderr itself, past Python logging:\n" + worker.tail()
        )
    finally:
        if topics is not None:
            topics.close()
        code = worker.stop()
        if not spare.is_running:
            spare.start_broker()
    assert code == 0, worker.tail()
    everything = worker.lines()
    if fmt == "json":
        for line in everything:
            entry = orjson.loads(line)  # fails the test on any line that is not JSON
            assert isinstance(entry, dict)
            assert {"time", "level", "logger", "message"} <= entry.keys(), line
        notice = next(orjson.loads(line) for line in everything if "unreachable:" in line)
        assert notice["logger"] == logs.BROKER_LOGGER and notice["level"] == "WARNING"
        assert notice["broker"] == spare.bootstrap_servers
        assert "Connection refused" in notice["detail"]
    else:
        assert all(line[:4].isdigit() for line in everything), worker.tail()  # asctime first


# --------------------------------------------------------------------- without a broker
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_watch_says_down_once_summarises_and_says_up() -> None:
    clock = Clock()
    watch = logs.BrokerWatch(clock=clock)
    said: list[logs.Notice] = []
    for i in range(40 * 20):  # 40 s of failures every 50 ms
        clock.now = 1000 + i / 20
        notice = watch.failure("10.0.0.1:9092", "Connect to ipv4#10.0.0.1:9092 failed", "c-1")
        if notice:
            said.append(notice)
    clock.now = 1040
    assert [n.message.split(" (")[0] for n in said] == [
        "Kafka broker 10.0.0.1:9092 unreachable: Connect to ipv4#10.0.0.1:9092 failed",
        "Kafka broker 10.0.0.1:9092 still unreachable after 32 s",
    ]
    assert said[1].fields["connection_errors"] == 641
    up = watch.reachable("10.0.0.1:9092")
    assert up is not None and up.level == logging.INFO
    assert up.message.startswith("Kafka broker 10.0.0.1:9092 reachable again after 40 s")
    assert watch.reachable("10.0.0.1:9092") is None  # said once


def test_watch_ignores_a_burst_delivered_late() -> None:
    """Failures queued in a client that was not polled during an outage arrive together
    after the broker is back: not a new outage."""
    clock = Clock()
    watch = logs.BrokerWatch(clock=clock)
    burst = [watch.failure("b:9092", "refused") for _ in range(200)]
    assert burst == [None] * 200
    clock.now += 15  # then nothing: forgotten, and a later failure starts afresh
    assert watch.failure("b:9092", "refused") is None
    assert watch.reachable("b:9092") is None  # nothing was announced, nothing to take back


def test_librdkafka_failures_go_to_the_watch_and_the_rest_to_logging(
    stderr_logging: io.StringIO,
) -> None:
    logs.configure_logging("INFO", "json", stream=stderr_logging)
    clock = Clock()
    sink = logs.LibrdkafkaLogger(logs.BrokerWatch(clock=clock))
    text = (
        "[thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: Connect to "
        "ipv4#127.0.0.1:9092 failed: Connection refused (after 0ms in state CONNECT)"
    )
    for _ in range(100):
        sink.log(logging.ERROR, "%s [%s] %s", "FAIL", "leadrouter#consumer-1", text)
        clock.now += 0.05
    sink.log(
        logging.WARNING,
        "%s [%s] %s",
        "SESSTMOUT",
        "leadrouter#consumer-1",
        "[thrd:main]: Consumer group session timed out",
    )
    up = {"brokers": {"127.0.0.1:9092/1": {"nodename": "127.0.0.1:9092", "state": "UP"}}}
    sink.stats(orjson.dumps(up).decode())
    entries = [orjson.loads(line) for line in stderr_logging.getvalue().splitlines()]
    assert [(e["logger"], e["level"], e["message"]) for e in entries] == [
        (
            logs.BROKER_LOGGER,
            "WARNING",
            "Kafka broker 127.0.0.1:9092 unreachable: Connect to ipv4#127.0.0.1:9092 failed: "
            "Connection refused (retrying; repeats of this error are summarised every 30 s)",
        ),
        (
            logs.KAFKA_LOGGER,
            "WARNING",
            "leadrouter#consumer-1 SESSTMOUT: Consumer group session timed out",
        ),
        (
            logs.BROKER_LOGGER,
            "INFO",
            "Kafka broker 127.0.0.1:9092 reachable again after 5 s (100 connection errors)",
        ),
    ]
    assert entries[1]["kafka_client"] == "leadrouter#consumer-1"
    assert entries[1]["facility"] == "SESSTMOUT"
    assert entries[2]["connection_errors"] == 100


@pytest.mark.parametrize(
    ("text", "broker"),
    [
        ("127.0.0.1:9092/1: Receive failed: Disconnected", "127.0.0.1:9092"),
        ("sasl_ssl://kafka-0.kafka:9093/0: SSL handshake failed", "kafka-0.kafka:9093"),
        ("TxnCoordinator: 127.0.0.1:9092: Disconnected", "127.0.0.1:9092"),
        ("GroupCoordinator/1: [::1]:9092: Connect failed", "[::1]:9092"),
    ],
)
def test_librdkafka_broker_names_are_read(text: str, broker: str) -> None:
    watch = logs.BrokerWatch()
    logs.LibrdkafkaLogger(watch).log(logging.ERROR, "%s [%s] %s", "FAIL", "c", text)
    assert list(watch.outages) == [broker]


@pytest.fixture
def stderr_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A stream for configure_logging; root logger, library levels and hooks restored."""
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(logs, "WATCH", logs.BrokerWatch())
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = (*logs.QUIET_LIBRARIES, logs.KAFKA_LOGGER)
    levels = {name: logging.getLogger(name).level for name in names}
    try:
        yield buffer
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)
        logging.captureWarnings(False)


def test_json_lines_carry_time_level_logger_message_and_extra_fields(
    stderr_logging: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADROUTER_LOG_FORMAT", "json")
    logs.configure_logging("INFO", stream=stderr_logging)
    log = logging.getLogger("leadrouter.test")
    log.info("routed %d leads", 3, extra={"queue": "fast-lane"})
    log.debug("not shown at INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    entries = [orjson.loads(line) for line in stderr_logging.getvalue().splitlines()]
    assert len(entries) == 2
    first, second = entries
    assert first["level"] == "INFO" and first["logger"] == "leadrouter.test"
    assert first["message"] == "routed 3 leads" and first["queue"] == "fast-lane"
    assert first["time"].endswith("+00:00")
    assert "ValueError: boom" in second["exception"]


def test_text_stays_the_default_and_an_unknown_format_says_so(
    stderr_logging: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEADROUTER_LOG_FORMAT", raising=False)
    logs.configure_logging("INFO", stream=stderr_logging)
    logging.getLogger("leadrouter.test").info("hello")
    logs.configure_logging("INFO", "yaml", stream=stderr_logging)
    lines = stderr_logging.getvalue().splitlines()
    assert lines[0].endswith(" INFO leadrouter.test hello")
    assert "LEADROUTER_LOG_FORMAT=yaml is not one of text, json: using text" in lines[1]


def test_kafka_python_retries_collapse(stderr_logging: io.StringIO) -> None:
    """kafka-python (the admin client) with nobody listening: three WARNING/ERROR lines per
    retry of its own, here one line saying the broker is unreachable."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    logs.configure_logging("INFO", "json", stream=stderr_logging)
    nobody = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    while time.monotonic() - started < 5:
        with pytest.raises(KafkaError):
            KafkaAdminClient(
                bootstrap_servers=nobody, bootstrap_timeout_ms=1500, reconnect_backoff_max_ms=500
            )
    entries = [orjson.loads(line) for line in stderr_logging.getvalue().splitlines()]
    assert [e["message"].split(":")[0] for e in entries] == [
        "Kafka broker (admin client) unreachable"
    ], entries
    assert (
        entries[0]["logger"] == logs.BROKER_LOGGER and entries[0]["kafka_client"] == "kafka-python"
    )


def test_configured_at_info_an_outage_reads_down_then_up_and_routine_lines_stay_out(
    stderr_logging: io.StringIO,
) -> None:
    logs.configure_logging("INFO", stream=stderr_logging)
    clock = Clock()
    sink = logs.LibrdkafkaLogger(logs.BrokerWatch(clock=clock))
    idle = "[thrd:b:9092/1]: b:9092/1: Disconnected (after 600000ms in state UP)"
    sink.log(logging.INFO, "%s [%s] %s", "FAIL", "c-1", idle)  # routine: not shown at INFO
    for i in range(100):
        clock.now = 1000 + i / 10
        sink.log(logging.ERROR, "%s [%s] %s", "FAIL", "c-1", "b:9092/1: Connection refused")
    sink.stats(
        orjson.dumps({"brokers": {"b:9092/1": {"nodename": "b:9092", "state": "UP"}}}).decode()
    )
    lines = stderr_logging.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert (
        " WARNING leadrouter.broker Kafka broker b:9092 unreachable: Connection refused" in lines[0]
    )
    assert " INFO leadrouter.broker Kafka broker b:9092 reachable again after 10 s" in lines[1]
