"""The reference Apache Kafka 4.x broker for integration tests and benchmarks.

    with ReferenceBroker() as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        ...
        broker.stop_broker()   # the same process goes away (ports and data are kept)
        broker.start_broker()  # ... and comes back on the same ports with the same data

A single-node KRaft broker+controller started from the jars that scripts/kafka/fetch.sh
copies from Maven Central into ${LEADROUTER_CACHE:-~/.cache/leadrouter}/kafka-<version>/libs
(it is run here when they are missing). Everything listens on 127.0.0.1 on free ports; data,
config and logs live in a temporary directory that stop() removes. The broker is stopped by
stop(), by leaving the `with` block, or at interpreter exit; on Linux it is also killed if
the process that started it dies without stopping it.

With ``sasl_ssl=True`` the broker also has a SASL_SSL listener (SCRAM-SHA-512 and
SCRAM-SHA-256, certificates made by openssl here) for tests of the production security
settings; the PLAINTEXT listener stays for admin work.

Run one by hand (the benchmark does the same): ``python -m tests.support.kafka_reference run``.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient

__all__ = ["KafkaNotAvailableError", "ReferenceBroker", "ReferenceBrokerError", "kafka_libs"]

REPO_ROOT = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = REPO_ROOT / "scripts" / "kafka" / "fetch.sh"
POM = REPO_ROOT / "scripts" / "kafka" / "pom.xml"
HOST = "127.0.0.1"
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
# What Kafka's own kafka-run-class.sh passes, so benchmark numbers match a stock install.
JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
LOG4J2_PROPERTIES = """\
# Everything goes to one file in the broker's work dir; stdout stays quiet.
status = warn
# Kafka logs its own shutdown; log4j's hook would race it and complain on stdout.
shutdownHook = disable
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class ReferenceBrokerError(RuntimeError):
    """The reference broker could not be fetched, formatted, started or stopped."""


class KafkaNotAvailableError(ReferenceBrokerError):
    """No Java, or the Kafka jars are not cached and could not be fetched."""


def cache_dir() -> Path:
    """Where fetch.sh keeps downloads: outside the work tree so `git clean` keeps them."""
    return Path(os.environ.get("LEADROUTER_CACHE") or Path.home() / ".cache" / "leadrouter")


def kafka_version() -> str:
    """The Kafka version pinned in scripts/kafka/pom.xml (the single place it is written)."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:
        raise ReferenceBrokerError(f"no <kafka.version> in {POM}")
    return match.group(1).strip()


def kafka_libs() -> Path:
    """The cached libs/ dir of the pinned Kafka, running fetch.sh first if it is missing or stale.

    fetch.sh stamps the dir with the pom's hash; checking it here avoids a bash+mvn round
    trip on every start yet still re-fetches after the pom changes.
    """
    home = cache_dir() / f"kafka-{kafka_version()}"
    want = hashlib.sha256(POM.read_bytes()).hexdigest()
    stamp = home / ".complete"
    if not (stamp.is_file() and stamp.read_text().strip() == want):
        done = subprocess.run(
            ["bash", str(FETCH_SCRIPT)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise KafkaNotAvailableError(
                f"{FETCH_SCRIPT} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
            )
    if not (stamp.is_file() and stamp.read_text().strip() == want):
        raise KafkaNotAvailableError(f"{FETCH_SCRIPT} ran but {home} is still not complete")
    return home / "libs"


def java_binary() -> str:
    """$JAVA_HOME/bin/java if set, else `java` on PATH (Java 17+ is needed by Kafka 4)."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise KafkaNotAvailableError("`java` not found (Kafka 4 needs Java 17+ on PATH)")
    return found


