"""`leadrouter demo` as a live screen: in a real terminal (tmux) one screen redrawn in place,
with leads generated and leads contacted per minute side by side and the figures per queue
beneath; through a pipe the plain lines of before. The screen is read as an operator sees it."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from tests.support.worker import LEADROUTER, always_open_config
from workers.demo import render, summary
from workers.metrics import Metrics
from workers.screen import CHART_HEIGHT, CONTACTED_TITLE, GENERATED_TITLE, Curves, frame
from workers.settings import load_config

pytestmark = pytest.mark.embedded

BLOCKS = set("▁▂▃▄▅▆▇█")
COLS, ROWS = 120, 40


def demo_env(tmp_path: Path) -> dict[str, str]:
    """The embedded broker (no KAFKA_BOOTSTRAP_SERVERS), a free metrics port, reps always
    in office; no COLUMNS/LINES, so the terminal's own size is what the screen fits."""
    drop = {"KAFKA_BOOTSTRAP_SERVERS", "COLUMNS", "LINES"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["LEADROUTER_METRICS_PORT"] = "0"
    env["LEADROUTER_CONFIG_DIR"] = str(always_open_config(tmp_path / "config"))
    return env


class Tmux:
    """One detached session on a private tmux server, so no user's tmux is touched."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"leadrouter-test-{uuid.uuid4().hex[:8]}"
        self.session = "demo"
        self.env = env

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
        )

    def start(self, command: str) -> None:
        self("new-session", "-d", "-s", self.session, "-x", str(COLS), "-y", str(ROWS), command)

    def alive(self) -> bool:
        return self("has-session", "-t", self.session, check=False).returncode == 0

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", self.session).stdout

    def everything(self) -> str:
        """The visible screen and all the history that scrolled off it."""
        return self("capture-pane", "-p", "-S", "-", "-E", "-", "-t", self.session).stdout

    def history_size(self) -> int:
        return int(self("display", "-p", "-t", self.session, "#{history_size}").stdout)

    def close(self) -> None:
        """Ctrl-C first, so the demo stops its broker; then the session and server go."""
        if self.alive():
            self("send-keys", "-t", self.session, "C-c", check=False)
            deadline = time.monotonic() + 60
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
        self("kill-session", "-t", self.session, check=False)
        self("kill-server", check=False)


def number(pattern: str, text: str) -> int | None:
    match = re.search(pattern, text)
    return None if match is None else int(match.group(1).replace(",", ""))


def curves_drawn(screen: str) -> tuple[bool, bool]:
    """Whether bars show in the left (generated) and right (contacted) chart panels."""
    lines = screen.splitlines()
    for i, line in enumerate(lines):
        if GENERATED_TITLE in line and CONTACTED_TITLE in line:
            split = line.index("╮") + 1
            rows = lines[i + 1 : i + 1 + CHART_HEIGHT]
            left = any(BLOCKS & set(row[:split]) for row in rows)
            right = any(BLOCKS & set(row[split:]) for row in rows)
            return left, right
    return False, False


def ready(screen: str) -> bool:
    """Routed leads, and both curves above zero and drawn."""
    routed = number(r"all queues\s*│\s*([\d,]+)", screen) or 0
    generated = number(rf"{re.escape(GENERATED_TITLE)} ([\d,]+)", screen) or 0
    contacted = number(rf"{re.escape(CONTACTED_TITLE)} ([\d,]+)", screen) or 0
    return routed > 0 and generated > 0 and contacted > 0 and all(curves_drawn(screen))


def test_demo_is_one_screen_redrawn_in_place_on_a_terminal(tmp_path: Path):
    assert shutil.which("tmux"), "tmux is part of this machine (env: machines/polyglot.md)"
    env = demo_env(tmp_path)
    queues = list(load_config(Path(env["LEADROUTER_CONFIG_DIR"])).routing.queues)
    status = tmp_path / "status"
    duration = 50
    command = (
        f"{shlex.quote(str(LEADROUTER))} demo --duration {duration} --rate 150 --seed 1; "
        f"echo $? > {shlex.quote(str(status))}"
    )
    tmux = Tmux(env)
    try:
        tmux.start(command)
        deadline = time.monotonic() + 150
        screen = ""
        while time.monotonic() < deadline:
            assert tmux.alive(), f"the demo ended before the screen was complete:\n{screen}"
            screen = tmux.screen()
            # ready, and several redraws in: the in-place check below needs many ticks
            if ready(screen) and (number(r"leadrouter demo\s+(\d+)s", screen) or 0) >= 10:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"no routed leads and both curves on the screen:\n{screen}")

        # the titles, and the table per queue: every configured queue, the columns asked for
        assert re.search(r"leadrouter demo\s+\d+s\s+metrics http://127\.0\.0\.1:[1-9]\d*/", screen)
        assert "per queue" in screen
        for column in (
            "queue",
            "routed",
            "unassigned",
            "waiting",
            "reassigned",
            "speed to lead p50",
            "(n)",
            "SLA",
        ):
            assert column in screen, column
        for queue in queues:
            assert re.search(rf"^\s*{re.escape(queue)}\s*│\s*[\d,]+\s*│", screen, re.M), queue
        # all queues: p50 in seconds, and the first touches it is measured on
        # (after routed, unassigned, waiting and reassigned)
        total = re.search(
            r"all queues\s*│[^│]*│[^│]*│[^│]*│[^│]*│\s*(\d+)s\s*│\s*([\d,]+)\s*│", screen
        )
        assert total and int(total.group(2).replace(",", "")) > 0, screen

        # redrawn in place: many ticks later, one screen in all the terminal ever showed
        elapsed = number(r"leadrouter demo\s+(\d+)s", screen) or 0
        assert elapsed >= 10, "the curves should need several redraws"
        everything = tmux.everything()
        assert everything.count(GENERATED_TITLE) == 1, everything
        assert everything.count("per queue") == 1, everything
        # the start-up lines and a few log lines scroll; a frame per tick would be 100s
        assert tmux.history_size() < ROWS, everything

        # the session ends by itself once the duration has passed, and the demo exits 0
        end = time.monotonic() + duration + 90
        while tmux.alive() and time.monotonic() < end:
            time.sleep(0.5)
        assert not tmux.alive(), f"still running after --duration:\n{tmux.screen()}"
        assert status.read_text().strip() == "0"
    finally:
        tmux.close()


def test_demo_prints_plain_lines_through_a_pipe(tmp_path: Path):
    result = subprocess.run(
        [str(LEADROUTER), "demo", "--duration", "15", "--rate", "150", "--seed", "2"],
        env=demo_env(tmp_path),
        capture_output=True,  # stdout is a pipe, not a terminal
        timeout=180,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert "\x1b" not in out, "no terminal control codes in a pipe"
    assert GENERATED_TITLE not in out and "╭" not in out
    # a block of plain lines per tick, as before the screen
    assert out.count("routed per queue ") >= 4, out
    assert out.count("speed to lead ") >= 4 and "fast-lane=" in out
    assert int(out.strip().splitlines()[-1].removeprefix("routed leads: ")) > 0


def test_curves_are_per_minute_rates_of_the_counters():
    """Counters sampled every two seconds: rates over the window, in leads per minute."""
    curves = Curves(window=4)
    curves.add(0, 0, 0)
    curves.add(2, 10, 0)  # 10 in 2 s
    curves.add(4, 30, 2)  # 30 in 4 s
    curves.add(6, 40, 2)  # 30 in 4 s (the window), not 10 in 2
    assert list(curves.generated) == [300, 450, 450]
    assert list(curves.contacted) == [0, 30, 30]
    curves.add(6, 99, 99)  # the same tick again (the final frame) changes nothing
    assert len(curves.generated) == 3


def test_a_frame_from_the_workers_registry():
    """The screen reads the same registry as /metrics: the figures land in their places."""
    metrics = Metrics()
    metrics.declare(["fast-lane", "smb"], ["r"])
    for _ in range(3):
        metrics.generated("form", "direct")
        metrics.routed("fast-lane", "r", "A", 0.01)
    metrics.unassigned("smb", "no_rep_available")
    metrics.routed("smb", "r", "C", 0.01)
    metrics.speed_to_lead("fast-lane", 40)
    metrics.speed_to_lead("fast-lane", 50)
    metrics.sla_breach("smb")
    metrics.reassigned("fast-lane", "reassign", "reassigned")
    metrics.reassigned("fast-lane", "reassign", "nobody_available")  # not a reassignment
    metrics.lines.lines = {"smb": (4, time.time() - 3 * 3600), "fast-lane": (0, None)}
    metrics.flush()
    config = load_config(env={})
    s = summary(metrics, config)
    assert s["contacted"] == 2 and s["contacted_by_queue"] == {"fast-lane": 2, "smb": 0}
    assert s["waiting"] == {"smb": 4, "fast-lane": 0} and s["reassigned"] == {"fast-lane": 1}
    assert s["oldest_wait"]["smb"] == pytest.approx(3 * 3600, abs=60)
    # smb's reps have no working hours: in office, so the desk's limits keep them waiting
    assert s["waiting_why"] == {"smb": "reps in office are at capacity or have their share for now"}
    printed = render(s, 2, "http://127.0.0.1:9464/metrics")
    assert "waiting          smb=4 (oldest 3 h; reps in office" in printed
    assert "reassigned       fast-lane=1" in printed
    assert "fast-lane p50=" in printed and "(n=2)" in printed
    curves = Curves()
    curves.add(0, 0, 0)
    curves.add(2, 3, 2)
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(frame(s, curves, 2, "http://127.0.0.1:9464/metrics", 2))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert f"{GENERATED_TITLE} 90" in text and f"{CONTACTED_TITLE} 60" in text
    # queue, routed, unassigned, waiting (why), reassigned, speed p50, (n), p90, breaches
    assert re.search(r"fast-lane\s*│\s*3\s*│\s*0\s*│\s*0\s*│\s*1\s*│\s*\d+s\s*│\s*2\s*│", text)
    assert re.search(r"smb\s*│\s*1\s*│\s*1\s*│\s*4 \(reps in", text), text
    assert re.search(r"│\s*0\s*│\s*-\s*│\s*0\s*│\s*-\s*│\s*1\s*$", text, re.M), text
    assert all(curves_drawn(text))
