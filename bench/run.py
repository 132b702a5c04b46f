"""The benchmark (issue 5): leadrouter against three baselines on the reference Kafka broker.

    make bench                       # = python -m bench.run
    python -m bench.run --events 300000 --rate 2000 --latency-seconds 20 --million

Contenders, each its own process on its own copy of the same pre-loaded topics (6 partitions):
  (a) raw_aiokafka  hand-written aiokafka consume → produce pass-through (the Python client's
                    ceiling), bench/contenders/raw_aiokafka.py
  (b) faust_naive   a per-event faust-streaming agent: decode, one table lookup/update, await
                    send (the usual way), bench/contenders/faust_naive.py
  (c) leadrouter    `leadrouter worker`, the full pipeline, memory store, exactly_once
  (d) quix_streams  a stateful Quix Streams application, exactly-once, RocksDB state: decode,
                    two state reads and writes per lead, one output per event; run from its
                    own venv .venv-quix (bench/quix_venv.py), bench/contenders/quix_streams.py
Then leadrouter again with two and four worker processes in one group (scaling: events per
CPU-second of the workers against one worker's, and the share of events whose lead is owned
by another worker, so that they cross the internal topic), and, with --million,
one worker with the RocksDB store after a million distinct leads (memory). Last, `leadrouter
replay` (bench/replay.py): events/s per configuration and peak RSS, state in memory and on
disk over the simulator's traffic, and through this broker (read with workers.history); with
--million also a million events with the state on disk.

Throughput: the input is produced before the clock starts. The clock starts when the
contender consumes its first input record: (a)/(b)/(d) print that moment and their CPU time
(`BENCH first_consumed=`); leadrouter reads with read_committed, so its input is pre-loaded
inside one open Kafka transaction and the clock starts when the harness commits it, after
the worker(s) reported /readyz (that counts the worker's first fetch against it). The clock
stops when the harness's read_committed consumer receives the last output: for (a)/(b)/(d) the
N-th pass-through or dead-letter record; for leadrouter the last record on
`<prefix>leads.routed.*` once every input is counted in `leadrouter_events_total` (all
outcomes) and neither the routed count nor `leadrouter_batch_records_sum` has moved for a
second. events/s = inputs / elapsed.
CPU seconds are the contender's user+system time over that window (/proc), peak RSS its
VmHWM at the end of it.

Latency, on the same (warm) process afterwards: the harness sends fresh simulator events at a
fixed rate (default 2,000/s, after a warm-up that is not sampled), stamping `occurred_at` at
send, and for every output that names a sent event (`event_id` for (a)/(b)/(d),
`trigger_event_id` of `lead.assigned` and `lead.activity` for leadrouter) takes the consume
time minus the send time. p50/p99 are nearest-rank over those samples; the offered rate
achieved and how far the sender ever fell behind schedule are reported. The same consumer
reads the sent events back from the input topics: that "floor" is what the producer's
linger, the broker and the harness add by themselves at that moment.

The broker is warmed up first; the CPU that other work on the machine used is reported per
window, and `--repeat N` keeps the best of N interleaved rounds (see bench/README.md).

Prints a table and writes everything as JSON to bench/results/<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import gcwatch, measure, procs, quix_venv, workload
from bench import replay as replay_bench
from bench.contenders import DEADLETTER, PASS_THROUGH_OUT
from bench.measure import Gate, OutputWatch, wait_until
from topics import catalogue as cat
from workers import admin

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BASELINES = {
    "raw_aiokafka": ("bench.contenders.raw_aiokafka", "(a) raw aiokafka pass-through"),
    "faust_naive": ("bench.contenders.faust_naive", "(b) faust naive agent"),
    "quix_streams": ("bench.contenders.quix_streams", "(d) quix streams exactly-once"),
}
LEADROUTER_LABEL = "(c) leadrouter worker"
ALL_CONTENDERS = ("raw_aiokafka", "faust_naive", "quix_streams", "leadrouter", "leadrouter_alo")
ALO_LABEL = "(c) leadrouter at_least_once"
BUSY_CORES = 0.25  # CPU that other work used during a window, in cores: above, figures are noisy
TARGETS = {
    "events_per_s": 20_000,
    "ratio_to_raw": 0.5,
    "p99_ms": 100.0,
    "rate": 2_000,
    # Events per CPU-second of N workers in one group against one worker's (issue 14).
    "scaling_efficiency": 0.9,
}


def scale_label(processes: int) -> str:
    return f"(c) leadrouter x{processes} procs"


def scale_counts(text: str) -> list[int]:
    """`--scale 2,4`: worker counts above one, each once, in order."""
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from None
    if any(n < 2 for n in counts):
        raise argparse.ArgumentTypeError(f"worker counts above one, as 2,4: {text!r}")
    return counts


def new_run_id(started: dt.datetime) -> str:
    """A short id for one run's topic prefixes: day and time of day, and 4 random hex digits.
    Short because Quix Streams names its changelog topic after its consumer group and every
    input topic (`changelog__<group>--<topic>--<topic>--<topic>--default`), each carrying
    the prefix, and Kafka refuses names over 249 characters: with the full date, a
    `--repeat` round's tag (`quix_streams-r1`) went over."""
    return started.strftime("%d%H%M%S") + "-" + uuid.uuid4().hex[:4]


