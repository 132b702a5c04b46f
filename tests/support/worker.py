"""Run `leadrouter worker` as a separate process, and talk to its topics, for tests.

Each test gets its own topic prefix and consumer group on the shared broker, so tests do
not see each other's records.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from topics import catalogue as cat
from workers.embedded import free_port
from workers.settings import DEFAULT_CONFIG_DIR, WEEKDAYS

LEADROUTER = Path(sys.executable).parent / "leadrouter"
# Deadlines are generous for a loaded two-core machine already; a slower one can stretch
# every deadline that goes through `patience` (LEADROUTER_TEST_SLOWDOWN=3: three times).
SLOWDOWN = max(1.0, float(os.environ.get("LEADROUTER_TEST_SLOWDOWN") or 1))


def patience(seconds: float) -> float:
    """A deadline of `seconds`, stretched by LEADROUTER_TEST_SLOWDOWN. Only for deadlines
    (how long to wait for a condition before giving up), never for what a test asserts."""
    return seconds * SLOWDOWN


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def always_open_config(target: Path) -> Path:
    """The shipped config, with reps available around the clock, so which rep a test lead
    gets does not depend on when the test runs."""
    shutil.copytree(DEFAULT_CONFIG_DIR, target)
    reps_file = target / "reps.yaml"
    reps = yaml.safe_load(reps_file.read_text())
    for rep in reps["reps"].values():
        rep.pop("working_hours", None)
        rep.pop("out_of_office", None)
    reps_file.write_text(yaml.safe_dump(reps))
    return target


def working_day_starting_in(seconds: float) -> tuple[str, dict[str, Any], float]:
    """A rep's time zone and working hours that begin `seconds` from now, to the second, in a
    fixed-offset zone where it is midday now (so the day never crosses midnight), and the
    moment the day begins, in epoch seconds."""
    now = datetime.now(UTC)
    offset = (12 - now.hour) % 24
    offset = offset - 24 if offset > 12 else offset
    zone = f"Etc/GMT{-offset:+d}" if offset else "UTC"  # Etc/GMT-3 is UTC+3
    local_start = (now + timedelta(hours=offset, seconds=seconds)).replace(microsecond=0)
    hours = {"start": local_start.strftime("%H:%M:%S"), "end": "23:59", "days": list(WEEKDAYS)}
    return zone, hours, local_start.timestamp() - offset * 3600


class WorkerProcess:
    def __init__(
        self,
        bootstrap: str,
        config_dir: Path,
        data_dir: Path,
        *,
        prefix: str,
        group: str,
        store: str = "rocksdb",
        extra_env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.log_path = log_path or data_dir / "worker.log"
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LEADROUTER_TOPIC_PREFIX": prefix,
            "LEADROUTER_GROUP_ID": group,
            "LEADROUTER_DATA_DIR": str(data_dir),
            "LEADROUTER_STORE": store,
            "LEADROUTER_METRICS_PORT": str(self.port),
            "LEADROUTER_METRICS_HOST": "127.0.0.1",
            **(extra_env or {}),
        }
        self.config_dir = config_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self, ready_timeout: float = 90) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child
        self.process = subprocess.Popen(
            [str(LEADROUTER), "worker", "--config", str(self.config_dir)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(self.ready, ready_timeout, "the worker to be ready")
        except AssertionError:
            self.stop()
            raise AssertionError(f"worker not ready; log:\n{self.log_tail()}") from None
        return self

    def ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"worker exited; log:\n{self.log_tail()}")
        return http_status(f"http://127.0.0.1:{self.port}/readyz") == 200

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        """Stop the worker (SIGTERM: graceful; SIGKILL: a crash) and wait for it to exit."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return response.read().decode()


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


