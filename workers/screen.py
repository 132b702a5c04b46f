"""The demo's live screen on a terminal, redrawn in place with rich.

The two curves the product exists for, leads generated and leads contacted (first sales
touch) per minute, side by side, and the figures per queue beneath. Everything shown
comes from the `summary()` the demo reads off the worker's own Prometheus registry, so
the screen and `/metrics` never disagree. Plain lines stay the output when stdout is not
a terminal (workers/demo.py decides).
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

GENERATED_TITLE = "leads generated / min"
CONTACTED_TITLE = "leads contacted / min"
# A rate is measured over this many seconds: short enough to follow the traffic, long
# enough that one tick's batch boundary does not make the curve jump.
RATE_WINDOW = 10.0
CHART_HEIGHT = 6
_EIGHTHS = " ▁▂▃▄▅▆▇█"


class Curves:
    """Cumulative counts sampled once a tick, turned into per-minute rates per tick.

    Counters only grow, so a rate is the rise over the last RATE_WINDOW seconds; the first
    sample is the demo's start (zero leads), so the curves begin at the first tick.
    """

    def __init__(self, capacity: int = 300, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=capacity + 1)
        self.generated: deque[float] = deque(maxlen=capacity)
        self.contacted: deque[float] = deque(maxlen=capacity)

    def add(self, t: float, generated: float, contacted: float) -> None:
        if self._samples and t <= self._samples[-1][0]:
            return  # a repeated tick (the final frame) would divide by zero
        self._samples.append((t, generated, contacted))
        if len(self._samples) == 1:
            return
        base = self._samples[0]
        for sample in reversed(list(self._samples)[:-1]):
            base = sample
            if t - sample[0] >= self.window:
                break
        span = t - base[0]
        self.generated.append(max(0.0, generated - base[1]) * 60 / span)
        self.contacted.append(max(0.0, contacted - base[2]) * 60 / span)


def compact(value: float) -> str:
    """A count or rate in at most five characters: 950, 2.7k, 13k, 1.2M."""
    if value < 1000:
        return f"{value:.0f}"
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if value >= div:
            scaled = value / div
            return f"{scaled:.1f}{unit}" if scaled < 10 else f"{scaled:.0f}{unit}"
    return f"{value:.0f}"


class Chart:
    """A bar chart of the most recent values, as many columns as the width allows.

    Each column is one tick, the newest at the right; eighth blocks give CHART_HEIGHT * 8
    levels, and any value above zero shows at least one eighth so a trickle is not drawn as
    nothing. Each chart has its own scale (its top is labelled): contacts are a fraction of
    leads, and on a shared scale their curve would be a flat line.
    """

    def __init__(
        self, values: Iterable[float], tick: float, style: str, height: int = CHART_HEIGHT
    ) -> None:
        self.values = list(values)
        self.tick = tick
        self.style = style
        self.height = height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        top = max(self.values, default=0.0)
        top_label = compact(top)
        axis = 5  # compact() is at most five wide: side by side, equal widths span equal time
        columns = max(1, options.max_width - axis - 1)
        values = self.values[-columns:]
        levels = [0] * (columns - len(values)) + [  # right-aligned: the newest is at "now"
            0 if v <= 0 or top <= 0 else max(1, round(v / top * self.height * 8)) for v in values
        ]
        for row in range(self.height - 1, -1, -1):
            label = top_label if row == self.height - 1 else ("0" if row == 0 else "")
            line = Text(label.rjust(axis) + "│", style="dim")
            cells = "".join(_EIGHTHS[min(8, max(0, level - row * 8))] for level in levels)
            line.append(cells, style=self.style)
            yield line
        left, right = f"{columns * self.tick:.0f}s ago", "now"
        gap = max(1, options.max_width - axis - 1 - len(left) - len(right))
        yield Text(" " * (axis + 1) + left + " " * gap + right, style="dim")


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def queue_table(s: dict[str, Any]) -> Table:
    """Routed, waiting for a rep now (with why), reassigned, speed to lead (p50 with its
    sample count, p90), SLA breaches."""
    table = Table(title="per queue", title_justify="left", show_edge=False)
    table.add_column("queue")
    for name in ("routed", "unassigned", "waiting", "reassigned"):
        table.add_column(name, justify="right")
    table.add_column("speed to lead p50", justify="right")
    table.add_column("(n)", justify="right")
    table.add_column("p90", justify="right")
    table.add_column("SLA breaches", justify="right")
    queues = sorted(set(s["routed"]) | set(s["breaches"]) | set(s["contacted_by_queue"]))
    waiting, reassigned = s.get("waiting", {}), s.get("reassigned", {})

    def row(
        name: str,
        routed: float,
        unassigned: float,
        wait: tuple[float, str],
        moved: float,
        speed: Any,
        n: float,
        sla: float,
    ) -> None:
        p50, p90 = speed
        count, why = wait
        table.add_row(
            name,
            f"{int(routed):,}",
            f"{int(unassigned):,}",
            Text(
                f"{int(count):,}" + (f" ({why})" if count and why else ""),
                style="bold yellow" if count else "",
            ),
            f"{int(moved):,}",
            _secs(p50),
            f"{int(n):,}",
            _secs(p90),
            Text(f"{int(sla):,}", style="bold red" if sla else ""),
        )

    for q in queues:
        row(
            q,
            s["routed"].get(q, 0),
            s["unassigned"].get(q, 0),
            (waiting.get(q, 0), s.get("waiting_why", {}).get(q, "")),
            reassigned.get(q, 0),
            s["speed_to_lead"].get(q, (None, None)),
            s["contacted_by_queue"].get(q, 0),
            s["breaches"].get(q, 0),
        )
    table.add_section()
    row(
        "all queues",
        sum(s["routed"].values()),
        sum(s["unassigned"].values()),
        (sum(waiting.values()), ""),
        sum(reassigned.values()),
        s["speed_to_lead_all"],
        s["contacted"],
        s["sla_breaches"],
    )
    return table


def frame(
    s: dict[str, Any], curves: Curves, elapsed: float, metrics_url: str, tick: float
) -> Group:
    """One whole screen: heading, the two curves side by side, the queue table, inputs."""
    heading = Text.assemble(
        ("leadrouter demo", "bold"),
        f"  {elapsed:.0f}s  ",
        (f"metrics {metrics_url}", "dim"),
        "  Ctrl-C stops",
    )
    now_g = curves.generated[-1] if curves.generated else 0.0
    now_c = curves.contacted[-1] if curves.contacted else 0.0
    charts = Table.grid(expand=True, padding=(0, 1))
    charts.add_column(ratio=1)
    charts.add_column(ratio=1)
    charts.add_row(
        Panel(
            Chart(curves.generated, tick, "cyan"),
            title=f"{GENERATED_TITLE} {now_g:,.0f}",
            title_align="left",
            subtitle=f"total {int(sum(s['generated'].values())):,}",
            subtitle_align="right",
        ),
        Panel(
            Chart(curves.contacted, tick, "green"),
            title=f"{CONTACTED_TITLE} {now_c:,.0f}",
            title_align="left",
            subtitle=f"total {int(s['contacted']):,}",
            subtitle_align="right",
        ),
    )
    ok = sum(v for k, v in s["events"].items() if k.endswith(" ok"))
    bad = sum(v for k, v in s["events"].items() if k.endswith(" invalid"))
    channels = "  ".join(f"{k}={int(v):,}" for k, v in sorted(s["generated"].items()) if v)
    inputs = Text(
        f"events in {int(ok):,} ok, {int(bad):,} invalid   "
        f"dead letters {int(sum(s['deadletters'].values())):,}   "
        f"generated by channel {channels or '-'}",
        style="dim",
    )
    return Group(heading, charts, queue_table(s), inputs)


class LiveScreen:
    """The demo's screen on a terminal: one frame, redrawn in place every tick.

    Log records that would go to the same terminal are routed through rich while the
    screen is up, so they print above it instead of tearing it.
    """

    def __init__(self, metrics_url: str, tick: float, console: Console | None = None) -> None:
        self.metrics_url = metrics_url
        self.tick = tick
        self.curves = Curves()
        self.console = console or Console()
        self._live: Live | None = None
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    def start(self, s: dict[str, Any], elapsed: float) -> LiveScreen:
        """The first frame; `s` and `elapsed` are the baseline the first rates rise from."""
        self.curves.add(elapsed, sum(s["generated"].values()), s["contacted"])
        redirect_stderr = sys.stderr.isatty()
        self._live = Live(
            frame(s, self.curves, elapsed, self.metrics_url, self.tick),
            console=self.console,
            auto_refresh=False,
            redirect_stderr=redirect_stderr,
            vertical_overflow="crop",
        )
        original = sys.stderr
        self._live.start(refresh=True)
        if redirect_stderr:
            for handler in _stderr_handlers(original):
                self._handlers.append((handler, handler.setStream(sys.stderr)))
        return self

    def show(self, s: dict[str, Any], elapsed: float) -> None:
        self.curves.add(elapsed, sum(s["generated"].values()), s["contacted"])
        if self._live is not None:
            self._live.update(frame(s, self.curves, elapsed, self.metrics_url, self.tick))
            self._live.refresh()

    def stop(self) -> None:
        """Leaves the last frame on the terminal; log handlers get their stream back."""
        for handler, stream in self._handlers:
            handler.setStream(stream)
        self._handlers.clear()
        if self._live is not None:
            self._live.stop()
            self._live = None


def _stderr_handlers(stream: Any) -> Iterator[logging.StreamHandler[Any]]:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is stream:
            yield handler