@dataclass
class Context:
    args: argparse.Namespace
    bootstrap: str
    broker_pid: int | None
    work: Path
    config_dir: Path
    run_id: str
    throughput: workload.Workload
    latency: workload.Workload
    notes: list[str] = field(default_factory=list)

    def prefix(self, name: str) -> str:
        return f"bench-{self.run_id}-{name}."

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    def say(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _self_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


class Window:
    """What else used the machine between two moments: the broker, the harness itself, and
    everything else (machine-wide CPU minus the contender, the broker and the harness)."""

    def __init__(self, ctx: Context, pids: Sequence[int]) -> None:
        self.ctx = ctx
        self.pids = list(pids)
        self.broker0 = measure.cpu_seconds(ctx.broker_pid) if ctx.broker_pid else None
        self.harness0 = _self_cpu()
        self.own0 = sum(measure.cpu_seconds(p) or 0.0 for p in self.pids)
        self.machine0 = measure.machine_busy_seconds()
        self.load0 = measure.loadavg()
        self.stall0 = measure.cpu_stall_us()
        self.t0 = time.monotonic()

    def close(self) -> dict[str, Any]:
        broker1 = measure.cpu_seconds(self.ctx.broker_pid) if self.ctx.broker_pid else None
        stall1 = measure.cpu_stall_us()
        machine1 = measure.machine_busy_seconds()
        own = sum(measure.cpu_seconds(p) or 0.0 for p in self.pids) - self.own0
        harness = _self_cpu() - self.harness0
        span = time.monotonic() - self.t0
        broker = (
            broker1 - self.broker0 if broker1 is not None and self.broker0 is not None else None
        )
        other = None
        if machine1 is not None and self.machine0 is not None and span > 0:
            other = max(0.0, machine1 - self.machine0 - own - harness - (broker or 0.0))
        return {
            # share of the window in which some runnable task waited for a CPU (PSI "some");
            # the benchmark's own processes cause some of it
            "cpu_pressure_pct": (
                round(100 * (stall1 - self.stall0) / 1e6 / span, 1)
                if stall1 is not None and self.stall0 is not None and span > 0
                else None
            ),
            "broker_cpu_seconds": round(broker, 2) if broker is not None else None,
            "harness_cpu_seconds": round(harness, 2),
            # CPU used by everything outside this benchmark, in cores: other people's work
            "other_cores": round(other / span, 2) if other is not None else None,
            "loadavg_before": self.load0,
            "loadavg_after": measure.loadavg(),
        }


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _mib(kib: int | None) -> float | None:
    return round(kib / 1024, 1) if kib is not None else None


def _ms(v: float | None) -> float | None:
    return round(v * 1000, 1) if v is not None else None


def _percentiles(values: list[float]) -> dict[str, Any]:
    values = sorted(values)
    return {
        "samples": len(values),
        "p50_ms": _ms(measure.percentile(values, 0.50)),
        "p90_ms": _ms(measure.percentile(values, 0.90)),
        "p99_ms": _ms(measure.percentile(values, 0.99)),
        "max_ms": _ms(values[-1] if values else None),
    }


def _latency_summary(
    samples: list[tuple[float, str]], sender: measure.PacedSend, unmatched: int
) -> dict[str, Any]:
    outputs = [s for s, kind in samples if kind != "floor"]
    out: dict[str, Any] = {
        "offered_rate": sender.offered_rate,
        "asked_rate": None,
        "sent": sender.sent,
        "measured_events": sender.measured,
        "send_seconds": sender.seconds,
        "sender_max_behind_ms": round(sender.max_behind_s * 1000, 1),
        # outputs of warm-up events, of malformed records, or (leadrouter) of touches
        # from before this run: no latency sample
        "unsampled_outputs": unmatched,
        **_percentiles(outputs),
        # the same sent events read back from the input topics by the same consumer
        "floor": _percentiles([s for s, kind in samples if kind == "floor"]),
    }
    kinds = sorted({kind for _, kind in samples} - {"floor"})
    if len(kinds) > 1:
        out["by_output"] = {
            kind: _percentiles([s for s, k in samples if k == kind]) for kind in kinds
        }
    return out


# ---------------------------------------------------------------------------- latency
def latency_phase(
    ctx: Context,
    prefix: str,
    outputs: list[str],
    id_fields: tuple[str, ...],
    is_done: Any,
    cpu_pids: list[int],
) -> dict[str, Any]:
    """Paced send of the latency workload into `prefix`, samples from `outputs`."""
    args = ctx.args
    sent_at: dict[str, float] = {}
    watch = OutputWatch(
        ctx.bootstrap,
        outputs,
        from_start=False,
        floor_topics=[prefix + t for t in workload.INPUT_TOPICS],
        sent=sent_at,
        id_fields=id_fields,
    ).start()
    records = [(prefix + t, k, v, e) for t, k, v, e in ctx.latency.records]
    cpu0 = [measure.cpu_seconds(p) or 0.0 for p in cpu_pids]
    window = Window(ctx, cpu_pids)
    try:
        sender = measure.paced_send(
            ctx.bootstrap, records, args.rate, args.warmup, workload.stamp_send_time, sent_at
        )
        wait_until(
            lambda: is_done(watch, len(records)),
            args.latency_seconds + args.warmup + 120,
            "the latency run's outputs",
            every=0.1,
        )
    finally:
        watch.stop()
    cpu1 = [measure.cpu_seconds(p) or 0.0 for p in cpu_pids]
    out = _latency_summary(watch.samples, sender, watch.unmatched)
    out["asked_rate"] = args.rate
    out["outputs"] = watch.count
    out["cpu_seconds"] = round(sum(cpu1) - sum(cpu0), 2)
    out.update(window.close())
    return out


def warm_broker(ctx: Context) -> dict[str, Any]:
    """Before anything is measured: the workload once through the broker (transactional
    load, read back) and a few seconds of paced traffic, so that the JVM's JIT compiling
    and the first log segments are not charged to whichever contender comes first."""
    prefix = ctx.prefix("warmup")
    workload.create_topics(ctx.config_dir, ctx.bootstrap, prefix, [])
    inputs = [prefix + t for t in workload.INPUT_TOPICS]
    started = time.monotonic()
    broker0 = measure.cpu_seconds(ctx.broker_pid) if ctx.broker_pid else None
    gate = Gate(ctx.bootstrap, prefix.rstrip("."))
    try:
        gate.load(ctx.throughput.for_prefix(prefix))
        gate.open()
    finally:
        gate.abort()
    watch = OutputWatch(ctx.bootstrap, inputs, from_start=True).start()
    try:
        watch.wait_count(ctx.throughput.count, 300, "the warm-up read-back")
    finally:
        watch.stop()
    seconds = min(5.0, ctx.args.latency_seconds)
    sent: dict[str, float] = {}
    records = [(prefix + t, k, v, e) for t, k, v, e in ctx.latency.records]
    records = records[: int(seconds * ctx.args.rate)]
    watch = OutputWatch(ctx.bootstrap, [], from_start=False, floor_topics=inputs, sent=sent)
    watch.start()
    try:
        measure.paced_send(ctx.bootstrap, records, ctx.args.rate, 0, workload.stamp_send_time, sent)
        time.sleep(0.5)
    finally:
        watch.stop()
    broker1 = measure.cpu_seconds(ctx.broker_pid) if ctx.broker_pid else None
    return {
        "seconds": round(time.monotonic() - started, 1),
        "broker_cpu_seconds": (
            round(broker1 - broker0, 1) if broker0 is not None and broker1 is not None else None
        ),
        "floor": _percentiles([s for s, kind in watch.samples if kind == "floor"]),
    }


# ---------------------------------------------------------------------------- baselines
def run_baseline(ctx: Context, name: str, tag: str) -> dict[str, Any]:
    module, label = BASELINES[name]
    prefix = ctx.prefix(tag)
    n = ctx.throughput.count
    ctx.say(f"{name}: creating topics and pre-loading {n} events under {prefix}")
    workload.create_topics(ctx.config_dir, ctx.bootstrap, prefix, [PASS_THROUGH_OUT])
    gate = Gate(ctx.bootstrap, prefix.rstrip("."))
    gate.load(ctx.throughput.for_prefix(prefix))
    gate.open()
    outputs = [prefix + PASS_THROUGH_OUT, prefix + DEADLETTER]
    python, extra = procs.PYTHON, []
    result: dict[str, Any] = {"label": label, "prefix": prefix, "processes": 1}
    if name == "quix_streams":  # its own venv (confluent-kafka<2.13), RocksDB state on disk
        python = str(quix_venv.ensure(ctx.say))
        state_dir = ctx.work / "quix-state" / tag
        extra = ["--state-dir", str(state_dir)]
        extra += ["--commit-interval", str(ctx.args.quix_commit_interval)]
        result["commit_interval_s"] = ctx.args.quix_commit_interval
    watch = OutputWatch(ctx.bootstrap, outputs, from_start=True).start()
    proc = procs.baseline(
        module, tag, ctx.bootstrap, prefix, f"{prefix}group", ctx.log(tag), python, extra
    )
    try:
        proc.start()
        ctx.say(f"{name}: started (pid {proc.pid}); waiting for its first consumed record")

        def first() -> tuple[float, float] | None:
            proc.check_alive()
            return proc.first_consumed()

        t0, cpu0 = wait_until(first, 180, f"{name} to consume", every=0.02)
        window = Window(ctx, [proc.pid])
        timeout = max(120.0, n / 1000)
        try:
            watch.wait_count(n, timeout, f"{name} to pass every event through")
        finally:
            watch.stop()
        cpu1 = proc.cpu() or 0.0
        mem = proc.memory()
        elapsed = (watch.last_at or time.time()) - t0
        result["throughput"] = {
            "events": n,
            "outputs": watch.count,
            "elapsed_s": round(elapsed, 3),
            "events_per_s": _rate(n, elapsed),
            "cpu_seconds": round(cpu1 - cpu0, 2),
            "cores_used": round((cpu1 - cpu0) / elapsed, 2) if elapsed > 0 else None,
            "peak_rss_mib": _mib(mem.get("VmHWM")),
            "rss_mib": _mib(mem.get("VmRSS")),
            "clock_start": "baseline's own first consumed record",
            **window.close(),
        }
        ctx.say(f"{name}: {result['throughput']['events_per_s']:,.0f} events/s")
        if ctx.args.latency_seconds > 0:
            ctx.say(f"{name}: latency at {ctx.args.rate}/s for {ctx.args.latency_seconds}s")
            result["latency"] = latency_phase(
                ctx,
                prefix,
                outputs,
                ("event_id",),
                lambda w, expected: proc.check_alive() or w.count >= expected,
                [proc.pid],
            )
            ctx.say(f"{name}: p99 {result['latency']['p99_ms']} ms")
    finally:
        watch.stop()
        proc.stop()
        gate.abort()
    result["process"] = proc.rusage
    done = re.search(r"BENCH done (.*)", proc.log_text())
    if done:  # what the contender counted itself (quix_streams: state really used)
        result["counted"] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", done.group(1))}
    return result


# ---------------------------------------------------------------------------- leadrouter
def _wait_processed(
    workers: Sequence[procs.LeadrouterProc],
    watch: OutputWatch | None,
    expected: int,
    timeout: float,
    quiet: float = 1.0,
    progress: Callable[[float], None] | None = None,
) -> float:
    """Until every input is counted in `leadrouter_events_total` (all outcomes) and then
    nothing moved for `quiet` seconds: no routed output and no record processed (the sum of
    `leadrouter_batch_records`, which also counts the internal hand-overs between workers).
    `progress` is told the events counted at each look. Returns the events counted."""
    end = time.monotonic() + timeout
    last: tuple[float, int] = (-1.0, -1)
    still_since = time.monotonic()
    while True:
        metrics = [w.metrics() for w in workers]
        counted = sum(m.get("leadrouter_events_total", 0.0) for m in metrics)
        processed = sum(m.get("leadrouter_batch_records_sum", 0.0) for m in metrics)
        if progress is not None:
            progress(counted)
        if watch is not None and watch.error:
            raise watch.error
        now = time.monotonic()
        seen = (processed, watch.count if watch is not None else 0)
        if seen != last:
            last, still_since = seen, now
        if counted >= expected and now - still_since >= quiet:
            return counted
        if now > end:
            raise TimeoutError(
                f"leadrouter counted {counted:.0f}/{expected} events after {timeout:.0f}s"
            )
        time.sleep(0.5)  # each scrape costs the worker a few ms of its GIL


def _start_workers(
    ctx: Context,
    name: str,
    prefix: str,
    count: int,
    store: str,
    extra_env: dict[str, str] | None = None,
) -> list[procs.LeadrouterProc]:
    workers = []
    for i in range(count):
        data_dir = ctx.work / "data" / f"{name}-{i}"
        gc_log = ctx.work / "logs" / f"{name}-{i}.gc" if ctx.args.gc_log else None
        workers.append(
            procs.LeadrouterProc(
                f"{name}-{i}",
                ctx.bootstrap,
                ctx.config_dir,
                data_dir,
                prefix=prefix,
                group=f"{prefix}group",
                store=store,
                log=ctx.log(f"{name}-{i}"),
                gc_log=gc_log,
                extra_env=extra_env,
            ).start()
        )
    for w in workers:
        w.wait_ready()
    return workers


def _py_spy(ctx: Context, name: str, pid: int) -> subprocess.Popen[bytes]:
    """Sample the worker (wall clock, idle included) into DIR/<name>-<run>.txt."""
    ctx.args.py_spy.mkdir(parents=True, exist_ok=True)
    out = ctx.args.py_spy / f"{name}-{ctx.run_id}"
    argv = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid)]
    argv += ["--rate", "200", "--idle", "--format", "raw", "-o", f"{out}.txt"]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach before the clock starts
    return spy


