"""`leadrouter config show --html` in a real headless Chromium: the page's own script draws the
flow (it marks the document when done, and any script error is caught), nothing is fetched
from the network, nothing written in config can inject markup, and the screenshot is a drawing
in the flow's colours, not a blank page.

Chromium comes from Debian's packages through scripts/chromium/install.sh (`make tools`).
Every browser run has a deadline (the subprocess timeout); nothing sleeps.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import yaml
from click.testing import CliRunner

from tests.browser.chromium import (
    assert_script_error_caught,
    browse,
    root_attributes,
    screenshot,
)
from workers.cli import main
from workers.routing_view import build_view
from workers.settings import DEFAULT_CONFIG_DIR, load_config

AT = "2026-12-01T15:00:00Z"  # a Tuesday: Tokyo and Sydney are asleep, Europe is at work
WINDOW = (1400, 1200)

# Colours of the stylesheet: a decision, a queue, a rep in office.
RULE_FILL = (0xFF, 0xF6, 0xE0)
QUEUE_FILL = (0xE6, 0xF0, 0xFF)
IN_OFFICE = (0x22, 0xA5, 0x5B)


def write_page(tmp_path: Path, config_dir: Path = DEFAULT_CONFIG_DIR) -> Path:
    page = tmp_path / "routing.html"
    result = CliRunner().invoke(
        main, ["config", "show", "--config", str(config_dir), "--at", AT, "--html", str(page)]
    )
    assert result.exit_code == 0, result.output
    return page


def test_flow_is_drawn_by_its_script_without_console_errors(tmp_path: Path) -> None:
    page = write_page(tmp_path)
    run = browse(page, tmp_path, "--dump-dom")
    assert run.console == []
    attrs = root_attributes(run.stdout)
    assert "data-render-error" not in attrs
    assert attrs.get("data-rendered") == "ok"

    config = load_config(DEFAULT_CONFIG_DIR, env={})
    view = build_view(config, datetime.fromisoformat(AT).astimezone(UTC))
    reps = sum(len(q.reps) for q in view.queues)
    assert (attrs["data-rules"], attrs["data-queues"], attrs["data-reps"]) == (
        str(len(config.routing.rules)),
        str(len(config.routing.queues)),
        str(reps),
    )
    # The decisions in the rules' order, each pointing at its queue, then "otherwise".
    decisions = re.findall(r'<g class="decision" data-kind="(\w+)"([^>]*)>', run.stdout)
    kinds = [kind for kind, _ in decisions]
    assert kinds == ["owner"] + ["rule"] * len(config.routing.rules) + ["otherwise"]
    drawn = [
        (
            re.search(r'data-rule="([^"]*)"', a).group(1),
            re.search(r'data-queue="([^"]*)"', a).group(1),
        )
        for kind, a in decisions
        if kind == "rule"
    ]
    assert drawn == [(r.name, r.queue) for r in config.routing.rules]
    # A leaf per queue, a leaf per rep, lit when in office at AT.
    assert sorted(re.findall(r'<g class="queue" data-queue="([^"]+)"', run.stdout)) == sorted(
        config.routing.queues
    )
    on = re.findall(r'<g class="rep on" data-rep="([^"]+)"', run.stdout)
    off = re.findall(r'<g class="rep off" data-rep="([^"]+)"', run.stdout)
    assert len(on) + len(off) == reps
    expected_on = [r.id for q in view.queues for r in q.reps if r.in_office]
    assert on == expected_on
    assert "daisuke.ito" in off and "isla.nguyen" in off  # past midnight in Tokyo and Sydney


def test_flow_without_owner_precedence_with_an_empty_and_an_unreached_queue(
    tmp_path: Path,
) -> None:
    """The other drawing path: no account-owner decision, a queue without reps, a queue no
    rule reaches (only the default does)."""
    config_dir = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config_dir)
    routing_file = config_dir / "routing.yaml"
    routing = yaml.safe_load(routing_file.read_text())
    routing["account_owner_precedence"] = False
    routing["queues"]["partners"] = {"strategy": "round_robin", "sla_minutes": 30, "reps": []}
    routing["rules"] = routing["rules"][:2]
    routing_file.write_text(yaml.safe_dump(routing))
    run = browse(write_page(tmp_path, config_dir), tmp_path, "--dump-dom")
    assert run.console == []
    attrs = root_attributes(run.stdout)
    assert attrs.get("data-rendered") == "ok" and "data-render-error" not in attrs
    kinds = re.findall(r'<g class="decision" data-kind="(\w+)"', run.stdout)
    assert kinds == ["rule", "rule", "otherwise"]
    queues = re.findall(r'<g class="queue" data-queue="([^"]+)"', run.stdout)
    assert sorted(queues) == sorted(routing["queues"])
    assert 'data-queue="account-owner"' not in run.stdout
    # Each rule's "yes" and the "otherwise" lead to their queue; partners has no edge in.
    into = re.findall(
        r'class="edge yes" d="[^"]*" data-from="([^"]+)" data-to="([^"]+)"', run.stdout
    )
    assert into == [
        ("fast-lane", "fast-lane"),
        ("enterprise-amer", "enterprise-amer"),
        ("otherwise", "smb"),
    ]


def test_page_is_self_contained(tmp_path: Path) -> None:
    text = write_page(tmp_path).read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", text, re.I)
    assert "@import" not in text and "url(" not in text
    # The SVG namespace is a name, not a fetch; no other address appears.
    addresses = set(re.findall(r"https?://[^\s\"'<>]+", text))
    assert addresses <= {"http://www.w3.org/2000/svg"}, addresses


def test_screenshot_is_a_drawing_in_the_flows_colours(tmp_path: Path) -> None:
    page = write_page(tmp_path)
    colours, total = screenshot(page, tmp_path, WINDOW, blank_above=0.8)
    assert len(colours) > 200  # text, anti-aliased edges and fills, not a few flat areas
    # Decisions, queues and reps in office are drawn, each as a sizeable area.
    assert colours[RULE_FILL] > 0.05 * total
    assert colours[QUEUE_FILL] > 0.02 * total
    assert colours[IN_OFFICE] > 100


def test_markup_in_config_stays_text(tmp_path: Path) -> None:
    """A rep's name is data: written into the page it must not open a tag or end the script."""
    config_dir = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config_dir)
    reps_file = config_dir / "reps.yaml"
    reps = yaml.safe_load(reps_file.read_text())
    reps["reps"]["ana.silva"]["name"] = '</script><b id="injected">x</b> & __DATA__'
    reps_file.write_text(yaml.safe_dump(reps))
    run = browse(write_page(tmp_path, config_dir), tmp_path, "--dump-dom")
    assert run.console == []
    assert root_attributes(run.stdout).get("data-rendered") == "ok"
    assert not re.search(r"<b\b[^>]*injected", run.stdout)  # no element was made of it
    # It is drawn as the rep's name, as text.
    shown = '&lt;/script&gt;&lt;b id="injected"&gt;x&lt;/b&gt; &amp; __DATA__ (ana.silva)'
    assert re.search(r"<tspan[^>]*>" + re.escape(shown) + "</tspan>", run.stdout)


def test_the_checks_see_a_script_error(tmp_path: Path) -> None:
    """The checks above can fail: a page whose data breaks the script is caught twice, by the
    console scan and by the error mark the page's own handler sets."""
    page = write_page(tmp_path)
    text = page.read_text(encoding="utf-8")
    broken = re.sub(
        r'(<script type="application/json" id="routing-data">).*?(</script>)',
        r"\1{}\2",
        text,
        flags=re.S,
    )
    assert broken != text
    assert_script_error_caught(page, broken, tmp_path)
