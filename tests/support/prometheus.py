"""A real Prometheus server for tests: scrapes given targets, evaluates rules, answers PromQL.

    with PrometheusServer(["http://127.0.0.1:9464/metrics"], rule_files=[RULES]) as prom:
        prom.wait_until_scraped(samples=2)
        prom.wait_for('sum(leadrouter_events_total) > 0', timeout=30)
        for sample in prom.query("sum by (topic) (rate(leadrouter_events_total[1m]))"):
            print(sample.labels["topic"], sample.value)

The binary is `prometheus` on PATH (installed by scripts/prometheus/install.sh) or the file
named by $LEADROUTER_PROMETHEUS. The server listens on 127.0.0.1 on a free port, keeps its
TSDB in a temporary directory, scrapes every second and evaluates rules every second. It is
stopped by stop(), by leaving the `with` block, or at interpreter exit, whichever comes
first; on Linux it is also sent SIGTERM if the test process dies without stopping it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "PrometheusError",
    "PrometheusNotFoundError",
    "PrometheusQueryError",
    "PrometheusServer",
    "Sample",
    "Series",
    "find_binary",
]

INSTALL_HINT = "run `bash scripts/prometheus/install.sh` (or `make tools`)"


class PrometheusError(RuntimeError):
    """The Prometheus server could not be started or did not answer."""


class PrometheusNotFoundError(PrometheusError):
    """No prometheus (or promtool) binary was found."""


class PrometheusQueryError(PrometheusError):
    """Prometheus rejected a query (bad PromQL, bad parameters, execution error)."""

    def __init__(self, promql: str, error_type: str, error: str) -> None:
        super().__init__(f"{error_type}: {error}\n  query: {promql}")
        self.promql = promql
        self.error_type = error_type
        self.error = error


@dataclass(frozen=True)
class Sample:
    """One element of an instant query result (a scalar comes back with no labels)."""

    labels: dict[str, str]
    value: float
    timestamp: float

    @property
    def name(self) -> str | None:
        return self.labels.get("__name__")


@dataclass(frozen=True)
class Series:
    """One element of a range query result (a matrix)."""

    labels: dict[str, str]
    values: list[tuple[float, float]] = field(default_factory=list)


def find_binary(name: str = "prometheus") -> str:
    """Path of the prometheus or promtool binary; raises PrometheusNotFoundError if none."""
    override = os.environ.get(f"LEADROUTER_{name.upper()}")
    if override:
        if os.access(override, os.X_OK):
            return override
        raise PrometheusNotFoundError(
            f"$LEADROUTER_{name.upper()}={override!r} is not an executable file"
        )
    found = shutil.which(name)
    if found is None:
        raise PrometheusNotFoundError(f"`{name}` not found on PATH: {INSTALL_HINT}")
    return found


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has Linux SIGTERM the server if this process dies without stop().

    The libc function is looked up here, before fork, so the child only makes one call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _parse_value(raw: str) -> float:
    # Prometheus sends "NaN", "+Inf", "-Inf" as strings; float() understands all three.
    return float(raw)


def _static_target(url: str) -> dict[str, Any]:
    """A static_configs entry for one target given as a URL or as host:port."""
    if "://" not in url:
        url = f"http://{url}/metrics"
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or not parts.port:
        raise ValueError(f"target {url!r} needs a host and a port")
    labels = {"__scheme__": parts.scheme, "__metrics_path__": parts.path or "/metrics"}
    return {"targets": [parts.netloc], "labels": labels}


class PrometheusServer:
    """A real prometheus process on 127.0.0.1 that scrapes `targets` every second."""

    def __init__(
        self,
        targets: Iterable[str] = (),
        *,
        rule_files: Iterable[str | os.PathLike[str]] = (),
        job: str = "leadrouter",
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        startup_timeout: float = 30.0,
        binary: str | None = None,
    ) -> None:
        self.targets = list(targets)
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.job = job
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.startup_timeout = startup_timeout
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log: Any = None
        self.port: int | None = None

    # -- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise PrometheusError("PrometheusServer is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return Path(self._tmp.name) / "prometheus.log" if self._tmp else None

    def config(self) -> dict[str, Any]:
        """The prometheus.yml this server runs with."""
        for path in self.rule_files:
            if not path.is_file():
                raise FileNotFoundError(f"rule file {path} does not exist")
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "static_configs": [_static_target(t) for t in self.targets],
                }
            ],
        }

    def start(self) -> PrometheusServer:
        if self._proc is not None:
            return self
        binary = self._binary or find_binary("prometheus")
        config = self.config()
        self._tmp = tempfile.TemporaryDirectory(prefix="leadrouter-prometheus-")
        tmp = Path(self._tmp.name)
        config_path = tmp / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        atexit.register(self.stop)
        try:
            # The free port may be taken between choosing and binding: try a few.
            for _attempt in range(5):
                self.port = _free_port()
                self._launch(binary, config_path, tmp)
                if self._wait_ready():
                    return self
            raise PrometheusError(
                f"prometheus could not bind a port on 127.0.0.1:\n{self._log_tail()}"
            )
        except BaseException:
            self.stop()
            raise

    def _launch(self, binary: str, config_path: Path, tmp: Path) -> None:
        if self._log is None:
            self._log = open(tmp / "prometheus.log", "ab")  # noqa: SIM115 - closed in stop()
        data = tmp / "data"
        data.mkdir(exist_ok=True)
        self._proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={data}",
                "--storage.tsdb.retention.time=1d",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=info",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )

    def _wait_ready(self) -> bool:
        """True when /-/ready answers 200; False when the port was taken; raises otherwise."""
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                tail = self._log_tail()
                if "address already in use" in tail:
                    self._proc = None
                    return False
                raise PrometheusError(f"prometheus exited with status {code}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise PrometheusError(
            f"prometheus not ready on {self.url} after {self.startup_timeout}s:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server and remove its files. Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        atexit.unregister(self.stop)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- HTTP API -------------------------------------------------------------------

    def api(self, path: str, params: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        """GET (no params) or POST form (params) /api/v1/<path>; returns `data`."""
        url = f"{self.url}/api/v1/{path}"
        body = urllib.parse.urlencode(params).encode() if params is not None else None
        request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as err:
            # 400 bad_data, 422 execution, 503 timeout: the body says why.
            try:
                payload = json.load(err)
            except ValueError:
                raise PrometheusError(f"{url}: HTTP {err.code}") from err
        if payload.get("status") != "success":
            query = (params or {}).get("query", path)
            raise PrometheusQueryError(
                str(query), payload.get("errorType", "error"), payload.get("error", "")
            )
        return payload["data"]

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """Instant query. A vector gives one Sample per series; a scalar one unlabelled one."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        data = self.api("query", params)
        kind, result = data["resultType"], data["result"]
        if kind == "vector":
            return [
                Sample(r["metric"], _parse_value(r["value"][1]), float(r["value"][0]))
                for r in result
            ]
        if kind == "scalar":
            return [Sample({}, _parse_value(result[1]), float(result[0]))]
        if kind == "matrix":  # a range selector queried as is, e.g. `up[1m]`
            return [
                Sample(r["metric"], _parse_value(v), float(t))
                for r in result
                for t, v in r["values"]
            ]
        raise PrometheusError(f"unexpected result type {kind!r} for {promql!r}")

    def query_range(
        self, promql: str, start: float, end: float | None = None, step: float = 1.0
    ) -> list[Series]:
        """Range query from `start` to `end` (default now), unix seconds."""
        params = {
            "query": promql,
            "start": start,
            "end": time.time() if end is None else end,
            "step": step,
        }
        data = self.api("query_range", params)
        return [
            Series(r["metric"], [(float(t), _parse_value(v)) for t, v in r["values"]])
            for r in data["result"]
        ]

    def targets_health(self) -> list[dict[str, Any]]:
        """Active targets as Prometheus reports them (health, lastError, scrapeUrl, ...)."""
        return self.api("targets", {"state": "active"})["activeTargets"]

    def rules(self) -> list[dict[str, Any]]:
        """Loaded rule groups with each rule's health and lastError."""
        return self.api("rules")["groups"]

    # -- waiting --------------------------------------------------------------------

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[Sample]], bool] = bool,
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> list[Sample]:
        """Query until predicate(result) is true (default: a non-empty result); return it.

        A query Prometheus rejects as bad PromQL fails at once; other errors are retried
        until the deadline, then raise TimeoutError with the last result or error.
        """
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                result = self.query(promql)
                if predicate(result):
                    return result
                last = result
            except PrometheusQueryError as err:
                if err.error_type == "bad_data":
                    raise
                last = err
            except (PrometheusError, OSError) as err:
                last = err
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"after {timeout}s, {promql!r} still does not satisfy the condition; "
                    f"last result: {last!r}\ntargets: {self._targets_summary()}"
                )
            time.sleep(interval)

    def wait_until_scraped(self, samples: int = 2, timeout: float = 30.0) -> None:
        """Wait until every target is up and has been scraped at least `samples` times.

        rate()/increase() need two samples in their window: wait for samples >= 2 before
        querying them.
        """
        expected = len(self.targets)
        selector = f'up{{job="{self.job}"}}'

        def all_up(result: Sequence[Sample]) -> bool:
            return len(result) == expected and all(s.value == 1 for s in result)

        self.wait_for(selector, all_up, timeout=timeout)
        window = "5m"
        self.wait_for(
            f"count_over_time({selector}[{window}])",
            lambda r: len(r) == expected and all(s.value >= samples for s in r),
            timeout=timeout,
        )

    def wait_for_rule_evaluations(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every loaded rule has been evaluated at least once; return the groups."""

        def evaluated(groups: list[dict[str, Any]]) -> bool:
            return all(
                not rule.get("lastEvaluation", "").startswith("0001-")
                for group in groups
                for rule in group["rules"]
            )

        deadline = time.monotonic() + timeout
        while True:
            groups = self.rules()
            if evaluated(groups):
                return groups
            if time.monotonic() >= deadline:
                raise TimeoutError(f"rules not all evaluated after {timeout}s")
            time.sleep(0.25)

    def _targets_summary(self) -> str:
        with contextlib.suppress(Exception):
            return "; ".join(
                f"{t['scrapeUrl']} {t['health']} {t.get('lastError', '')}".strip()
                for t in self.targets_health()
            )
        return "(unavailable)"