def _gc(worker: procs.LeadrouterProc, start: float, end: float) -> dict[str, Any]:
    assert worker.gc_log is not None
    return gcwatch.read(worker.gc_log, start, end)


def _stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def _prepare_leadrouter_topics(ctx: Context, prefix: str) -> Any:
    config = workload.create_topics(ctx.config_dir, ctx.bootstrap, prefix, [])
    accounts = admin.load_accounts(config, workload.demo_accounts(config))
    return config, accounts


def _preload_leadrouter(ctx: Context, name: str) -> tuple[str, Any, list[str], Gate]:
    """Topics under the contender's prefix, the demo accounts, and the workload loaded inside
    one open transaction (the returned gate commits it). Returns (prefix, accounts, routed
    topics, gate)."""
    prefix = ctx.prefix(name)
    ctx.say(f"{name}: creating topics and pre-loading {ctx.throughput.count} events under {prefix}")
    config, accounts = _prepare_leadrouter_topics(ctx, prefix)
    gate = Gate(ctx.bootstrap, prefix.rstrip("."))
    gate.load(ctx.throughput.for_prefix(prefix))
    return prefix, accounts, workload.routed_topics(config, prefix), gate


def run_leadrouter(ctx: Context, name: str, processes: int, latency: bool) -> dict[str, Any]:
    n = ctx.throughput.count
    prefix, accounts, routed, gate = _preload_leadrouter(ctx, name)
    result: dict[str, Any] = {
        "label": LEADROUTER_LABEL if processes == 1 else scale_label(processes),
        "prefix": prefix,
        "processes": processes,
        "store": "memory",
        "accounts": accounts,
    }
    workers: list[procs.LeadrouterProc] = []
    watch: OutputWatch | None = None
    try:
        workers = _start_workers(ctx, name, prefix, processes, "memory")
        if processes > 1:
            # Every member ready and the group Stable with each owning partitions, then a
            # moment more, so that no rebalance falls inside the measured window.
            group = f"{prefix}group"
            wait_until(
                lambda: measure.group_settled(ctx.bootstrap, group, processes),
                120,
                f"group {group} to settle",
                every=0.5,
            )
            time.sleep(ctx.args.settle)
            for w in workers:
                w.check_alive()
        watch = OutputWatch(ctx.bootstrap, routed, from_start=True).start()
        cpu0 = [w.cpu() or 0.0 for w in workers]
        window = Window(ctx, [w.pid for w in workers])
        ctx.say(f"{name}: {processes} worker(s) ready; committing the pre-loaded input")
        spy = None
        if ctx.args.py_spy:  # of a group, its first worker
            spy = _py_spy(ctx, f"{name}-throughput", workers[0].pid)
        t0 = gate.open()
        timeout = max(180.0, n / 500)
        try:
            counted = _wait_processed(workers, watch, n, timeout)
        finally:
            _stop_spy(spy)
        cpu1 = [w.cpu() or 0.0 for w in workers]
        mems = [w.memory() for w in workers]
        elapsed = (watch.last_at or time.time()) - t0
        watch.stop()
        conditions = window.close()  # before the count below, which costs the broker CPU
        cpu = sum(cpu1) - sum(cpu0)
        # Records that crossed to another partition's owner through Kafka (the rest were
        # handed over in memory): events whose lead another worker owns, and their answers.
        crossed = measure.count_records(ctx.bootstrap, prefix + cat.INTERNAL)
        metrics = [w.metrics() for w in workers]
        batches = sum(m.get("leadrouter_batch_records_count", 0) for m in metrics)
        result["throughput"] = {
            "events": n,
            "events_counted": int(counted),
            "outputs": watch.count,
            "routed_share": round(watch.count / n, 4) if n else None,
            "leads_routed": int(sum(m.get("leadrouter_leads_routed_total", 0) for m in metrics)),
            "batches": int(batches),
            "avg_batch_records": round(counted / batches, 1) if batches else None,
            "elapsed_s": round(elapsed, 3),
            "first_output_after_s": round(watch.first_at - t0, 3) if watch.first_at else None,
            "events_per_s": _rate(n, elapsed),
            "cpu_seconds": round(cpu, 2),
            "cpu_seconds_per_process": [round(b - a, 2) for a, b in zip(cpu0, cpu1, strict=True)],
            "events_per_cpu_s": _rate(n, cpu),
            "internal_records": crossed,
            "internal_records_per_event": round(crossed / n, 3) if n else None,
            "cores_used": round(cpu / elapsed, 2) if elapsed > 0 else None,
            "peak_rss_mib": max((_mib(m.get("VmHWM")) or 0.0) for m in mems),
            "peak_rss_mib_per_process": [_mib(m.get("VmHWM")) for m in mems],
            "clock_start": "commit of the pre-loaded input transaction (workers ready)",
            **conditions,
        }
        if ctx.args.gc_log:
            result["throughput"]["gc"] = [_gc(w, t0, t0 + elapsed) for w in workers]
        ctx.say(f"{name}: {result['throughput']['events_per_s']:,.0f} events/s")
        if latency and ctx.args.latency_seconds > 0:
            ctx.say(f"{name}: latency at {ctx.args.rate}/s for {ctx.args.latency_seconds}s")

            def done(w: OutputWatch, expected: int) -> bool:
                _wait_processed(workers, w, n + expected, ctx.args.latency_seconds + 120)
                return True

            lat_t0 = time.time()
            lat = leadrouter_latency(ctx, name, prefix, routed, done, workers)
            if ctx.args.gc_log:
                lat["gc"] = [_gc(w, lat_t0, time.time()) for w in workers]
            result["latency"] = lat
            ctx.say(f"{name}: p99 {lat['p99_ms']} ms")
    finally:
        if watch is not None:
            watch.stop()
        for w in workers:
            w.stop()
        gate.abort()
    result["process"] = [w.rusage for w in workers]
    return result


