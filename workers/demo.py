"""`leadrouter demo`: the whole loop on one machine, with a live terminal summary.

Starts the embedded broker unless one is configured, applies the topics, loads demo
accounts, runs the worker and the simulated marketing and sales traffic, and shows what
happens every two seconds: on a terminal one screen redrawn in place (workers/screen.py:
leads generated and contacted per minute side by side, the figures per queue beneath),
otherwise a block of plain lines per tick, for logs and pipes. Ctrl-C (or --duration)
stops everything it started.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers import admin
from workers.core import assign
from workers.core.queue_desk import duration
from workers.embedded import EmbeddedBroker, free_port
from workers.metrics import Metrics
from workers.runtime.worker import Worker
from workers.settings import Config
from workers.simulate import companies, run_simulation

if TYPE_CHECKING:
    from workers.screen import LiveScreen

REFRESH = 2.0


def _with(config: Config, **kafka: Any) -> Config:
    s = config.settings
    return replace(
        config, settings=s.model_copy(update={"kafka": s.kafka.model_copy(update=kafka)})
    )


def demo_accounts(config: Config) -> list[dict[str, Any]]:
    """A third of the simulated companies are known accounts; some have an owner rep."""
    reps = list(config.reps.reps)
    out = []
    for i, c in enumerate(companies()[::3]):
        out.append(
            {
                "domain": c.domain,
                "name": c.name,
                "employees": c.employees,
                "industry": c.industry,
                "country": c.country,
                "owner": reps[i % len(reps)] if i % 4 == 0 else None,
            }
        )
    return out


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Quantile from cumulative (upper bound, count) buckets, as histogram_quantile does."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            span = count - prev_count
            return prev_bound + (bound - prev_bound) * ((rank - prev_count) / span if span else 0)
        prev_bound, prev_count = bound, count
    return prev_bound


def summary(metrics: Metrics, config: Config | None = None) -> dict[str, Any]:
    """The figures the live view shows, read from the worker's own metrics (and, with the
    configuration, why a queue's leads wait)."""
    out: dict[str, Any] = {
        "events": {},
        "generated": {},
        "routed": {},
        "unassigned": {},
        "sla_breaches": 0,
        "breaches": {},
        "deadletters": {},
        "speed_to_lead": {},
        "contacted": 0,
        "contacted_by_queue": {},
        "waiting": {},
        "oldest_wait": {},
        "reassigned": {},
    }
    speed: dict[str, list[tuple[float, float]]] = {}
    speed_all: dict[float, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if sample.name == "leadrouter_events_total":
                key = f"{labels['topic']} {labels['outcome']}"
                out["events"][key] = out["events"].get(key, 0) + value
            elif sample.name == "leadrouter_leads_generated_total":
                out["generated"][labels["channel"]] = (
                    out["generated"].get(labels["channel"], 0) + value
                )
            elif sample.name == "leadrouter_leads_routed_total":
                out["routed"][labels["queue"]] = out["routed"].get(labels["queue"], 0) + value
            elif sample.name == "leadrouter_leads_unassigned_total":
                q = labels["queue"]
                out["unassigned"][q] = out["unassigned"].get(q, 0) + value
            elif sample.name == "leadrouter_sla_breaches_total":
                out["sla_breaches"] += value
                out["breaches"][labels["queue"]] = value
            elif sample.name == "leadrouter_deadletters_total":
                out["deadletters"][labels["reason"]] = value
            elif sample.name == "leadrouter_speed_to_lead_seconds_bucket":
                le = float(labels["le"])
                speed.setdefault(labels["queue"], []).append((le, value))
                speed_all[le] = speed_all.get(le, 0) + value
            elif sample.name == "leadrouter_leads_waiting":
                out["waiting"][labels["queue"]] = value
            elif sample.name == "leadrouter_waiting_oldest_seconds":
                out["oldest_wait"][labels["queue"]] = value
            elif (
                sample.name == "leadrouter_leads_reassigned_total"
                and labels["outcome"] == "reassigned"
            ):
                q = labels["queue"]
                out["reassigned"][q] = out["reassigned"].get(q, 0) + value
            elif sample.name == "leadrouter_speed_to_lead_seconds_count":
                # a first sales touch is one observation: the leads contacted
                out["contacted"] += value
                out["contacted_by_queue"][labels["queue"]] = value
    for queue, buckets in speed.items():
        buckets.sort()
        out["speed_to_lead"][queue] = (quantile(buckets, 0.5), quantile(buckets, 0.9))
    merged = sorted(speed_all.items())
    out["speed_to_lead_all"] = (quantile(merged, 0.5), quantile(merged, 0.9))
    out["waiting_why"] = why_waiting(config, out, time.time()) if config is not None else {}
    return out


def why_waiting(config: Config, s: dict[str, Any], now: float) -> dict[str, str]:
    """Why each queue with waiting leads has nobody to give them to, in the reps' terms:
    their working hours and absences now (capacity is the desk's to know: what is left)."""
    out = {}
    reps = config.reps.reps
    for queue, n in s["waiting"].items():
        if not n or queue not in config.routing.queues:
            continue
        members = config.routing.queues[queue].reps
        reasons = [assign.unavailable_because(reps[r], {}, now) or "" for r in members]
        if not members:
            out[queue] = "the queue has no reps"
        elif all(r.startswith(("outside working hours", "not a working day")) for r in reasons):
            out[queue] = "nobody in working hours"
        elif all(r for r in reasons):
            out[queue] = "nobody in working hours or in office"
        else:
            out[queue] = "reps in office are at capacity or have their share for now"
    return out


def render(s: dict[str, Any], elapsed: float, metrics_url: str) -> str:
    """The plain lines printed per tick when stdout is not a terminal (logs, pipes)."""

    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}s"

    def fmt(d: dict[str, Any]) -> str:
        return "  ".join(f"{k}={int(v)}" for k, v in sorted(d.items()) if v) or "-"

    events: dict[str, list[str]] = {}
    for key, count in sorted(s["events"].items()):
        topic, outcome = key.rsplit(" ", 1)
        if count:
            events.setdefault(topic.split(".", 1)[-1], []).append(f"{outcome}={int(count)}")
    speed = [
        f"{q} p50={secs(p50)} p90={secs(p90)} (n={int(s['contacted_by_queue'].get(q, 0))})"
        for q, (p50, p90) in sorted(s["speed_to_lead"].items())
        if p50 is not None
    ]
    waiting = [
        f"{q}={int(n)} (oldest {duration(s['oldest_wait'].get(q, 0))}; "
        f"{s.get('waiting_why', {}).get(q, 'nobody available')})"
        for q, n in sorted(s["waiting"].items())
        if n
    ]

    lines = [
        f"leadrouter demo  {elapsed:6.0f}s  metrics: {metrics_url}",
        "events in        " + ("  ".join(f"{t}: {' '.join(v)}" for t, v in events.items()) or "-"),
        f"leads generated  {fmt(s['generated'])}",
        f"routed per queue {fmt(s['routed'])}  (total {int(sum(s['routed'].values()))})",
        "waiting          " + ("  ".join(waiting) or "-"),
        f"reassigned       {fmt(s['reassigned'])}",
        "speed to lead    " + ("  ".join(speed) or "-"),
        f"SLA breaches     {int(s['sla_breaches'])}",
        f"dead letters     {fmt(s['deadletters'])}",
    ]
    return "\n".join(lines)


