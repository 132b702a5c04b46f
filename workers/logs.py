"""Logging for every leadrouter process: one handler on stderr, text or JSON lines, and the
Kafka clients' own logs brought into it with their connection noise collapsed.

Why: with the broker away, librdkafka wrote a "Connect to ... failed: Connection refused"
line every ~50 ms per client straight to stderr, and kafka-python three lines per retry, beside
the worker's own logs (issue 18). Log volume costs money and hides the line that matters. Here
a broker that stops answering gives one line when it is confirmed unreachable, one "still
unreachable" summary every SUMMARY_EVERY seconds, and one line when it answers again.

- librdkafka (confluent-kafka) reaches Python logging through the client's `logger` option:
  `kafka_logger()` is that object (workers/runtime/clients.py passes it to every client).
- kafka-python (admin) logs to the `kafka.*` loggers; a filter on the handler folds their
  connection failures into the same per-broker state.
- `LEADROUTER_LOG_FORMAT=json` writes one JSON object per line (time, level, logger, message
  and any extra fields) for log shippers; the default stays the plain text format.

Nothing here imports a Kafka client: `workers.cli` imports it before any command has chosen
whether it needs one (tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FORMATS = ("text", "json")
# librdkafka's records go to this logger (WARNING and up unless the level is DEBUG) ...
KAFKA_LOGGER = "leadrouter.kafka"
# ... and the broker watch's notices, from any Kafka client, to this one: "reachable again"
# is INFO, and must not be held back with librdkafka's routine INFO lines.
BROKER_LOGGER = "leadrouter.broker"
# Libraries whose DEBUG and INFO records are not wanted: building them costs time on the hot
# path (FAUST-NOTES.md), and what they say at INFO is routine.
QUIET_LIBRARIES = ("kafka", "aiokafka", "faust", "mode")
# The key under which kafka-python's connection failures are tracked: its messages do not
# name the broker ("bootstrap-0"), and leadrouter runs one admin client at a time.
ADMIN_CLIENT = "admin client"

# A broker is reported unreachable once its connection failures span CONFIRM_AFTER seconds:
# a burst of failures queued in a client that was not polled during an outage arrives all at
# once after the broker is back, and must not announce a new outage.
CONFIRM_AFTER = 2.0
SUMMARY_EVERY = 30.0
# No failure for this long and no sign of the broker either: forget the outage (a client
# with nothing to ask the broker stops trying, so silence does not prove it is back).
FORGET_AFTER = 60.0
# Failures not yet confirmed as an outage are forgotten after this much silence: a client
# that wants a broker retries at least every 10 s (librdkafka's reconnect.backoff.max.ms).
UNCONFIRMED_GAP = 10.0


@dataclass(frozen=True)
class Notice:
    """One line to log about a broker's connection state."""

    level: int
    message: str
    fields: dict[str, Any]


@dataclass
class _Outage:
    since: float  # first failure
    last: float  # latest failure
    errors: int
    detail: str
    confirmed: bool = False
    summarized: float = 0.0  # when the latest "unreachable" line was written