def leadrouter_latency(
    ctx: Context,
    name: str,
    prefix: str,
    routed: list[str],
    done: Callable[[OutputWatch, int], bool],
    workers: list[procs.LeadrouterProc],
) -> dict[str, Any]:
    """The paced latency run of leadrouter workers (either guarantee), with their first
    worker's batches over it and, with --py-spy, its profile."""
    first = workers[0]
    before = first.metrics()
    spy = _py_spy(ctx, f"{name}-latency", first.pid) if ctx.args.py_spy else None
    try:
        lat = latency_phase(
            ctx, prefix, routed, ("trigger_event_id",), done, [w.pid for w in workers]
        )
    finally:
        _stop_spy(spy)
    lat.update(batch_phases(before, first.metrics()))
    return lat


def batch_phases(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """The worker's batches between two scrapes of its metrics: how many, how large, and the
    average time each spent processing and committing (where a latency run's time goes)."""
    batches = after.get("leadrouter_batch_records_count", 0) - before.get(
        "leadrouter_batch_records_count", 0
    )
    records = after.get("leadrouter_batch_records_sum", 0) - before.get(
        "leadrouter_batch_records_sum", 0
    )
    phases: dict[str, Any] = {
        "batches": int(batches),
        "avg_batch_records": round(records / batches, 1) if batches else None,
    }
    for phase in ("process", "commit"):
        series = f'leadrouter_batch_seconds_sum{{phase="{phase}"}}'
        spent = after.get(series, 0.0) - before.get(series, 0.0)
        phases[f"avg_batch_{phase}_ms"] = round(spent / batches * 1000, 1) if batches else None
    return phases


def run_leadrouter_alo(ctx: Context, name: str) -> dict[str, Any]:
    """Latency only, with processing.guarantee at_least_once: what the per-batch Kafka
    transaction costs. The worker first works through the same pre-loaded events (untimed:
    it reads uncommitted records, so the loading gate cannot start a clock), so its state
    is as large as the exactly-once worker's when the paced send starts."""
    n = ctx.throughput.count
    prefix, accounts, routed, gate = _preload_leadrouter(ctx, name)
    gate.open()
    result: dict[str, Any] = {
        "label": ALO_LABEL,
        "prefix": prefix,
        "processes": 1,
        "store": "memory",
        "guarantee": "at_least_once",
        "accounts": accounts,
    }
    env = {"LEADROUTER_PROCESSING_GUARANTEE": "at_least_once"}
    workers = _start_workers(ctx, name, prefix, 1, "memory", env)
    try:
        _wait_processed(workers, None, n, max(180.0, n / 500))

        def done(w: OutputWatch, expected: int) -> bool:
            _wait_processed(workers, w, n + expected, ctx.args.latency_seconds + 120)
            return True

        ctx.say(f"{name}: latency at {ctx.args.rate}/s for {ctx.args.latency_seconds}s")
        lat = leadrouter_latency(ctx, name, prefix, routed, done, workers)
        result["latency"] = lat
        ctx.say(f"{name}: p99 {lat['p99_ms']} ms")
    finally:
        for w in workers:
            w.stop()
    result["process"] = [w.rusage for w in workers]
    return result


def run_million(ctx: Context) -> dict[str, Any]:
    """One worker, RocksDB store, a million form fills from distinct people: memory after."""
    count = ctx.args.million_leads
    name = "million"
    prefix = ctx.prefix(name)
    ctx.say(f"{name}: pre-loading {count:,} form fills with distinct e-mails under {prefix}")
    config, _ = _prepare_leadrouter_topics(ctx, prefix)
    producer = measure.fast_producer(ctx.bootstrap)
    stamp = time.time()
    topic = prefix + cat.FORM_FILLS
    size = 0

    def records() -> Any:
        nonlocal size
        for value in workload.distinct_form_fills(config, count, ctx.args.seed + 2, stamp):
            size += len(value)
            key = value[value.index(b'"email":"') + 9 :].split(b'"', 1)[0]
            yield topic, key, value

    measure.produce_all(producer, records())
    if producer.flush(300):
        raise RuntimeError("million-lead pre-load not delivered")
    ctx.say(f"{name}: loaded ({size / count:.0f} B/event); starting one rocksdb worker")
    data_dir = ctx.work / "data" / name
    worker = _rocksdb_worker(ctx, name, prefix, data_dir)
    result: dict[str, Any] = {"leads": count, "avg_event_bytes": round(size / count, 1)}
    try:
        worker.start()
        started = time.time()
        worker.wait_ready()
        cpu0 = worker.cpu() or 0.0
        marks = [count // 4, count // 2, count]  # 250k, 500k and 1M of the default
        rss_by_leads: list[tuple[int, float | None]] = []

        def sample(counted: float) -> None:
            """RSS as the leads grow: flat when the state is on disk, not in memory."""
            while marks and counted >= marks[0]:
                rss_by_leads.append((marks.pop(0), _mib(worker.memory().get("VmRSS"))))

        _wait_processed([worker], None, count, max(600.0, count / 200), quiet=0, progress=sample)
        elapsed = time.time() - started
        metrics = worker.metrics()
        mem = worker.memory()
        result.update(
            {
                "store": "rocksdb",
                "seconds_to_process": round(elapsed, 1),
                "events_per_s_incl_start": _rate(count, elapsed),
                "cpu_seconds": round((worker.cpu() or 0.0) - cpu0, 1),
                "leads_generated": int(metrics.get("leadrouter_leads_generated_total", 0)),
                "leads_routed": int(metrics.get("leadrouter_leads_routed_total", 0)),
                "rss_mib": _mib(mem.get("VmRSS")),
                "peak_rss_mib": _mib(mem.get("VmHWM")),
                "rss_mib_by_leads": rss_by_leads,
                "data_dir_mib_running": round(measure.dir_bytes(data_dir) / 2**20, 1),
            }
        )
    finally:
        worker.stop(timeout=120)
    result["data_dir_mib_after_stop"] = round(measure.dir_bytes(data_dir) / 2**20, 1)
    result["process"] = worker.rusage
    result["expiry"] = _expire_all(ctx, name, prefix, data_dir, count)
    return result


def _rocksdb_worker(
    ctx: Context, name: str, prefix: str, data_dir: Path, env: dict[str, str] | None = None
) -> procs.LeadrouterProc:
    """The million-lead run's worker: one process, the RocksDB store in `data_dir`."""
    return procs.LeadrouterProc(
        name,
        ctx.bootstrap,
        ctx.config_dir,
        data_dir,
        prefix=prefix,
        group=f"{prefix}group",
        store="rocksdb",
        log=ctx.log(name),
        extra_env=env,
    )


def _expire_all(ctx: Context, name: str, prefix: str, data_dir: Path, count: int) -> dict[str, Any]:
    """The same worker and data directory with a period of seconds: every lead idle, so
    every one expires by its timer; the data directory before and after."""
    period = ctx.args.expiry_seconds
    before = measure.dir_bytes(data_dir)
    expire = {"LEADROUTER_EXPIRE_AFTER_DAYS": str(period / 86400)}
    worker = _rocksdb_worker(ctx, f"{name}-expiry", prefix, data_dir, expire)
    ctx.say(f"{name}: expiry after {period:.0f} s idle: restarting the worker")
    out: dict[str, Any] = {"period_s": period, "data_dir_mib_before": round(before / 2**20, 1)}
    try:
        worker.start()
        worker.wait_ready()
        started = time.time()
        deadline = time.monotonic() + max(600.0, count / 500)
        expired = 0.0
        while time.monotonic() < deadline:
            expired = worker.metrics().get('leadrouter_expired_total{kind="lead"}', 0.0)
            if expired >= count:
                break
            time.sleep(1.0)
        out.update(
            {
                "leads_expired": int(expired),
                "seconds": round(time.time() - started, 1),
                "data_dir_mib_after_expiry": round(measure.dir_bytes(data_dir) / 2**20, 1),
                "rss_mib": _mib(worker.memory().get("VmRSS")),
            }
        )
    finally:
        worker.stop(timeout=120)
    out["data_dir_mib_after_stop"] = round(measure.dir_bytes(data_dir) / 2**20, 1)
    return out


# ---------------------------------------------------------------------------- report
def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def _row_label(r: dict[str, Any]) -> str:
    return f"{r['label']:<32}"


def table(results: dict[str, Any]) -> str:
    w = results["workload"]
    m = results["machine"]
    b = results["broker"]
    code = results["code"]
    lines = [
        f"leadrouter benchmark {results['started_at']}  ({m['nproc']} CPUs, {m['cpu_model']}, "
        f"{m['mem_gib']:.0f} GiB)",
        f"broker: {b['name']} {b['version']} on 127.0.0.1 (heap {b.get('heap') or '-'})",
        f"workload: {w['events']:,} simulator events pre-loaded per contender, avg "
        f"{w['avg_event_bytes']:.0f} B ({w['min_event_bytes']}-{w['max_event_bytes']}), "
        f"{w['distinct_keys']:,} distinct keys, 3 topics x 6 partitions; latency: "
        f"{results['args']['rate']:.0f}/s for {results['args']['latency_seconds']:.0f} s "
        f"after {results['args']['warmup']:.0f} s warm-up",
        f"load average: before {results['loadavg_before']}, after {results['loadavg_after']}"
        + (
            f"; best of {results['args']['repeat']} interleaved rounds per contender"
            if results["args"].get("repeat", 1) > 1
            else ""
        ),
        f"code: {code['commit'][:12]}"
        + (
            f" + uncommitted changes in {len(code['uncommitted_changes'])} files"
            if code["uncommitted_changes"]
            else ""
        ),
        "",
    ]
    named = [(n, results["contenders"].get(n)) for n in ALL_CONTENDERS]
    named += [(f"scale{n}", r) for n, r in (results.get("scale") or {}).items()]
    rows = [r for _, r in named if r]
    lr = ((results["contenders"].get("leadrouter") or {}).get("throughput") or {}).get(
        "events_per_s"
    )

    head = (
        f"{'contender':<32}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'CPU s':>8}{'peak RSS MiB':>14}{'leadrouter/this':>17}"
    )
    lines += [head, "-" * len(head)]
    for name, r in named:
        if not r:
            continue
        if r.get("error"):
            lines.append(f"{_row_label(r)}  FAILED: {r['error'][:120]}")
            continue
        t = r.get("throughput") or {}
        lat = r.get("latency") or {}
        eps = t.get("events_per_s")
        ratio = round(lr / eps, 2) if name in BASELINES and lr and eps else None
        lines.append(
            f"{_row_label(r)}{_fmt(eps):>10}{_fmt(lat.get('p50_ms'), '.1f'):>9}"
            f"{_fmt(lat.get('p99_ms'), '.1f'):>9}{_fmt(lat.get('max_ms'), '.1f'):>9}"
            f"{_fmt(t.get('cpu_seconds'), '.1f'):>8}{_fmt(t.get('peak_rss_mib'), '.0f'):>14}"
            f"{_fmt(ratio, '.2f'):>17}"
        )
    lines += scaling_table(results)
    lines += [
        "",
        "conditions: throughput run | latency run",
    ]
    head = (
        f"{'contender':<32}{'elapsed s':>10}{'cores':>7}{'outputs':>10}{'broker CPU':>11}"
        f"{'others':>8}{'psi%':>6} |{'offered/s':>10}{'samples':>9}{'floor p50/p99':>15}"
        f"{'others':>8}{'psi%':>6}"
    )
    lines += [head, "-" * len(head)]
    for r in rows:
        if r.get("error"):
            continue
        t = r.get("throughput") or {}
        lat = r.get("latency") or {}
        fl = lat.get("floor") or {}
        floor = f"{_fmt(fl.get('p50_ms'), '.1f')}/{_fmt(fl.get('p99_ms'), '.1f')}" if fl else "-"
        lines.append(
            f"{_row_label(r)}{_fmt(t.get('elapsed_s'), '.1f'):>10}"
            f"{_fmt(t.get('cores_used'), '.2f'):>7}{_fmt(t.get('outputs')):>10}"
            f"{_fmt(t.get('broker_cpu_seconds'), '.1f'):>11}"
            f"{_fmt(t.get('other_cores'), '.2f'):>8}"
            f"{_fmt(t.get('cpu_pressure_pct'), '.0f'):>6} |"
            f"{_fmt(lat.get('offered_rate')):>10}{_fmt(lat.get('samples')):>9}{floor:>15}"
            f"{_fmt(lat.get('other_cores'), '.2f'):>8}"
            f"{_fmt(lat.get('cpu_pressure_pct'), '.0f'):>6}"
        )
    lines += [
        "",
        "events/s: inputs / (first input consumed .. last output consumed); CPU s, cores: the",
        "contender's own CPU in that window; latency: send (occurred_at) to output consumed;",
        "floor: the same sends read back from the input topics (producer linger + broker +",
        "harness); broker CPU: s in the throughput window; others: cores used meanwhile by",
        "everything outside this benchmark; psi%: share of the window in which some task",
        "waited for a CPU (Linux PSI; the benchmark's own broker and harness cause some).",
    ]
    for r in rows:  # where a leadrouter latency run's time went: its batch cycle
        lat = r.get("latency") or {}
        if lat.get("batches"):
            lines.append(
                f"{r['label']}, latency run: {lat['batches']:,} batches of "
                f"{_fmt(lat.get('avg_batch_records'), '.0f')} records, on average "
                f"{_fmt(lat.get('avg_batch_process_ms'), '.1f')} ms processing and "
                f"{_fmt(lat.get('avg_batch_commit_ms'), '.1f')} ms committing"
            )
    saturated = [
        r["label"]
        for r in rows
        if (r.get("throughput") or {}).get("events_per_s", 1e9) < results["args"]["rate"]
        and r.get("latency")
    ]
    busy = [
        f"{r['label'].split(') ', 1)[-1]} {phase} {other:.2f}"
        for r in rows
        for phase in ("throughput", "latency")
        if (other := (r.get(phase) or {}).get("other_cores") or 0) > BUSY_CORES
    ]
    if busy:
        lines.append(
            f"WARNING: other work used more than {BUSY_CORES} core of this machine during: "
            + ", ".join(busy)
            + " (cores). Figures taken under different interference are not comparable;"
            " ratios and target marks may be wrong either way. Re-run when quiet, or with"
            " --repeat N (best of N interleaved rounds)."
        )
    if saturated:
        lines.append(
            f"saturated at the offered rate (its latency is queueing): {', '.join(saturated)}"
        )
    for r in rows:
        for phase in ("throughput", "latency"):
            gcs = (r.get(phase) or {}).get("gc")
            if gcs:
                lines.append(
                    f"{r['label']}, {phase} run: full GC (gen 2) "
                    + "; ".join(
                        f"{g['gen2_collections']} pauses, {g['gen2_pause_ms_total']:.0f} ms "
                        f"total, longest {g['gen2_pause_ms_max']:.0f} ms"
                        for g in gcs
                    )
                )
    lines.append("")
    for key, value in results["ratios"].items():
        lines.append(f"{key:<44}{_fmt(value, '.2f')}")
    mil = results.get("million")
    if mil:
        if mil.get("error"):
            lines += ["", f"million-lead run FAILED: {mil['error'][:200]}"]
        else:
            lines += [
                "",
                f"memory after {mil['leads']:,} distinct leads (one worker, rocksdb store): "
                f"RSS {_fmt(mil.get('rss_mib'), '.0f')} MiB "
                f"(peak {_fmt(mil.get('peak_rss_mib'), '.0f')}), "
                f"data dir {_fmt(mil.get('data_dir_mib_running'), '.0f')} MiB running / "
                f"{_fmt(mil.get('data_dir_mib_after_stop'), '.0f')} MiB after stop; "
                f"processed in {_fmt(mil.get('seconds_to_process'), '.0f')} s "
                f"({_fmt(mil.get('events_per_s_incl_start'))} events/s incl. start)",
                "RSS as the leads grow: "
                + ", ".join(
                    f"{leads:,} leads {_fmt(rss, '.0f')} MiB"
                    for leads, rss in mil.get("rss_mib_by_leads") or []
                ),
            ]
            exp = mil.get("expiry") or {}
            lines.append(
                f"expiry (idle > {_fmt(exp.get('period_s'), '.0f')} s): "
                f"{_fmt(exp.get('leads_expired'))} of {mil['leads']:,} leads removed by their "
                f"timers in {_fmt(exp.get('seconds'), '.0f')} s; data dir "
                f"{_fmt(exp.get('data_dir_mib_before'), '.0f')} MiB before -> "
                f"{_fmt(exp.get('data_dir_mib_after_expiry'), '.0f')} MiB after expiry / "
                f"{_fmt(exp.get('data_dir_mib_after_stop'), '.0f')} MiB after stop"
            )
    rep = results.get("replay")
    if rep:
        if rep.get("error"):
            lines += ["", f"replay benchmark FAILED: {rep['error'][:200]}"]
        else:
            lines += ["", replay_bench.table(rep)]
    lines += ["", "targets (leadrouter worker, one process; replay):"]
    for key, t in results["targets"].items():
        mark = "PASS" if t["pass"] else ("FAIL" if t["pass"] is False else "n/a")
        value = _fmt(t["value"], ",.0f" if key.startswith("events/s") else ",.2f")
        lines.append(f"  {mark:<5}{key:<44}{value:>12}  (target {t['target']})")
    return "\n".join(lines)


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """With --repeat: the round with the highest throughput, and the latency of the round with
    the lowest p99 (interference from other work only ever slows a run down). Every round
    stays in results["rounds"]."""
    ok = [r for r in runs if not r.get("error")]
    if len(runs) == 1 or not ok:
        return runs[0]

    def eps(r: dict[str, Any]) -> float:
        return (r.get("throughput") or {}).get("events_per_s", 0.0)

    best = dict(max(ok, key=eps))
    best["round"] = runs.index(max(ok, key=eps)) + 1
    timed = [r for r in ok if (r.get("latency") or {}).get("p99_ms") is not None]
    if timed:
        fastest = min(timed, key=lambda r: r["latency"]["p99_ms"])
        best["latency"] = fastest["latency"]
        best["latency_round"] = runs.index(fastest) + 1
    best["rounds"] = len(runs)
    return best


def scaling_table(results: dict[str, Any]) -> list[str]:
    """One worker and each scaling run side by side, per CPU-second of the workers: on a
    machine with fewer cores than workers that is the figure that says what a core buys."""
    one = results["contenders"].get("leadrouter")
    runs = [(1, one), *((int(n), r) for n, r in (results.get("scale") or {}).items())]
    runs = [(n, r) for n, r in runs if r and not r.get("error") and r.get("throughput")]
    if len(runs) < 2:
        return []
    efficiency = results.get("scaling_efficiency") or {}
    head = (
        f"{'workers':>8}{'events/s':>10}{'worker CPU s':>14}{'events/CPU-s':>14}"
        f"{'/ 1 worker':>12}{'crossed/event':>15}{'broker CPU s':>14}{'batches':>9}"
    )
    rounds = results["args"].get("repeat", 1)
    within = f"; / 1 worker: median over {rounds} rounds of the ratio within each" * (rounds > 1)
    lines = ["", f"scaling: one group, same workload (throughput run){within}"]
    lines += [head, "-" * len(head)]
    for n, r in runs:
        t = r["throughput"]
        ratio = 1.0 if n == 1 else efficiency.get(str(n))
        lines.append(
            f"{n:>8}{_fmt(t.get('events_per_s')):>10}{_fmt(t.get('cpu_seconds'), '.1f'):>14}"
            f"{_fmt(t.get('events_per_cpu_s')):>14}{_fmt(ratio, '.2f'):>12}"
            f"{_fmt(t.get('internal_records_per_event'), '.2f'):>15}"
            f"{_fmt(t.get('broker_cpu_seconds'), '.1f'):>14}{_fmt(t.get('batches')):>9}"
        )
    return lines


def scaling_efficiency(results: dict[str, Any]) -> dict[str, float]:
    """Events per worker CPU-second of each scaling run against one worker's, taken within
    each round and the median over the rounds: the best of each contender's rounds would pair
    runs from different moments of a noisy machine."""
    rounds = results.get("rounds") or [
        {
            "leadrouter": results["contenders"].get("leadrouter"),
            **{f"scale{n}": r for n, r in (results.get("scale") or {}).items()},
        }
    ]

    def per_cpu(run: dict[str, Any] | None) -> float | None:
        return ((run or {}).get("throughput") or {}).get("events_per_cpu_s")

    out: dict[str, float] = {}
    for n in results.get("scale") or {}:
        ratios = [
            b / a
            for rnd in rounds
            if (a := per_cpu(rnd.get("leadrouter"))) and (b := per_cpu(rnd.get(f"scale{n}")))
        ]
        if ratios:
            out[n] = round(statistics.median(ratios), 3)
    return out


def ratios_and_targets(results: dict[str, Any]) -> None:
    c = results["contenders"]

    def eps(r: dict[str, Any] | None) -> float | None:
        return ((r or {}).get("throughput") or {}).get("events_per_s")

    lr = eps(c.get("leadrouter"))
    ratios: dict[str, float | None] = {}
    for name in BASELINES:
        base = eps(c.get(name))
        if lr and base:
            ratios[f"leadrouter / {name} (events/s)"] = round(lr / base, 3)
    efficiency = scaling_efficiency(results)
    for n, run in (results.get("scale") or {}).items():
        t = run.get("throughput") or {}
        if lr and t.get("events_per_s"):
            ratios[f"leadrouter {n} procs / 1 proc (events/s)"] = round(t["events_per_s"] / lr, 3)
        if n in efficiency:
            ratios[f"leadrouter {n} procs / 1 proc (events/CPU-s)"] = efficiency[n]
    results["ratios"] = ratios
    results["scaling_efficiency"] = efficiency
    p99 = ((c.get("leadrouter") or {}).get("latency") or {}).get("p99_ms")
    ratio_raw = ratios.get("leadrouter / raw_aiokafka (events/s)")
    results["targets"] = {
        "events/s end to end": {
            "value": lr,
            "target": ">= 20000",
            "pass": None if lr is None else lr >= TARGETS["events_per_s"],
        },
        "ratio to raw aiokafka pass-through": {
            "value": ratio_raw,
            "target": ">= 0.5",
            "pass": None if ratio_raw is None else ratio_raw >= TARGETS["ratio_to_raw"],
        },
        f"p99 ms at {results['args']['rate']} events/s": {
            "value": p99,
            "target": "< 100",
            "pass": None if p99 is None else p99 < TARGETS["p99_ms"],
        },
    }
    for n, value in efficiency.items():
        results["targets"][f"events per worker CPU-s, {n} workers / 1"] = {
            "value": value,
            "target": f">= {TARGETS['scaling_efficiency']}",
            "pass": value >= TARGETS["scaling_efficiency"],
        }
    replayed = [
        r["per_configuration"][side]["events_per_s"]
        for r in (results.get("replay") or {}).get("runs") or []
        if not r.get("error") and r["source"] == "sim" and r["store"] == "memory"
        for side in ("baseline", "candidate")
    ]
    if replayed:
        slowest = min(replayed)
        results["targets"]["events/s of replay per configuration (slower one)"] = {
            "value": slowest,
            "target": f">= {replay_bench.TARGET}",
            "pass": slowest >= replay_bench.TARGET,
        }


def code_version() -> dict[str, Any]:
    """The commit measured, and whether the worker's code differed from it (others edit
    workers/ and topics/ while benchmarks run)."""
    import subprocess as sp

    def git(*argv: str) -> str:
        done = sp.run(["git", *argv], cwd=procs.REPO_ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "workers", "topics", "config")
    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": changed.splitlines() if changed else [],
    }


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError):
        mem = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=300_000, help="throughput workload size")
    p.add_argument("--rate", type=float, default=2000, help="latency run: events/s offered")
    p.add_argument("--latency-seconds", type=float, default=20, help="latency run length")
    p.add_argument("--warmup", type=float, default=2, help="latency run: unsampled warm-up s")
    p.add_argument("--contenders", default=",".join(ALL_CONTENDERS), help="comma-separated")
    p.add_argument(
        "--scale",
        type=scale_counts,
        default=[2, 4],
        help="worker counts of the scaling runs beside the one-worker run (comma-separated)",
    )
    p.add_argument("--no-scale", action="store_true", help="skip the scaling runs")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of every contender, interleaved; report the best (see README)",
    )
    p.add_argument(
        "--settle", type=float, default=2.0, help="s more once a 2-member group is stable"
    )
    p.add_argument("--million", action="store_true", help="also the million-lead memory run")
    p.add_argument("--million-leads", type=int, default=1_000_000)
    p.add_argument(
        "--expiry-seconds",
        type=float,
        default=30,
        help="million-lead run: the idle period after which every lead expires",
    )
    p.add_argument(
        "--replay-events",
        type=int,
        default=None,
        help="replay benchmark stretch (default: --events; 0 skips it)",
    )
    p.add_argument(
        "--quix-commit-interval",
        type=float,
        default=5.0,
        help="(d) quix_streams: its commit_interval, s (Quix's default 5; exactly-once outputs"
        " are visible at each commit)",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--malformed-share", type=float, default=0.01)
    p.add_argument("--bootstrap", help="use this broker instead of starting the reference one")
    p.add_argument("--heap", default="1g", help="reference broker JVM heap")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--keep", action="store_true", help="keep logs and data dirs")
    p.add_argument(
        "--gc-log",
        action="store_true",
        help="run leadrouter through bench/gcwatch.py and report its full-GC pauses",
    )
    p.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile the one-process leadrouter runs with py-spy (collapsed stacks, wall clock)",
    )
    args = p.parse_args(argv)
    if args.py_spy and not (Path(sys.executable).parent / "py-spy").exists():
        p.error("--py-spy needs py-spy in the venv: .venv/bin/pip install py-spy")
    unknown = set(args.contenders.split(",")) - set(ALL_CONTENDERS)
    if unknown:
        p.error(f"unknown contenders {sorted(unknown)}; choose from {ALL_CONTENDERS}")
    return args