class _ClassDataSharing:
    """An AppCDS archive per JVM entry point, kept in the cache next to the jars.

    Loading Kafka's ~10k classes is most of its start time on a small machine; a dynamic
    class-data-sharing archive (written by the first JVM that exits cleanly, reused by all
    later ones) cuts broker start by 2-3 s. The archive name carries the JDK's identity, so
    a new JDK makes a new archive instead of one the JVM silently refuses. A missing or
    unusable archive only costs time: the JVM then starts as if without it.
    Set LEADROUTER_KAFKA_CDS=0 to turn it off.
    """

    def __init__(self, libs: Path, entry: str, java: str) -> None:
        real = Path(java).resolve()
        stat = real.stat()
        jdk = hashlib.sha256(f"{real}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
        self.archive = libs.parent / "cds" / f"{entry}-{jdk[:12]}.jsa"
        self.pending: Path | None = None

    @staticmethod
    def enabled() -> bool:
        return os.environ.get("LEADROUTER_KAFKA_CDS", "1") != "0"

    def flags(self) -> list[str]:
        """JVM flags that use the archive, or write it at exit if there is none yet."""
        quiet = "-Xlog:cds*=off"
        if self.archive.is_file():
            return [quiet, f"-XX:SharedArchiveFile={self.archive}"]
        self.archive.parent.mkdir(parents=True, exist_ok=True)
        self.pending = self.archive.with_name(f".{self.archive.name}.{secrets.token_hex(4)}")
        return [quiet, f"-XX:ArchiveClassesAtExit={self.pending}"]

    def publish(self, clean_exit: bool) -> None:
        """Move a freshly written archive into place; drop it if the JVM was killed."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        if clean_exit and pending.is_file():
            os.replace(pending, self.archive)
        else:
            pending.unlink(missing_ok=True)


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports, all held open at once so none repeats."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's Uuid.randomUuid(), never one starting with "-", which the CLI would
    take for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _tail(path: Path, lines: int = 60) -> str:
    """The last `lines` lines of a file, or "" if it does not exist (yet)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _pdeathsig_prefix() -> list[str]:
    """`setpriv --pdeathsig KILL` so Linux kills the JVM if this process dies without stop().

    Only from the main thread: the kernel sends the signal when the *thread* that started
    the child exits, and a worker thread may end long before the broker should.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


class ReferenceBroker:
    """A single-node Kafka 4 (KRaft broker+controller) on 127.0.0.1, in a temp dir.

    Arguments:
        sasl_ssl: also open a SASL_SSL listener with SCRAM-SHA-512/256 users.
        heap: JVM -Xmx.
        start_timeout: seconds start()/start_broker() wait for the broker to answer metadata.
        stop_timeout: seconds stop_broker() waits after SIGTERM before SIGKILL.
        properties: extra/overriding server.properties entries.
        log_level: root log4j2 level of the broker log file.
        keep_workdir: leave the temp dir (config, data, broker.log) behind on stop(), for
            post-mortems; defaults to $LEADROUTER_KEEP_BROKER_DIR being set.
    """

    def __init__(
        self,
        *,
        sasl_ssl: bool = False,
        heap: str = "512m",
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        properties: Mapping[str, str | int] | None = None,
        log_level: str = "INFO",
        keep_workdir: bool | None = None,
    ) -> None:
        self.sasl_ssl = sasl_ssl
        self.heap = heap
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.extra_properties = {k: str(v) for k, v in (properties or {}).items()}
        self.log_level = log_level
        self.keep_workdir = (
            bool(os.environ.get("LEADROUTER_KEEP_BROKER_DIR"))
            if keep_workdir is None
            else keep_workdir
        )
        self.version = kafka_version()
        self.cluster_id = _random_cluster_id()
        self.workdir: Path | None = None
        self.port = 0
        self.controller_port = 0
        self.sasl_ssl_port = 0
        self.sasl_username = "leadrouter"
        self.sasl_password = secrets.token_urlsafe(18)
        self.ca_file: Path | None = None
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._libs: Path | None = None
        self._cds: dict[str, _ClassDataSharing] = {}
        self._lock = threading.RLock()

    # -- addresses -------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """PLAINTEXT bootstrap address, e.g. "127.0.0.1:40123"."""
        self._require_started()
        return f"{HOST}:{self.port}"

    @property
    def sasl_ssl_bootstrap_servers(self) -> str:
        """SASL_SSL (SCRAM) bootstrap address; only with sasl_ssl=True."""
        self._require_started()
        if not self.sasl_ssl:
            raise ReferenceBrokerError("this broker was started without sasl_ssl=True")
        return f"{HOST}:{self.sasl_ssl_port}"

    @property
    def log_path(self) -> Path:
        """The broker's log4j2 log file."""
        self._require_started()
        assert self.workdir is not None
        return self.workdir / "broker.log"

    @property
    def is_running(self) -> bool:
        """True while the broker JVM is alive (False after stop_broker() or a crash)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker JVM's pid while it runs (a restart gives a new one)."""
        return self._proc.pid if self.is_running and self._proc is not None else None

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the broker log (and JVM stdout), for error messages."""
        if self.workdir is None:
            return "(broker never started)"
        out = _tail(self.workdir / "stdout.log", 20).strip()
        log = _tail(self.workdir / "broker.log", lines) or "(no broker.log)"
        return f"{log}\n--- jvm stdout/stderr ---\n{out}" if out else log

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ReferenceBroker:
        """Fetch jars if needed, write config, format storage, start and wait until ready.

        Ports are picked free just before use; if another process grabs one in between,
        the start is retried with fresh ports.
        """
        with self._lock:
            if self.workdir is not None:
                raise ReferenceBrokerError("already started; use start_broker() to restart")
            started = time.monotonic()
            self._libs = kafka_libs()
            java_binary()
            atexit.register(self.stop)
            for attempt in range(3):
                self.workdir = Path(tempfile.mkdtemp(prefix="leadrouter-kafka-"))
                try:
                    self._prepare()
                    self._launch()
                    self._wait_ready(started + self.start_timeout)
                    break
                except BaseException as exc:
                    port_clash = "Address already in use" in self.log_tail(200)
                    self.stop()
                    if isinstance(exc, ReferenceBrokerError) and port_clash and attempt < 2:
                        atexit.register(self.stop)
                        continue
                    raise
            self.start_seconds = time.monotonic() - started
            return self

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and remove its temp dir; safe to repeat."""
        with self._lock:
            try:
                self.stop_broker()
            finally:
                atexit.unregister(self.stop)
                if self.workdir is not None and not self.keep_workdir:
                    shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None

    def stop_broker(self, *, kill: bool = False, timeout: float | None = None) -> None:
        """Stop the broker process but keep ports, config and data for start_broker().

        kill=True sends SIGKILL at once, like a crash; otherwise Kafka gets SIGTERM and a
        controlled shutdown, and SIGKILL only after `timeout` (default stop_timeout) seconds.
        """
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            killed = kill
            if proc.poll() is None:
                self._signal(proc, signal.SIGKILL if kill else signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout if timeout is None else timeout)
                except subprocess.TimeoutExpired:
                    killed = True
                    self._signal(proc, signal.SIGKILL)
                    proc.wait(10)
            if "kafka.Kafka" in self._cds:
                self._cds["kafka.Kafka"].publish(clean_exit=not killed)

    def start_broker(self, timeout: float | None = None) -> None:
        """Start the stopped broker again: same ports, same data, same users."""
        with self._lock:
            self._require_started()
            if self.is_running:
                raise ReferenceBrokerError("broker is already running")
            self._launch()
            wait = self.start_timeout if timeout is None else timeout
            self._wait_ready(time.monotonic() + wait)

    def restart_broker(self, *, kill: bool = False) -> None:
        """stop_broker() then start_broker()."""
        self.stop_broker(kill=kill)
        self.start_broker()

    def __enter__(self) -> ReferenceBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- client settings ---------------------------------------------------------------------

    def sasl_ssl_client_config(self, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """kafka-python/aiokafka keyword arguments for the SASL_SSL listener (CA file as path).

        aiokafka wants an ssl_context instead of ssl_cafile: build one with
        ``aiokafka.helpers.create_ssl_context(cafile=broker.ca_file)``.
        """
        if mechanism not in SCRAM_MECHANISMS:
            raise ValueError(f"mechanism must be one of {SCRAM_MECHANISMS}")
        return {
            "bootstrap_servers": self.sasl_ssl_bootstrap_servers,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password,
            "ssl_cafile": str(self.ca_file),
        }

    # -- internals -------------------------------------------------------------------------

    def _require_started(self) -> None:
        if self.workdir is None:
            raise ReferenceBrokerError("broker not started; call start() or use `with`")

    def _prepare(self) -> None:
        """Pick ports, write server.properties and log4j2 config, make certs, format storage."""
        assert self.workdir is not None and self._libs is not None
        ports = _free_ports(3 if self.sasl_ssl else 2)
        self.port, self.controller_port = ports[0], ports[1]
        self.sasl_ssl_port = ports[2] if self.sasl_ssl else 0
        (self.workdir / "log4j2.properties").write_text(
            LOG4J2_PROPERTIES.format(log_path=self.workdir / "broker.log", level=self.log_level)
        )
        if self.sasl_ssl:
            self._make_certificates()
        props = self._server_properties()
        (self.workdir / "server.properties").write_text(
            "".join(f"{key}={value}\n" for key, value in props.items())
        )
        self._format_storage()

    def _server_properties(self) -> dict[str, str]:
        assert self.workdir is not None
        # listener name -> (address, security protocol)
        listeners = {
            "PLAINTEXT": (f"{HOST}:{self.port}", "PLAINTEXT"),
            "CONTROLLER": (f"{HOST}:{self.controller_port}", "PLAINTEXT"),
        }
        if self.sasl_ssl:
            listeners["SASL_SSL"] = (f"{HOST}:{self.sasl_ssl_port}", "SASL_SSL")
        listener_list = ",".join(f"{name}://{addr}" for name, (addr, _) in listeners.items())
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": listeners["CONTROLLER"][0],
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listeners": listener_list,
            "advertised.listeners": listener_list,
            "listener.security.protocol.map": ",".join(
                f"{name}:{protocol}" for name, (_, protocol) in listeners.items()
            ),
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "4",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        if self.sasl_ssl:
            props |= {
                "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.workdir / "tls" / "server-keystore.pem"),
            }
            for mechanism in SCRAM_MECHANISMS:
                props[f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
        props |= self.extra_properties
        return props

    def _make_certificates(self) -> None:
        """A throwaway CA and a server cert for 127.0.0.1/localhost, with the openssl CLI.

        The keystore is PEM (key + chain in one file), which Kafka reads natively, so no
        keytool or JKS step is needed; clients trust ca.pem.
        """
        assert self.workdir is not None
        openssl = shutil.which("openssl")
        if openssl is None:
            raise KafkaNotAvailableError("`openssl` not found (needed for sasl_ssl=True)")
        tls = self.workdir / "tls"
        tls.mkdir()
        ext = tls / "server.ext"
        ext.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc"]
        steps = [
            [openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "7",
             "-subj", "/CN=leadrouter test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            [openssl, "req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost"],
            [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "7", "-extfile", ext.name],
        ]  # fmt: skip
        for cmd in steps:
            done = subprocess.run(cmd, cwd=tls, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise ReferenceBrokerError(f"{' '.join(cmd[:3])} failed:\n{done.stderr}")
        keystore = tls / "server-keystore.pem"
        keystore.write_text(
            (tls / "server.key").read_text()
            + (tls / "server.pem").read_text()
            + (tls / "ca.pem").read_text()
        )
        self.ca_file = tls / "ca.pem"

    def _java_cmd(self, main_class: str, *args: str, jvm_flags: list[str]) -> list[str]:
        assert self.workdir is not None and self._libs is not None
        java = java_binary()
        cds: list[str] = []
        if _ClassDataSharing.enabled():
            if main_class not in self._cds:
                self._cds[main_class] = _ClassDataSharing(self._libs, main_class, java)
            cds = self._cds[main_class].flags()
        return [
            java,
            *jvm_flags,
            *cds,
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{self._libs}/*",
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        """kafka-storage format: a new cluster id, this node as the standalone controller."""
        assert self.workdir is not None
        args = ["format", "-t", self.cluster_id, "-c", "server.properties", "--standalone"]
        if self.sasl_ssl:
            for mechanism in SCRAM_MECHANISMS:
                user = f"name={self.sasl_username},password={self.sasl_password}"
                args += ["--add-scram", f"{mechanism}=[{user}]"]
        # A one-second tool: C1 only and the serial GC start fastest.
        flags = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        done = subprocess.run(
            self._java_cmd("kafka.tools.StorageTool", *args, jvm_flags=flags),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if "kafka.tools.StorageTool" in self._cds:
            self._cds["kafka.tools.StorageTool"].publish(clean_exit=done.returncode == 0)
        if done.returncode != 0:
            raise ReferenceBrokerError(
                f"kafka-storage format failed (exit {done.returncode}):\n"
                f"{done.stdout}{done.stderr}\n{self.log_tail(30)}"
            )

    def _launch(self) -> None:
        assert self.workdir is not None
        stdout = (self.workdir / "stdout.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                [
                    *_pdeathsig_prefix(),
                    *self._java_cmd(
                        "kafka.Kafka",
                        "server.properties",
                        jvm_flags=[f"-Xmx{self.heap}", *JVM_FLAGS],
                    ),
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            stdout.close()

    def _wait_ready(self, deadline: float) -> None:
        """Poll until the broker answers a metadata request listing itself, or fail.

        First a cheap TCP poll (the JVM needs a few seconds), then a real admin client
        request, since an open port alone does not mean the broker is unfenced yet.
        """
        ports = [self.port] + ([self.sasl_ssl_port] if self.sasl_ssl else [])
        launched = time.monotonic()
        last_error: Exception | None = None
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise ReferenceBrokerError(
                    f"Kafka exited during startup (exit {code}):\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop_broker(kill=True)
                raise ReferenceBrokerError(
                    f"Kafka did not answer metadata {time.monotonic() - launched:.0f}s "
                    f"after launch (last error: {last_error!r}):\n{self.log_tail()}"
                )
            if all(_port_open(port) for port in ports):
                try:
                    if self._metadata_ok(max(remaining, 1.0)):
                        return
                except Exception as exc:
                    last_error = exc
            time.sleep(0.1)

    def _metadata_ok(self, timeout: float) -> bool:
        timeout_ms = int(min(timeout, 10.0) * 1000)
        admin = KafkaAdminClient(
            bootstrap_servers=f"{HOST}:{self.port}",
            client_id="reference-broker-probe",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
        try:
            brokers = admin.describe_cluster().get("brokers") or []
        finally:
            admin.close()
        return any(b.get("port") == self.port and not b.get("is_fenced") for b in brokers)

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        """Signal the broker's whole process group (the JVM, or setpriv's exec of it)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def main(argv: list[str] | None = None) -> int:
    """CLI: `run` starts a broker, prints how to reach it, and waits for Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.kafka_reference")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start a broker and keep it up until Ctrl-C")
    run.add_argument("--sasl-ssl", action="store_true", help="add the SASL_SSL/SCRAM listener")
    run.add_argument("--heap", default="512m", help="JVM -Xmx (default 512m)")
    sub.add_parser("fetch", help="only make sure the Kafka jars are cached; print their dir")
    args = parser.parse_args(argv)

    if args.command == "fetch":
        print(kafka_libs())
        return 0

    # SIGTERM (e.g. from a benchmark harness) must stop the broker like Ctrl-C does.
    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    broker = ReferenceBroker(sasl_ssl=args.sasl_ssl, heap=args.heap)
    try:
        broker.start()
        assert broker.workdir is not None
        print(f"kafka_version={broker.version}")
        print(f"bootstrap_servers={broker.bootstrap_servers}")
        if broker.sasl_ssl:
            print(f"sasl_ssl_bootstrap_servers={broker.sasl_ssl_bootstrap_servers}")
            print(f"ca_file={broker.ca_file}")
            print(f"sasl_username={broker.sasl_username}")
            print(f"sasl_password={broker.sasl_password}")
        print(f"log={broker.log_path}")
        print(f"started_in={broker.start_seconds:.1f}s  (Ctrl-C to stop)", flush=True)
        while broker.is_running:
            time.sleep(0.5)
        print(f"broker exited unexpectedly:\n{broker.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