class Topics:
    """Produce test events and read leadrouter's outputs under one prefix."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)

    def send(self, topic: str, value: dict[str, Any] | bytes, key: bytes | None = None) -> None:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        self.producer.send(self.prefix + topic, value=raw, key=key)

    def flush(self) -> None:
        self.producer.flush(30)

    def read(
        self,
        topics: Iterable[str],
        until: Callable[[list[Any]], bool],
        timeout: float,
        what: str,
        *,
        drain: bool = False,
        group: str | None = None,
    ) -> list[Any]:
        """Every committed record on `topics` from the beginning, once `until(records)` holds.

        Without `drain` the read stops at the first poll after which `until` holds, so an
        exact count asserted on the result cannot see a record committed after those.
        drain: then read on to the topics' ends (read_committed: the last stable offset),
        taken after `until` held: what is on the broker by then is all in the result.
        group: the worker's consumer group (implies drain): before taking the ends, wait
        until that group has processed every committed record of its input and internal
        topics (`wait_processed`), so that whatever those records make (a duplicate
        included) is on the broker and in the result. Each phase has `timeout` seconds."""
        consumer = self._reader()
        names = [self.prefix + t for t in topics]
        try:
            tps = self._assign(consumer, names)
            consumer.seek_to_beginning(*tps)
            records: list[Any] = []
            end = time.monotonic() + timeout
            while not until(records):
                if time.monotonic() > end:
                    raise AssertionError(
                        f"timed out after {timeout:.0f}s waiting for {what}; got {len(records)}"
                    )
                for batch in consumer.poll(timeout_ms=200).values():
                    records.extend(batch)
            if group is not None:
                self.wait_processed(group, timeout)
            if drain or group is not None:
                self._drain(consumer, tps, records, timeout, what)
            return records
        finally:
            consumer.close()

    def wait_processed(self, group: str, timeout: float) -> None:
        """Wait until consumer group `group` (a worker's) has committed its position past
        every committed record on its input topics and its internal topic: the worker has
        nothing left to do, and everything it made of them is committed on the broker.

        Judged by reading, from the group's committed offset to the partition's end, for a
        record it has not processed: a transaction marker after the last record (every
        exactly_once batch leaves one) is not work."""
        names = [self.prefix + t for t in (*cat.INPUT_KINDS, cat.INTERNAL)]
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        probe = self._reader()
        try:
            tps = self._assign(probe, names)

            def processed() -> bool:
                committed = admin.list_group_offsets({group: None}).get(group) or {}
                for tp in tps:
                    at = committed.get(tp)
                    if at is not None and at.offset >= 0:
                        probe.seek(tp, at.offset)
                    else:
                        probe.seek_to_beginning(tp)
                ends = probe.end_offsets(tps)
                stalled = time.monotonic() + 10
                while any(probe.position(tp) < ends[tp] for tp in tps):
                    if any(probe.poll(timeout_ms=200).values()):
                        return False  # a record the group has not committed past
                    if time.monotonic() > stalled:
                        return False
                return True

            wait_until(
                processed,
                timeout,
                f"group {group} to process every record of its inputs and internal topic",
                every=0.2,
            )
        finally:
            probe.close()
            admin.close()

    def _reader(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            consumer_timeout_ms=200,
        )

    @staticmethod
    def _assign(consumer: KafkaConsumer, names: list[str]) -> list[TopicPartition]:
        wait_until(
            lambda: all(consumer.partitions_for_topic(n) for n in names),
            patience(30),
            f"topics {names}",
        )
        tps = [TopicPartition(n, p) for n in names for p in consumer.partitions_for_topic(n)]
        consumer.assign(tps)
        return tps

    @staticmethod
    def _drain(
        consumer: KafkaConsumer,
        tps: list[TopicPartition],
        records: list[Any],
        timeout: float,
        what: str,
    ) -> None:
        """Read on until every partition's position reaches its end offset taken now."""
        ends = consumer.end_offsets(tps)
        end = time.monotonic() + timeout
        while True:
            behind = [tp for tp in tps if consumer.position(tp) < ends[tp]]
            if not behind:
                return
            if time.monotonic() > end:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s reading {what} to the end; "
                    f"got {len(records)}, {len(behind)} partitions short of their end"
                )
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)

    def close(self) -> None:
        self.producer.close()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"