def run(args: argparse.Namespace, bootstrap: str, broker: dict[str, Any]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="leadrouter-bench-"))
    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "command": [sys.executable, "-m", "bench.run", *sys.argv[1:]],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "broker": broker,
        "loadavg_before": measure.loadavg(),
        "contenders": {},
        "scale": None,
        "million": None,
        "replay": None,
        "code": code_version(),
        "work_dir": str(work),
    }
    try:
        config_dir = workload.always_open_config(work / "config")
        base_config = workload.config_for(config_dir, bootstrap, "")
        run_id = new_run_id(started)
        stamp = time.time()
        t = time.monotonic()
        through = workload.generate(
            base_config, args.events, args.seed, stamp, args.malformed_share
        )
        latency_count = int(args.rate * (args.warmup + args.latency_seconds))
        lat = workload.generate(
            base_config, latency_count, args.seed + 1, 0.0, args.malformed_share
        )
        ctx = Context(args, bootstrap, broker.get("pid"), work, config_dir, run_id, through, lat)
        ctx.say(f"generated {through.count + lat.count:,} events in {time.monotonic() - t:.1f}s")
        results["workload"] = through.describe()
        results["latency_workload"] = {
            "events": lat.count,
            "avg_event_bytes": lat.describe()["avg_event_bytes"],
        }
        ctx.say("warming the broker up")
        results["broker_warmup"] = warm_broker(ctx)
        chosen = [n for n in ALL_CONTENDERS if n in args.contenders.split(",")]
        scale = [] if "leadrouter" not in chosen or args.no_scale else args.scale
        rounds: list[dict[str, Any]] = []
        for rnd in range(args.repeat):
            ran: dict[str, Any] = {}
            for name in chosen:
                tag = name if args.repeat == 1 else f"{name}-r{rnd + 1}"
                try:
                    if name == "leadrouter":
                        res = run_leadrouter(ctx, tag, 1, latency=True)
                    elif name == "leadrouter_alo":
                        res = run_leadrouter_alo(ctx, tag)
                    else:
                        res = run_baseline(ctx, name, tag)
                except Exception as exc:  # one contender failing still reports the others
                    ctx.say(f"{tag} FAILED: {exc}")
                    label = {"leadrouter": LEADROUTER_LABEL, "leadrouter_alo": ALO_LABEL}.get(
                        name, BASELINES.get(name, ("", ""))[1]
                    )
                    res = {"label": label, "error": f"{type(exc).__name__}: {exc}"}
                ran[name] = res
            for n in scale:
                tag = f"leadrouter{n}" if args.repeat == 1 else f"leadrouter{n}-r{rnd + 1}"
                try:
                    ran[f"scale{n}"] = run_leadrouter(ctx, tag, n, latency=False)
                except Exception as exc:
                    ctx.say(f"{n}-process run FAILED: {exc}")
                    ran[f"scale{n}"] = {"label": scale_label(n), "error": str(exc)}
            rounds.append(ran)
        for name in chosen:
            results["contenders"][name] = best_of([r[name] for r in rounds])
        if scale:
            results["scale"] = {str(n): best_of([r[f"scale{n}"] for r in rounds]) for n in scale}
        if args.repeat > 1:
            results["rounds"] = rounds
        if args.million:
            try:
                results["million"] = run_million(ctx)
            except Exception as exc:
                ctx.say(f"million-lead run FAILED: {exc}")
                results["million"] = {"error": f"{type(exc).__name__}: {exc}"}
        replay_events = args.events if args.replay_events is None else args.replay_events
        if replay_events:
            try:
                results["replay"] = replay_bench.run_all(
                    replay_events,
                    ("memory", "disk"),
                    seed=args.seed,
                    bootstrap=bootstrap,
                    say=ctx.say,
                )
                if args.million:
                    ctx.say(f"replay: {args.million_leads:,} events, state on disk")
                    results["replay"]["runs"].append(
                        replay_bench.run_child("sim", "disk", args.million_leads, seed=args.seed)
                    )
            except Exception as exc:
                ctx.say(f"replay benchmark FAILED: {exc}")
                results["replay"] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        procs.stop_all()
        results["loadavg_after"] = measure.loadavg()
        results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ratios_and_targets(results)
    return results