class BrokerWatch:
    """Connection state per broker, from the failures the clients report and the signs of
    life they give (librdkafka statistics, an admin client that connected). Returns the
    notices to log: the caller logs them, so a filter can rewrite a record in place."""

    def __init__(
        self,
        *,
        confirm_after: float = CONFIRM_AFTER,
        summary_every: float = SUMMARY_EVERY,
        forget_after: float = FORGET_AFTER,
        unconfirmed_gap: float = UNCONFIRMED_GAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.confirm_after = confirm_after
        self.summary_every = summary_every
        self.forget_after = forget_after
        self.unconfirmed_gap = unconfirmed_gap
        self.clock = clock
        self.outages: dict[str, _Outage] = {}
        self._lock = threading.Lock()

    def failure(self, broker: str, detail: str, client: str = "") -> Notice | None:
        """A connection to `broker` failed; a notice when that changes what was said."""
        now = self.clock()
        with self._lock:
            outage = self.outages.get(broker)
            gap = self.forget_after if outage and outage.confirmed else self.unconfirmed_gap
            if outage is None or now - outage.last > gap:
                self.outages[broker] = _Outage(since=now, last=now, errors=1, detail=detail)
                return None
            outage.last = now
            outage.errors += 1
            outage.detail = detail
            name = _name(broker)
            fields = {
                "broker": broker,
                "kafka_client": client,
                "down_seconds": round(now - outage.since),
                "connection_errors": outage.errors,
                "detail": detail,
            }
            if not outage.confirmed:
                if now - outage.since < self.confirm_after:
                    return None
                outage.confirmed = True
                outage.summarized = now
                return Notice(
                    logging.WARNING,
                    f"{name} unreachable: {detail} (retrying; repeats of this "
                    f"error are summarised every {self.summary_every:g} s)",
                    fields,
                )
            if now - outage.summarized < self.summary_every:
                return None
            outage.summarized = now
            return Notice(
                logging.WARNING,
                f"{name} still unreachable after {now - outage.since:.0f} s "
                f"({outage.errors} connection errors; latest: {detail})",
                fields,
            )

    def reachable(self, broker: str) -> Notice | None:
        """`broker` answers: ends its outage, with a notice if one was announced."""
        now = self.clock()
        with self._lock:
            outage = self.outages.pop(broker, None)
        if outage is None or not outage.confirmed:
            return None
        return Notice(
            logging.INFO,
            f"{_name(broker)} reachable again after {now - outage.since:.0f} s "
            f"({outage.errors} connection errors)",
            {
                "broker": broker,
                "down_seconds": round(now - outage.since),
                "connection_errors": outage.errors,
            },
        )


WATCH = BrokerWatch()


def _name(broker: str) -> str:
    return "Kafka broker (admin client)" if broker == ADMIN_CLIENT else f"Kafka broker {broker}"


def _log_notice(notice: Notice | None) -> None:
    if notice is not None:
        logging.getLogger(BROKER_LOGGER).log(
            notice.level, "%s", notice.message, extra=notice.fields
        )


# --------------------------------------------------------------------------- librdkafka
# "[thrd:127.0.0.1:9092/1]: " in front of every librdkafka message: the thread, not news.
_THREAD = re.compile(r"^\[thrd:[^\]]*\]: ")
# The broker a message is about: "127.0.0.1:9092/bootstrap: ...", "sasl_ssl://h:9093/1: ...",
# "TxnCoordinator: 127.0.0.1:9092: ..." (a logical broker, then the address).
_BROKER = re.compile(
    r"^(?:[A-Za-z]+Coordinator(?:/\d+)?: )?(?:[a-z_]+://)?(?P<addr>\[[^\]]+\]:\d+|[^\s/:\[]+:\d+)"
    r"(?:/\w+)?: (?P<detail>.*)$"
)
# librdkafka's trailing "(after 0ms in state CONNECT)" and "(... identical error(s) suppressed)"
# make every repeat look new; the cause is what is worth keeping.
_AFTER = re.compile(r"\s*\((?:after \d+ms in state \w+|\d+ identical error\(s\) suppressed)\)")


class LibrdkafkaLogger:
    """What librdkafka's `logger` option is given: its records become Python log records on
    `leadrouter.kafka` ("<client> <facility>: <text>", with `kafka_client` and `facility`
    fields), except broker connection failures, which go to the broker watch."""

    def __init__(self, watch: BrokerWatch = WATCH, name: str = KAFKA_LOGGER) -> None:
        self.watch = watch
        self.logger = logging.getLogger(name)

    def log(self, level: int, msg: str, *args: Any) -> None:
        """Called by confluent-kafka as `logger.log(level, "%s [%s] %s", fac, name, text)`,
        on the thread that polls the client (never on librdkafka's own threads)."""
        if len(args) == 3:
            facility, client, text = (str(a) for a in args)
        else:
            facility, client, text = "", "", (msg % args if args else msg)
        text = _THREAD.sub("", text)
        if facility == "FAIL" and level >= logging.WARNING:
            match = _BROKER.match(text)
            broker = match["addr"] if match else "(unnamed)"
            detail = _AFTER.sub("", match["detail"] if match else text)
            _log_notice(self.watch.failure(broker, detail, client))
            return
        if self.logger.isEnabledFor(level):
            self.logger.log(
                level,
                "%s %s: %s",
                client,
                facility,
                text,
                extra={"kafka_client": client, "facility": facility},
            )

    def stats(self, raw: str) -> None:
        """A `stats_cb`: a broker in state UP answers again. Statistics reach Python through
        the same queue as the client's logs, so its failures queued before are seen first."""
        try:
            brokers = orjson.loads(raw).get("brokers") or {}
        except (orjson.JSONDecodeError, AttributeError):
            return
        up = {b.get("nodename") for b in brokers.values() if b.get("state") == "UP"}
        for broker in up:
            if broker:
                _log_notice(self.watch.reachable(broker))


_LIBRDKAFKA = LibrdkafkaLogger()


def kafka_logger() -> LibrdkafkaLogger:
    """The `logger` for a librdkafka client config: one per process, so all its clients
    share one state per broker."""
    return _LIBRDKAFKA


def broker_reachable(broker: str = ADMIN_CLIENT) -> None:
    """For code that knows a client connected (the admin client after its retries)."""
    _log_notice(WATCH.reachable(broker))


# --------------------------------------------------------------------------- kafka-python
_KAFKA_PYTHON_CONNECTION = re.compile(
    r"ECONNREFUSED|Connection (?:lost|failed|refused|reset)|Unable to bootstrap|not ready; waiting"
    r"|Bootstrap (?:connection|failed)|KafkaConnectionError|NoBrokersAvailable|timed out"
    r"|No node available|Metadata refresh: failed",
    re.IGNORECASE,
)


class KafkaPythonConnections(logging.Filter):
    """On the handler: kafka-python's connection failures (three WARNING/ERROR lines per
    retry) become the broker watch's notices. The record that changes the state is rewritten
    in place into the notice; the others are dropped."""

    def __init__(self, watch: BrokerWatch = WATCH) -> None:
        super().__init__()
        self.watch = watch

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka.") or record.levelno < logging.WARNING:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        if not _KAFKA_PYTHON_CONNECTION.search(text):
            return True
        notice = self.watch.failure(ADMIN_CLIENT, text, "kafka-python")
        if notice is None:
            return False
        record.name = BROKER_LOGGER
        record.msg, record.args = notice.message, None
        record.levelno, record.levelname = notice.level, logging.getLevelName(notice.level)
        record.__dict__.update(notice.fields)
        return True


# --------------------------------------------------------------------------- formats
# Attributes every LogRecord has: anything else on a record came from `extra=` and is a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the record's
    extra fields, and `exception` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """In JSON mode an uncaught exception is one JSON line too, not a raw traceback."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("leadrouter").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    logging.getLogger("leadrouter").critical(
        "uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def configure_logging(level: str, fmt: str | None = None, *, stream: TextIO | None = None) -> None:
    """Explicit, so no library's DEBUG records are built on the hot path (FAUST-NOTES), and
    every line on stderr has one format. `fmt` is `text` or `json`; None reads
    LEADROUTER_LOG_FORMAT (default text). An unknown format falls back to text, with a
    warning, rather than losing the process's logs. `stream` is stderr unless given."""
    chosen = (fmt if fmt is not None else os.environ.get("LEADROUTER_LOG_FORMAT", "")).strip()
    chosen = chosen.lower() or "text"
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(KafkaPythonConnections(WATCH))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    numeric = logging.getLevelName(level)
    if not isinstance(numeric, int):
        numeric = logging.INFO
    for noisy in QUIET_LIBRARIES:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, numeric))
    # librdkafka's INFO is routine (idle connections closed, ...): shown only at DEBUG.
    logging.getLogger(KAFKA_LOGGER).setLevel(
        logging.INFO if numeric <= logging.DEBUG else max(logging.WARNING, numeric)
    )
    logging.captureWarnings(True)
    if chosen == "json":
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread
    if chosen not in FORMATS:
        logging.getLogger("leadrouter").warning(
            "LEADROUTER_LOG_FORMAT=%s is not one of %s: using text", chosen, ", ".join(FORMATS)
        )
