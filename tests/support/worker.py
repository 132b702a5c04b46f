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
from pathlib import Path
from typing import Any

import orjson
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from workers.embedded import free_port
from workers.settings import DEFAULT_CONFIG_DIR

LEADROUTER = Path(sys.executable).parent / "leadrouter"


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
        self, topics: Iterable[str], until: Callable[[list[Any]], bool], timeout: float, what: str
    ) -> list[Any]:
        """Every committed record on `topics` from the beginning, once `until(records)` holds."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            consumer_timeout_ms=200,
        )
        names = [self.prefix + t for t in topics]
        try:
            wait_until(
                lambda: all(consumer.partitions_for_topic(n) for n in names), 30, f"topics {names}"
            )
            tps = [TopicPartition(n, p) for n in names for p in consumer.partitions_for_topic(n)]
            consumer.assign(tps)
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
            return records
        finally:
            consumer.close()

    def close(self) -> None:
        self.producer.close()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"
