"""Headless Chromium for the HTML pages' tests: open a page with no network, read what it
logged to its console, and judge a screenshot by its colours. Every run has a deadline (the
subprocess timeout); nothing sleeps."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.png import read_png

DEADLINE = 90  # seconds for one browser run


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is missing: run `bash scripts/chromium/install.sh` (or `make tools`)")
    return found


@dataclass
class Run:
    stdout: str
    console: list[str]  # what the page wrote to its console, errors included


def browse(page: Path, work: Path, *args: str) -> Run:
    """Open `page` in headless Chromium. A proxy that refuses every connection stands in for
    the network: a page that fetched anything would log the failure to its console."""
    command = [
        chromium(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={work / 'profile'}",
        "--proxy-server=http://127.0.0.1:9",
        "--enable-logging=stderr",
        "--v=0",
        *args,
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr[-3000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return Run(done.stdout, console)


def root_attributes(dom: str) -> dict[str, str]:
    tag = re.search(r"<html\b([^>]*)>", dom)
    assert tag, dom[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag.group(1)))


def screenshot(
    page: Path, work: Path, window: tuple[int, int], *, blank_above: float
) -> tuple[Counter[tuple[int, int, int]], int]:
    """A screenshot of `page` at `window` (kept in `work`, the test's folder, beside the
    page): its colours and pixel count, once the page logged nothing and no one colour
    covers more than `blank_above` of it (a blank page)."""
    shot = work / f"{page.stem}.png"
    run = browse(page, work, f"--screenshot={shot}", f"--window-size={window[0]},{window[1]}")
    assert run.console == []
    image = read_png(shot)
    assert (image.width, image.height) == window
    colours = image.colours()
    total = image.width * image.height
    background, share = colours.most_common(1)[0]
    assert share < blank_above * total, f"mostly one colour {background}: a blank page?"
    return colours, total


def assert_script_error_caught(page: Path, broken: str, work: Path) -> None:
    """`page` rewritten as `broken` (its script made to fail): the console scan and the
    page's own error mark both see it, so the checks of a working page can fail."""
    page.write_text(broken, encoding="utf-8")
    run = browse(page, work, "--dump-dom")
    assert any("Uncaught" in line for line in run.console), run.console
    attrs = root_attributes(run.stdout)
    assert "data-render-error" in attrs and "data-rendered" not in attrs
