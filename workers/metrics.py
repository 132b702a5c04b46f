"""Prometheus metrics, named as in DESIGN.md: base units, bounded labels, never an e-mail,
lead id or free text in a label. Labelled children are cached because `.labels()` costs
more than the increment itself on the hot path."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from topics.catalogue import INPUT_KINDS, SALES_ACTIVITIES
from topics.vocabulary import (
    CHANNEL_OF_KIND,
    CONVERSIONS,
    DISQUALIFY_REASONS,
    INVALID_REASONS,
    PROCESSING_ERROR,
)
from workers.config_versions import REFUSED_REASONS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SALES_BUCKETS = (30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400, 259200, 604800)
CONVERSION_BUCKETS = (3600, 14400, 86400, 259200, 604800, 1209600, 2592000, 7776000)
SCORE_BUCKETS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
# The input topic each marketing channel arrives on (leadrouter_events_total{topic}).
CHANNEL_TOPIC = {
    CHANNEL_OF_KIND[kind]: topic for topic, kind in INPUT_KINDS.items() if kind in CHANNEL_OF_KIND
}


class Metrics:
    """Every leadrouter metric on one registry, and the desk's Recorder over them."""

    def __init__(self, sources: Iterable[str] = (), campaigns: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sources = frozenset(s.lower() for s in sources) | {"direct", "email"}
        self.campaigns = frozenset(campaigns)
        self.events = Counter(
            "leadrouter_events",
            "Input records by topic and outcome",
            ["topic", "outcome"],
            registry=r,
        )
        self.deadletters = Counter(
            "leadrouter_deadletters",
            "Records sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.generated_c = Counter(
            "leadrouter_leads_generated",
            "New leads by first-touch channel and source",
            ["channel", "source"],
            registry=r,
        )
        self.routed_c = Counter(
            "leadrouter_leads_routed",
            "Leads routed to a sales queue",
            ["queue", "rule", "grade"],
            registry=r,
        )
        self.unassigned_c = Counter(
            "leadrouter_leads_unassigned",
            "Leads routed with no rep available",
            ["queue", "reason"],
            registry=r,
        )
        self.disqualified_c = Counter(
            "leadrouter_leads_disqualified", "Leads kept from routing", ["reason"], registry=r
        )
        self.route_latency = Histogram(
            "leadrouter_route_latency_seconds",
            "Qualifying event occurred to lead routed",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.speed_to_lead_h = Histogram(
            "leadrouter_speed_to_lead_seconds",
            "Lead routed to first sales touch",
            ["queue"],
            buckets=SALES_BUCKETS,
            registry=r,
        )
        self.conversion_h = Histogram(
            "leadrouter_time_to_conversion_seconds",
            "Lead routed to opportunity, won or lost",
            ["queue", "outcome"],
            buckets=CONVERSION_BUCKETS,
            registry=r,
        )
        self.outcomes = Counter(
            "leadrouter_lead_outcomes",
            "Sales outcomes by queue and first-touch source",
            ["queue", "source", "outcome"],
            registry=r,
        )
        self.sla_breaches = Counter(
            "leadrouter_sla_breaches",
            "Routed leads not touched within the queue SLA",
            ["queue"],
            registry=r,
        )
        self.activities = Counter(
            "leadrouter_sales_activities",
            "Sales activities by type and outcome",
            ["type", "outcome"],
            registry=r,
        )
        self.lead_score = Histogram(
            "leadrouter_lead_score",
            "Lead score after each touch",
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "leadrouter_consumer_lag",
            "Records behind the end of the log, per topic",
            ["topic"],
            registry=r,
        )
        self.batch_size = Histogram(
            "leadrouter_batch_records",
            "Records per processed batch",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "leadrouter_batch_seconds",
            "Wall time per batch by phase: process (validate to outputs queued), commit "
            "(outputs acknowledged, input offsets and state committed)",
            ["phase"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.wait_h = Histogram(
            "leadrouter_lead_wait_seconds",
            "Time a routed lead waited in its queue's line before a rep was given it",
            ["queue"],
            buckets=SALES_BUCKETS,
            registry=r,
        )
        self.reassigned_c = Counter(
            "leadrouter_leads_reassigned",
            "Leads whose SLA passed with no first touch, by the queue they were in, the "
            "action (reassign, escalate) and its outcome (reassigned, nobody_available)",
            ["queue", "action", "outcome"],
            registry=r,
        )
        self.config_info = Gauge(
            "leadrouter_config_info",
            "The configuration version this worker runs (1 on that version's series only)",
            ["version"],
            registry=r,
        )
        self.config_switched = Gauge(
            "leadrouter_config_switched_timestamp_seconds",
            "When this worker began running its configuration version (start or switch)",
            registry=r,
        )
        self.config_switches = Counter(
            "leadrouter_config_switches",
            "Switches to a newly published configuration version without a restart",
            registry=r,
        )
        self.config_refused = Counter(
            "leadrouter_config_refused",
            "Records on the configuration topic refused (not_json, newer_format, corrupt, "
            "invalid); the worker kept the version it had",
            ["reason"],
            registry=r,
        )
        for reason in REFUSED_REASONS:
            self.config_refused.labels(reason)
        self.erasures_c = Counter(
            "leadrouter_erasures",
            "Erasure requests carried out (leadrouter forget): the person's state removed",
            registry=r,
        )
        self.expired_c = Counter(
            "leadrouter_expired",
            "Lead and visitor records removed after personal_data.expire_after_days of no touch",
            ["kind"],
            registry=r,
        )
        for kind in ("lead", "visitor"):
            self.expired_c.labels(kind)
        self.erased_events = Counter(
            "leadrouter_erased_events",
            "Events of a person that occurred before their erasure (a redelivery, a replay), "
            "dropped by topic",
            ["topic"],
            registry=r,
        )
        self.lines = WaitingLines(r)
        self.batch_process = self.batch_seconds.labels("process")
        self.batch_commit = self.batch_seconds.labels("commit")
        self._children: dict[tuple[Any, ...], Any] = {}
        self._pending: dict[tuple[Any, tuple[str, ...]], float] = {}
        self._scores: list[float] = []

    def running(self, version: str, since: float, *, switched: bool) -> None:
        """The configuration version this worker now runs, from `since`."""
        self.config_info.clear()
        self.config_info.labels(version).set(1)
        self.config_switched.set(since)
        if switched:
            self.config_switches.inc()

    def declare(self, queues: Iterable[str], rules: Iterable[str]) -> None:
        """Create the known label sets at zero, so a first breach or a quiet topic shows as
        a change from 0 rather than a series that appears from nowhere."""
        for topic in (*CHANNEL_TOPIC.values(), SALES_ACTIVITIES):
            for outcome in ("ok", "invalid", "duplicate"):
                self._child(self.events, topic, outcome)
        for reason in (*INVALID_REASONS, PROCESSING_ERROR):
            self._child(self.deadletters, reason)
        for reason in DISQUALIFY_REASONS:
            self._child(self.disqualified_c, reason)
        for queue in queues:
            self._child(self.sla_breaches, queue)
            self._child(self.unassigned_c, queue, "no_rep_available")
            self._child(self.speed_to_lead_h, queue)
            self._child(self.wait_h, queue)
            for outcome in CONVERSIONS:
                self._child(self.conversion_h, queue, outcome)
        for topic in (*CHANNEL_TOPIC.values(), SALES_ACTIVITIES):
            self.consumer_lag.labels(topic).set(0)

    def _count(self, metric: Any, *labels: str, n: float = 1) -> None:
        """Counted in a plain dict and added to Prometheus once per batch by flush()."""
        key = (metric, labels)
        self._pending[key] = self._pending.get(key, 0) + n

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for (metric, labels), n in pending.items():
            self._child(metric, *labels).inc(n)
        scores, self._scores = self._scores, []
        if scores:
            _observe_many(self.lead_score, scores)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def source(self, value: str | None) -> str:
        value = (value or "direct").lower()
        return value if value in self.sources else "other"

    def campaign(self, value: str | None) -> str:
        return value if value in self.campaigns else "other"

    # ---- ingest
    def event(self, topic: str, outcome: str, n: int = 1) -> None:
        self._count(self.events, topic, outcome, n=n)

    def deadletter(self, reason: str) -> None:
        self._count(self.deadletters, reason)

    def invalid(self, topic: str, reason: str) -> None:
        """A record sent to dead letters: an input topic's count too, not the internal one's."""
        if topic in INPUT_KINDS:
            self.event(topic, "invalid")
        self.deadletter(reason)

    # ---- Recorder (see workers.core.context.Recorder)
    def accepted(self, channel: str) -> None:
        self._count(self.events, CHANNEL_TOPIC[channel], "ok")

    def duplicate(self, channel: str) -> None:
        self._count(self.events, CHANNEL_TOPIC[channel], "duplicate")

    def generated(self, channel: str, source: str) -> None:
        self._count(self.generated_c, channel, self.source(source))

    def scored(self, total: float) -> None:
        self._scores.append(total)

    def disqualified(self, reason: str) -> None:
        self._count(self.disqualified_c, reason)

    def routed(self, queue: str, rule: str, grade: str, latency: float) -> None:
        self._count(self.routed_c, queue, rule, grade)
        self.route_latency.observe(latency)

    def unassigned(self, queue: str, reason: str) -> None:
        self._count(self.unassigned_c, queue, reason)

    def activity(self, kind: str, outcome: str) -> None:
        self._count(self.activities, kind, outcome)
        topic_outcome = "duplicate" if outcome == "duplicate" else "ok"
        self._count(self.events, SALES_ACTIVITIES, topic_outcome)

    def speed_to_lead(self, queue: str, seconds: float) -> None:
        self._child(self.speed_to_lead_h, queue).observe(seconds)

    def conversion(self, queue: str, source: str, outcome: str, seconds: float) -> None:
        self._child(self.conversion_h, queue, outcome).observe(seconds)
        self._count(self.outcomes, queue, self.source(source), outcome)

    def sla_breach(self, queue: str) -> None:
        self._count(self.sla_breaches, queue)

    def waited(self, queue: str, seconds: float) -> None:
        self._child(self.wait_h, queue).observe(seconds)

    def reassigned(self, queue: str, action: str, outcome: str) -> None:
        self._count(self.reassigned_c, queue, action, outcome)

    def erasure(self) -> None:
        self.erasures_c.inc()  # rare: not worth the batch's pending counts

    def expired(self, kind: str) -> None:
        self._count(self.expired_c, kind)

    def erased_event(self, channel: str) -> None:
        """An event of a person from before their erasure: dropped, not processed."""
        self._count(self.erased_events, CHANNEL_TOPIC.get(channel, SALES_ACTIVITIES))


class WaitingLines(Collector):
    """Leads waiting per queue and how long the oldest has waited, read at scrape time from
    what the worker last saw of the queue desks it owns. A worker shows only the queues
    whose desk it owns, so a sum over workers counts each line once."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time):
        self.lines: dict[str, tuple[int, float | None]] = {}
        self.clock = clock
        registry.register(self)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        lines, now = self.lines, self.clock()
        waiting = GaugeMetricFamily(
            "leadrouter_leads_waiting",
            "Routed leads waiting in their queue's line for a rep",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "leadrouter_waiting_oldest_seconds",
            "How long the oldest lead in a queue's line has waited (0 when none waits)",
            labels=["queue"],
        )
        for queue, (count, since) in sorted(lines.items()):
            waiting.add_metric([queue], count)
            oldest.add_metric([queue], max(0.0, now - since) if since is not None else 0.0)
        return [waiting, oldest]


def _observe_many(histogram: Histogram, values: list[float]) -> None:
    """One batch of observations: bucket counts added once each, not per value."""
    bounds = histogram._upper_bounds  # pinned prometheus-client ~=0.26 internals
    counts = [0] * len(bounds)
    for v in values:
        counts[bisect.bisect_left(bounds, v)] += 1
    for bucket, n in zip(histogram._buckets, counts, strict=True):
        if n:
            bucket.inc(n)
    histogram._sum.inc(sum(values))


class Health:
    """Liveness is a loop that still turns; readiness is a loop that owns partitions."""

    def __init__(self, stall_after: float = 60.0) -> None:
        self.last_beat = time.monotonic()
        self.ready = False
        self.stall_after = stall_after

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_beat < self.stall_after


def serve(
    registry: CollectorRegistry, health: Health, host: str, port: int
) -> tuple[ThreadingHTTPServer, Callable[[], None]]:
    """Serve /metrics, /healthz and /readyz on a daemon thread; returns the server and a stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, status, ctype = generate_latest(registry), 200, CONTENT_TYPE_LATEST
            elif path == "/healthz":
                ok = health.alive()
                body, status, ctype = (
                    (b"ok\n" if ok else b"stalled\n"),
                    200 if ok else 503,
                    "text/plain",
                )
            elif path == "/readyz":
                ok = health.ready and health.alive()
                body, status, ctype = (
                    (b"ready\n" if ok else b"not ready\n"),
                    200 if ok else 503,
                    "text/plain",
                )
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                return  # the scraper gave up (its timeout); nothing to report

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return server, stop
