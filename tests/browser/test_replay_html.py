"""`leadrouter replay --html` in a real headless Chromium: the page renders its three charts
(load per rep, leads per queue, what was held back) as inline SVG with no console errors,
fetches nothing, keeps what comes from history as text, and the screenshot (kept in the
test's output folder) shows both configurations' bars in their colours.

The report comes from the replay engine over simulator traffic (no broker needed): the same
`Replay.report` the command writes. Chromium comes from Debian's packages through
scripts/chromium/install.sh (`make tools`); every browser run has a deadline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.browser.chromium import browse, root_attributes, screenshot
from tests.support.worker import always_open_config
from topics import catalogue as cat
from workers.core.enrich import AccountBook
from workers.core.topology import InputRecord
from workers.demo import demo_accounts
from workers.replay import Replay
from workers.replay_html import BASELINE_FILL, CANDIDATE_FILL, render_html
from workers.settings import load_config
from workers.simulate import Traffic

START = 1_795_000_000.0
WINDOW = (1300, 1500)
MARKUP = '</li><b id="injected">x</b>&amp; __CHARTS__'


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def edit(directory: Path, name: str, change: Any) -> None:
    path = directory / name
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


@pytest.fixture(scope="module")
def page(tmp_path_factory: Any) -> Path:
    """A replay of 3,000 simulator events with a higher MQL threshold and no fast lane for
    demo requests, plus one lead whose event id is markup, written as the page."""
    tmp = tmp_path_factory.mktemp("replay-html")
    base_dir = always_open_config(tmp / "base")
    cand_dir = always_open_config(tmp / "cand")
    edit(cand_dir, "scoring.yaml", lambda s: s.__setitem__("mql_threshold", 75))
    edit(cand_dir, "settings.yaml", lambda s: s.__setitem__("fast_lane_forms", ["contact-sales"]))
    base, cand = load_config(base_dir, env={}), load_config(cand_dir, env={})
    traffic = Traffic(base, 5, 0.01)
    hostile = {
        "event_id": MARKUP,
        "occurred_at": "2026-11-18T08:13:20Z",
        "email": "ada.markup@initech-example.com",
        "form_id": "demo-request",
        "country": "US",
        "consent": {"marketing": True},
    }
    records = [InputRecord(cat.FORM_FILLS, None, orjson.dumps(hostile), int(START * 1000))]
    for i in range(1, 3000):
        at = START + i / 200
        topic, key, value = traffic.next(at)
        records.append(InputRecord(topic, key, value, int(at * 1000), offset=i))
    accounts = AccountBook()
    for account in demo_accounts(base):
        accounts.put(account["domain"], account)
    with Replay(base, cand, accounts) as run:
        run.feed(records)
        run.finish(START + 30)
        report = run.report(200)
    assert any(e["email"] == "ada.markup@initech-example.com" for e in report["changed"])
    out = tmp / "replay.html"
    out.write_text(render_html(report, START, START + 30), encoding="utf-8")
    return out


def test_charts_render_without_console_errors(page: Path, tmp_path: Path) -> None:
    run = browse(page, tmp_path, "--dump-dom")
    assert run.console == []
    assert root_attributes(run.stdout).get("data-charts") == "3"
    charts = re.findall(r'<section class="chart" id="([\w-]+)">', run.stdout)
    assert charts == ["rep-load", "queue-load", "outcomes"]
    svgs = re.findall(r"<svg\b[^>]*data-rows=\"(\d+)\"[^>]*>(.*?)</svg>", run.stdout, re.S)
    assert len(svgs) == 3
    for rows, body in svgs:
        assert int(rows) > 3
        assert (
            body.count('class="bar baseline"') == body.count('class="bar candidate"') == int(rows)
        )
    rep_chart = svgs[0][1]
    assert 'data-label="ana.silva"' in rep_chart and ">fast-lane</text>" in rep_chart
    assert "Changed leads, with both decision traces" in run.stdout


def test_page_is_self_contained(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text  # drawn here, not by a script
    assert not re.search(r"<(link|img|iframe|object|embed)\b", text, re.I)
    assert "@import" not in text and "url(" not in text
    addresses = set(re.findall(r"https?://[^\s\"'<>]+", text))
    assert addresses <= {"http://www.w3.org/2000/svg"}, addresses


def test_markup_from_history_stays_text(page: Path, tmp_path: Path) -> None:
    """An event id is whatever a producer sent: written into a trace it must stay text."""
    run = browse(page, tmp_path, "--dump-dom")
    assert run.console == []
    assert not re.search(r"<b\b[^>]*injected", run.stdout)
    assert '&lt;/li&gt;&lt;b id="injected"&gt;x&lt;/b&gt;&amp;amp; __CHARTS__' in run.stdout


def test_screenshot_shows_both_configurations(page: Path, tmp_path: Path) -> None:
    colours, total = screenshot(page, tmp_path, WINDOW, blank_above=0.97)
    assert len(colours) > 200  # text, anti-aliased edges and fills, not a few flat areas
    # Both configurations' bars are drawn, each as a sizeable area.
    assert colours[rgb(BASELINE_FILL)] > 0.01 * total
    assert colours[rgb(CANDIDATE_FILL)] > 0.01 * total
