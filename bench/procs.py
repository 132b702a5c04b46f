"""Contender processes: each in its own session (process group), so it and anything it starts
can be stopped together, and so its CPU time and memory are its own."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.measure import cpu_seconds, http_ok, memory_kib, scrape, wait_until
from workers.embedded import free_port

PYTHON = sys.executable
# BENCH_LEADROUTER: another command line to run as `<it> worker --config DIR` (a development
# aid, e.g. a wrapper that instruments the worker); the default is the venv's console script.
LEADROUTER = os.environ.get("BENCH_LEADROUTER") or str(Path(sys.executable).parent / "leadrouter")
REPO_ROOT = Path(__file__).resolve().parents[1]
_FIRST = re.compile(r"BENCH first_consumed=([0-9.]+) cpu=([0-9.]+)")

# Every process started here, so a failure anywhere still stops them all.
RUNNING: list[Proc] = []


def _pdeathsig() -> list[str]:
    """`setpriv --pdeathsig TERM`: the kernel stops the child if the harness dies without
    stopping it (only from the main thread: the signal follows the starting *thread*).
    setpriv execs the command, so the pid measured is the contender's own."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


class Proc:
    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.popen: subprocess.Popen[bytes] | None = None
        self.rusage: dict[str, float] | None = None
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.popen = subprocess.Popen(
                [*_pdeathsig(), *self.argv],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=REPO_ROOT,
            )
        finally:
            log.close()
        RUNNING.append(self)
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.exit_code is None and self._reap(False) is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited ({self.exit_code}); log:\n{self.log_tail()}")

    def cpu(self) -> float | None:
        return cpu_seconds(self.pid)

    def memory(self) -> dict[str, int]:
        return memory_kib(self.pid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def first_consumed(self) -> tuple[float, float] | None:
        """(unix time, CPU seconds) from a baseline's `BENCH first_consumed=` line."""
        m = _FIRST.search(self.log_text())
        return (float(m.group(1)), float(m.group(2))) if m else None

    def _reap(self, block: bool) -> int | None:
        """wait4 the child: its exit code and its resource usage (CPU, peak RSS)."""
        if self.exit_code is not None:
            return self.exit_code
        try:
            pid, status, usage = os.wait4(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.exit_code = -1
            return self.exit_code
        if pid == 0:
            return None
        self.exit_code = os.waitstatus_to_exitcode(status)
        # (not ru_maxrss: it counts the harness's pages the child had between fork and exec)
        self.rusage = {"cpu_seconds_lifetime": round(usage.ru_utime + usage.ru_stime, 3)}
        assert self.popen is not None
        self.popen.returncode = self.exit_code  # reaped here, not by Popen
        return self.exit_code

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the whole process group, SIGKILL after `timeout`; then reap."""
        if self.popen is None or self.exit_code is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while self._reap(False) is None:
            if time.monotonic() > end:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self._reap(True)
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):  # anything left in the group
            os.killpg(self.pid, signal.SIGKILL)
        if self in RUNNING:
            RUNNING.remove(self)


def stop_all() -> None:
    for proc in list(RUNNING):
        with contextlib.suppress(Exception):
            proc.stop(timeout=15)


def baseline(
    module: str,
    name: str,
    bootstrap: str,
    prefix: str,
    group: str,
    log: Path,
    python: str = PYTHON,
    extra: list[str] | None = None,
) -> Proc:
    """`python -m module`: a baseline contender; `python` another venv's interpreter."""
    argv = [python, "-m", module, "--bootstrap", bootstrap, "--prefix", prefix, "--group", group]
    argv += extra or []
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return Proc(name, argv, log, env)


class LeadrouterProc(Proc):
    """`leadrouter worker` with the environment the brief and tests/support/worker.py use."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        config_dir: Path,
        data_dir: Path,
        *,
        prefix: str,
        group: str,
        store: str,
        log: Path,
        extra_env: dict[str, str] | None = None,
        gc_log: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        inherited = {
            k: v for k, v in os.environ.items() if k != "LEADROUTER_PROCESSING_GUARANTEE"
        }  # the default (exactly_once here) unless a contender asks for another
        env = {
            **inherited,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LEADROUTER_TOPIC_PREFIX": prefix,
            "LEADROUTER_GROUP_ID": group,
            "LEADROUTER_DATA_DIR": str(data_dir),
            "LEADROUTER_STORE": store,
            "LEADROUTER_METRICS_PORT": str(self.port),
            "LEADROUTER_METRICS_HOST": "127.0.0.1",
            "LEADROUTER_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        command = shlex.split(LEADROUTER)
        self.gc_log = gc_log
        if gc_log is not None:  # the same CLI, with full collections logged
            command = [PYTHON, "-m", "bench.gcwatch"]
            env["BENCH_GC_LOG"] = str(gc_log)
            env["PYTHONPATH"] = str(REPO_ROOT)
        super().__init__(name, [*command, "worker", "--config", str(config_dir)], log, env)

    def ready(self) -> bool:
        self.check_alive()
        return http_ok(f"http://127.0.0.1:{self.port}/readyz")

    def wait_ready(self, timeout: float = 120) -> None:
        wait_until(self.ready, timeout, f"{self.name} /readyz", every=0.05)

    def metrics(self) -> dict[str, float]:
        got = scrape(f"http://127.0.0.1:{self.port}/metrics")
        if got is None:
            self.check_alive()
            return {}
        return got

    def snapshot(self) -> dict[str, Any]:
        return {"cpu": self.cpu(), **self.memory()}