def write_json(results: dict[str, Any], directory: Path) -> Path:
    import orjson

    directory.mkdir(parents=True, exist_ok=True)
    stamp = results["started_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    path = directory / f"{stamp}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return path


def _broker_info(broker: Any, heap: str | None) -> dict[str, Any]:
    return {
        "name": "Apache Kafka (reference, KRaft, single node)",
        "version": broker.version,
        "heap": heap,
        "pid": broker.pid,
    }


def main(argv: Sequence[str] | None = None, broker: Any = None) -> dict[str, Any]:
    """Run, print the table, write the JSON. `broker`: an already running ReferenceBroker
    (the test suite's) instead of starting one."""
    args = parse_args(argv)
    if broker is not None:
        results = run(
            args, broker.bootstrap_servers, _broker_info(broker, getattr(broker, "heap", None))
        )
    elif args.bootstrap:
        results = run(args, args.bootstrap, {"name": "external broker", "version": "?"})
    else:
        from tests.support.kafka_reference import ReferenceBroker

        with ReferenceBroker(heap=args.heap) as started:
            results = run(args, started.bootstrap_servers, _broker_info(started, args.heap))
    print(table(results), flush=True)
    results["json_path"] = str(write_json(results, args.results_dir))
    print(f"\nJSON: {results['json_path']}", flush=True)
    return results


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # run every finally: contenders and the broker stop


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    finally:
        procs.stop_all()