def run_demo(config: Config, *, rate: float, duration: float | None, seed: int | None) -> int:
    """Run everything until Ctrl-C or --duration; 1 if the worker died under the demo."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # a closed terminal (or tmux session) too: the broker runs in a session of its own and
    # would outlive a demo that died of the hang-up
    signal.signal(signal.SIGHUP, lambda *_: stop.set())
    workdir = Path(tempfile.mkdtemp(prefix="leadrouter-demo-"))
    broker = None
    if not config.settings.kafka.bootstrap_servers:
        broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
        print(f"embedded broker (Tansu) on {broker.bootstrap_servers}", flush=True)
        config = _with(
            config,
            bootstrap_servers=broker.bootstrap_servers,
            processing_guarantee="at_least_once",
        )
    s = config.settings
    store = s.store.model_copy(update={"kind": "memory", "data_dir": str(workdir / "data")})
    metrics_cfg = s.metrics
    try:
        import socket

        with socket.socket() as probe:
            probe.bind((metrics_cfg.host, metrics_cfg.port))
        if metrics_cfg.port == 0:
            raise OSError("port 0: pick one here, so the screen shows where metrics are")
    except OSError:
        metrics_cfg = metrics_cfg.model_copy(update={"port": free_port()})
    config = replace(config, settings=s.model_copy(update={"store": store, "metrics": metrics_cfg}))
    metrics_url = f"http://{metrics_cfg.host}:{metrics_cfg.port}/metrics"
    worker = Worker(config)
    threads: list[threading.Thread] = []
    screen: LiveScreen | None = None
    started = time.monotonic()
    try:
        for line in admin.apply(config):
            print(f"topic {line}", flush=True)
        print(f"accounts loaded: {admin.load_accounts(config, demo_accounts(config))}", flush=True)
        threads.append(threading.Thread(target=worker.run, name="worker", daemon=True))
        threads.append(
            threading.Thread(
                target=run_simulation,
                name="simulator",
                kwargs={
                    "config": config,
                    "rate": rate,
                    "duration": duration or 10**9,
                    "seed": seed,
                    "sales_delay_scale": 0.02,
                    "stop": stop,
                },
                daemon=True,
            )
        )
        for t in threads:
            t.start()
        if sys.stdout.isatty():
            from workers.screen import LiveScreen

            screen = LiveScreen(metrics_url, REFRESH)
            screen.start(summary(worker.metrics, config), time.monotonic() - started)
        while not stop.wait(REFRESH):
            elapsed = time.monotonic() - started
            if screen is not None:
                screen.show(summary(worker.metrics, config), elapsed)
            else:
                print(
                    render(summary(worker.metrics, config), elapsed, metrics_url) + "\n", flush=True
                )
            if duration is not None and elapsed >= duration:
                break
            if not threads[0].is_alive():
                print("worker stopped unexpectedly", file=sys.stderr)
                return 1
    finally:
        stop.set()
        lines = dict(worker.metrics.lines.lines)
        worker.stop()
        try:
            for t in threads:
                t.join(30)
            # The waiting lines as the worker last owned them: stopping revokes its partitions.
            worker.metrics.lines.lines = lines or worker.metrics.lines.lines
            final = summary(worker.metrics, config)
            if screen is not None:
                screen.show(final, time.monotonic() - started)
                screen.stop()  # the last frame stays on the terminal
            else:
                print(render(final, time.monotonic() - started, metrics_url), flush=True)
            print(f"routed leads: {int(sum(final['routed'].values()))}", flush=True)
        finally:  # even when the terminal is gone and printing fails
            if broker is not None:
                broker.stop()
            if os.environ.get("LEADROUTER_KEEP_DEMO_DIR") is None:
                import shutil

                shutil.rmtree(workdir, ignore_errors=True)
    return 0
