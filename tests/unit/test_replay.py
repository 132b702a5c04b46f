"""`leadrouter replay` without a broker: the comparison engine over lists of records (the
simulator's traffic and hand-made events), and the command's refusals that need no broker.

What is held here: the same configuration twice changes nothing; a higher MQL threshold
routes fewer leads by score and shows both traces; malformed records are counted by reason
and never stop the run; the on-disk store gives the same answer as dicts; event time is the
clock (working hours, the queue desk's hand-out timer, the SLA); the JSON keys of DESIGN.md;
bad arguments and an invalid candidate configuration exit 2 before anything is read.
The broker-side half (reading history, faithful to a real worker) is
tests/integration/test_replay.py.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner

from tests.support.worker import always_open_config
from topics import catalogue as cat
from workers.cli import main as leadrouter
from workers.core.context import Recorder
from workers.core.enrich import AccountBook
from workers.core.identity import lead_id
from workers.core.topology import InputRecord
from workers.demo import demo_accounts
from workers.replay import Replay, Tally, render_summary, with_kafka_of
from workers.replay_html import render_html
from workers.settings import DEFAULT_CONFIG_DIR, Config, load_config
from workers.simulate import Traffic

ROOT = Path(__file__).resolve().parents[2]
KEYS = [
    "events",
    "leads",
    "baseline",
    "candidate",
    "changed_count",
    "changed",
]
START = datetime(2026, 11, 25, 14, 0, tzinfo=UTC).timestamp()  # a Wednesday
SUNDAY_NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()
MONDAY_9 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp()


def config_at(directory: Path) -> Config:
    return load_config(directory, env={})


def edit(directory: Path, name: str, change: Any) -> Path:
    """Change one YAML file of a config directory in place."""
    path = directory / name
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))
    return directory


def threshold(directory: Path, value: float) -> Path:
    return edit(directory, "scoring.yaml", lambda d: d.__setitem__("mql_threshold", value))


def simulated(config: Config, count: int, seed: int = 7, rate: float = 200) -> list[InputRecord]:
    """The simulator's marketing traffic, `rate` events per second of event time."""
    traffic = Traffic(config, seed, 0.01)
    out = []
    for i in range(count):
        at = START + i / rate
        topic, key, value = traffic.next(at)
        out.append(InputRecord(topic, key, value, int(at * 1000), partition=i % 6, offset=i))
    return out


def accounts_of(config: Config) -> AccountBook:
    book = AccountBook()
    for account in demo_accounts(config):
        book.put(account["domain"], account)
    return book


def run(
    base: Config, cand: Config, records: list[InputRecord], until: float, **kw: Any
) -> tuple[dict[str, Any], Replay]:
    sample = kw.pop("sample", 20)
    with Replay(base, cand, accounts_of(base), **kw) as rp:
        rp.feed(records)
        rp.finish(until)
        return rp.report(sample), rp


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    return always_open_config(tmp_path / "base")


@pytest.fixture
def traffic(base_dir: Path) -> list[InputRecord]:
    return simulated(config_at(base_dir), 3000)


def test_tally_answers_every_recorder_method() -> None:
    """A fact the core reports that replay's recorder lacks would fail inside a handler,
    which parks the message: the counts would be silently wrong."""
    wanted = {n for n, _ in inspect.getmembers(Recorder) if not n.startswith("_")}
    missing = {n for n in wanted if not callable(getattr(Tally, n, None))}
    assert wanted and not missing
    for name in wanted:
        assert list(inspect.signature(getattr(Tally, name)).parameters) == list(
            inspect.signature(getattr(Recorder, name)).parameters
        ), name


def test_same_configuration_twice_changes_nothing(base_dir: Path, traffic) -> None:
    config = config_at(base_dir)
    report, rp = run(config, config, traffic, START + 60)
    assert list(report) == KEYS
    assert report["events"] == len(traffic)
    assert report["changed_count"] == 0 and report["changed"] == []
    assert report["baseline"] == report["candidate"]
    base = report["baseline"]
    assert report["leads"] == base["leads"] > 500
    assert base["routed"] == sum(q["routed"] for q in base["queues"].values()) > 100
    assert base["routed_by_trigger"]["fast_lane"] > 0 and base["routed_by_trigger"]["mql"] > 0
    given = sum(r["leads"] for r in base["reps"].values())
    assert given == base["routed"] - base["unassigned"]  # always open: nobody waits for long
    assert set(base["reps"]) >= {r for q in config.routing.queues.values() for r in q.reps}
    assert base["disqualified"] and base["dead_letters"]
    json.dumps(report)  # plain JSON data
    summary = render_summary(report, rp.facts, START, START + 60)
    assert "changed: 0 leads" in summary
    assert f"{len(traffic):,} events" in summary


def test_ingest_shared_by_both_configurations_decides_as_each_its_own(
    base_dir: Path, tmp_path: Path, traffic
) -> None:
    """Replay ingests each record once for both configurations; when the two would ingest
    differently (another size limit) each ingests its own. Both ways decide the same."""
    config = config_at(base_dir)
    shared, rp = run(config, config, traffic, START + 60)
    assert rp.facts.ingest_cpu > 0
    roomier = edit(
        always_open_config(tmp_path / "roomier"),
        "settings.yaml",
        lambda d: d.setdefault("ingest", {}).__setitem__("max_event_bytes", 10 * 1024 * 1024),
    )
    apart, rp = run(config, config_at(roomier), traffic, START + 60)
    assert rp.facts.ingest_cpu == 0  # not shared: each configuration ingested its records
    for report in (shared, apart):
        for side in ("baseline", "candidate"):
            report[side].pop("config")
    assert shared == apart and shared["baseline"]["routed"] > 100


def test_higher_mql_threshold_routes_fewer_leads_by_score(
    base_dir: Path, tmp_path: Path, traffic
) -> None:
    cand_dir = threshold(always_open_config(tmp_path / "cand"), 75)
    base, cand = config_at(base_dir), config_at(cand_dir)
    report, rp = run(base, cand, traffic, START + 60)
    b, c = report["baseline"], report["candidate"]
    assert (b["mql_threshold"], c["mql_threshold"]) == (60, 75)
    assert c["routed_by_trigger"]["mql"] < b["routed_by_trigger"]["mql"]
    assert c["mqls"] < b["mqls"]
    assert c["routed"] < b["routed"]
    assert report["changed_count"] >= b["routed"] - c["routed"]
    assert 0 < len(report["changed"]) <= 20
    kinds = rp.facts.changes
    assert kinds["qualification"] > 0
    dropped = [
        e
        for e in report["changed"]
        if e["baseline"]["status"] == "routed" and e["candidate"]["status"] == "not_qualified"
    ]
    assert dropped, report["changed"]
    for entry in dropped:
        assert "qualification" in entry["differs"]
        assert "triggered mql" in entry["baseline"]["trace"][0]
        assert entry["baseline"]["trace"][-1]  # the assignment step
        assert "threshold 75" in entry["candidate"]["trace"][0]
        assert entry["email"] and entry["lead_id"] == lead_id(entry["email"])
    for entry in report["changed"]:
        assert entry["baseline"]["trace"] and entry["candidate"]["trace"]


def test_malformed_records_are_counted_by_reason_and_do_not_stop_the_run(base_dir: Path):
    config = config_at(base_dir)
    at = int(START * 1000)
    good = orjson.dumps(
        {
            "event_id": "e-good",
            "occurred_at": "2026-11-25T14:00:00Z",
            "email": "pat.lee@initech-example.com",
            "form_id": "demo-request",
            "country": "US",
            "consent": {"marketing": True},
        }
    )
    forms = cat.FORM_FILLS
    records = [
        InputRecord(forms, None, b'{"event_id": "broken", "occurred_at": ', at, offset=0),
        InputRecord(forms, None, b'{"occurred_at": "2026-11-25T14:00:00Z"}', at, offset=1),
        InputRecord(forms, None, good.replace(b"pat.lee@", b"not-an-address"), at, offset=2),
        InputRecord(forms, None, b"[1, 2]", at, offset=3),
        InputRecord(forms, None, good, at + 1, offset=4),
    ]
    report, _ = run(config, config, records, START + 60)
    dead = report["baseline"]["dead_letters"]
    assert sum(dead.values()) == 4
    assert dead["invalid_json"] == 1 and dead["missing_field"] == 1
    assert dead["invalid_email"] == 1
    assert report["baseline"]["routed"] == 1 and report["events"] == 5


def test_state_on_disk_gives_the_same_answer(base_dir: Path, tmp_path: Path, traffic) -> None:
    cand_dir = threshold(always_open_config(tmp_path / "cand"), 70)
    base, cand = config_at(base_dir), config_at(cand_dir)
    memory, _ = run(base, cand, traffic, START + 60, sample=10_000)
    disk, rp = run(base, cand, traffic, START + 60, sample=10_000, disk=True)
    assert rp.facts.store == "disk" and not rp.work.exists()  # removed afterwards
    for key in ("events", "leads", "baseline", "candidate", "changed_count"):
        assert disk[key] == memory[key], key
    by_id = {e["lead_id"]: e for e in memory["changed"]}
    assert {e["lead_id"] for e in disk["changed"]} == set(by_id)
    for entry in disk["changed"]:
        assert entry == by_id[entry["lead_id"]]


def form_fill(email: str, at: float, event_id: str, **fields: Any) -> InputRecord:
    value = {
        "event_id": event_id,
        "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
        "email": email,
        "form_id": "demo-request",
        "country": "US",
        "consent": {"marketing": True},
        **fields,
    }
    return InputRecord(cat.FORM_FILLS, email.encode(), orjson.dumps(value), int(at * 1000))


def test_event_time_is_the_clock_hours_hand_outs_and_sla(tmp_path: Path) -> None:
    """A demo request on Sunday noon (UTC) finds the fast lane's reps off (they work 09:00-17:00
    UTC on weekdays): it waits in the queue's line, its SLA passes meanwhile, and the desk's
    own timer hands it out at 09:00 on Monday, the moment the first rep starts, although the
    next record only comes at 11:00. With wall-clock time none of this would happen."""
    config_dir = always_open_config(tmp_path / "hours")

    def office_hours(reps: dict[str, Any]) -> None:
        for rep in ("ana.silva", "ben.carter", "chloe.martin", "daisuke.ito"):
            reps["reps"][rep]["timezone"] = "UTC"
            reps["reps"][rep]["working_hours"] = {
                "start": "09:00",
                "end": "17:00",
                "days": ["mon", "tue", "wed", "thu", "fri"],
            }

    edit(config_dir, "reps.yaml", office_hours)
    edit(config_dir, "routing.yaml", lambda r: r["queues"]["fast-lane"].pop("on_sla_breach", 0))
    config = config_at(config_dir)
    waiting = form_fill("sam.weekend@initech-example.com", SUNDAY_NOON, "e-sunday")
    later = form_fill("kim.monday@initech-example.com", MONDAY_9 + 2 * 3600, "e-monday")
    report, rp = run(config, config, [waiting, later], MONDAY_9 + 3 * 3600, sample=0)
    base = report["baseline"]
    assert base["unassigned"] == 1  # Sunday: nobody in
    assert base["queues"]["fast-lane"]["from_waiting_line"] == 1
    assert base["waiting_at_end"] == 0
    assert base["sla_breaches"] >= 1  # five minutes after Sunday noon, in event time
    rp_side = rp.sides[0]
    [first, handed] = rp_side.routings.get(lead_id("sam.weekend@initech-example.com"))
    assert first["rep_id"] is None and first["event"] == "lead.assigned"
    assert handed["rep_id"] == "ana.silva" and handed["event"] == "lead.assigned"
    assert "waited 21 h in fast-lane's line" in " ".join(handed["reason"]["trace"])
    [monday] = rp_side.routings.get(lead_id("kim.monday@initech-example.com"))
    assert monday["rep_id"] == "ben.carter"  # round robin: ana had the first


def test_html_page_draws_load_per_rep_and_keeps_history_as_text(base_dir, tmp_path, traffic):
    """Without a browser (tests/browser/test_replay_html.py opens it in Chromium)."""
    cand_dir = threshold(always_open_config(tmp_path / "cand"), 75)
    report, _ = run(config_at(base_dir), config_at(cand_dir), traffic, START + 60)
    report["changed"][0]["baseline"]["trace"].append('<script>alert("x")</script> __CHARTS__')
    page = render_html(report, START, START + 60)
    assert page.count('<section class="chart"') == 3
    reps = {r for q in config_at(base_dir).routing.queues.values() for r in q.reps}
    rep_chart = page.split('id="rep-load"', 1)[1].split("</svg>", 1)[0]
    assert rep_chart.count('class="bar baseline"') == len(reps)
    assert "<script" not in page and "&lt;script&gt;alert" in page
    assert page.count("__CHARTS__") == 1  # the trace's text, not substituted
    assert "https://" not in page and "url(" not in page


def test_candidate_reads_the_baselines_topics(base_dir: Path, tmp_path: Path) -> None:
    other = always_open_config(tmp_path / "other")
    edit(other, "settings.yaml", lambda s: s["kafka"].__setitem__("topic_prefix", "elsewhere."))
    base = load_config(base_dir, env={"LEADROUTER_TOPIC_PREFIX": "live."})
    cand = with_kafka_of(config_at(other), base)
    assert cand.settings.kafka == base.settings.kafka
    assert cand.settings.kafka.topic_prefix == "live."
    assert cand.scoring == config_at(other).scoring


def test_the_clock_never_goes_back(base_dir: Path) -> None:
    config = config_at(base_dir)
    late = form_fill("ann.late@initech-example.com", START + 600, "e-1")
    early = form_fill("bo.early@initech-example.com", START, "e-2")
    _, rp = run(config, config, [late, early], START + 660)
    [routed] = rp.sides[0].routings.get(lead_id("bo.early@initech-example.com"))
    assert routed["routed_at"].startswith("2026-11-25T14:10:00")


# --------------------------------------------------------------------------- the command
def invoke(*args: str) -> Any:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}  # nothing listens: nothing may be read
    return CliRunner().invoke(leadrouter, ["replay", *args], env=env)


def test_bad_times_exit_2_with_a_clear_message(base_dir: Path) -> None:
    result = invoke("--since", "yesterday-ish", "--config", str(base_dir))
    assert result.exit_code == 2
    assert "'yesterday-ish' is not a time" in result.output
    result = invoke("--since", "1h", "--until", "2h", "--config", str(base_dir))
    assert result.exit_code == 2
    assert "--until" in result.output and "must be after --since" in result.output
    result = invoke("--since", "2099-01-01", "--config", str(base_dir))
    assert result.exit_code == 2 and "in the future" in result.output


def test_output_directory_must_exist(base_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "replay.json"
    result = invoke("--since", "1h", "--config", str(base_dir), "--json", str(missing))
    assert result.exit_code == 2 and "does not exist" in result.output


def test_invalid_candidate_is_refused_with_config_checks_errors(tmp_path: Path) -> None:
    """Refused before anything is read: the same problems, in the same words, as
    `leadrouter config check`, exit status 2, and no Kafka client even imported."""
    bad = always_open_config(tmp_path / "bad")
    threshold(bad, "sixty")
    edit(bad, "routing.yaml", lambda r: r["rules"][0].__setitem__("queue", "no-such-queue"))
    check = CliRunner().invoke(leadrouter, ["config", "check", str(bad)])
    assert check.exit_code == 1
    problems = [line for line in check.output.splitlines() if line.strip()]
    assert len(problems) >= 3  # two problems and the count
    harness = (
        "import sys\n"
        "from workers.cli import main\n"
        "try:\n"
        "    main(['replay', *sys.argv[1:]], prog_name='leadrouter')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules}"
        " & {'confluent_kafka', 'kafka', 'aiokafka', 'faust'})\n"
        "print('RESULT', code, ','.join(loaded))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADROUTER_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"
    done = subprocess.run(
        [sys.executable, "-c", harness, "--since", "2h", "--config", str(bad)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines()[-1] == "RESULT 2 ", done.stdout + done.stderr
    said = [line for line in done.stderr.splitlines() if line.strip()]
    assert said[0].startswith("leadrouter replay: the candidate configuration")
    assert said[1:] == problems


def test_invalid_baseline_is_refused_too(base_dir: Path, tmp_path: Path) -> None:
    bad = always_open_config(tmp_path / "bad")
    (bad / "reps.yaml").unlink(missing_ok=True)
    result = invoke("--since", "2h", "--config", str(base_dir), "--baseline", str(bad))
    assert result.exit_code == 2
    assert "the baseline configuration" in result.output and "reps.yaml" in result.output


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(leadrouter, ["replay", "--help"])
    assert result.exit_code == 0
    for option in ("--since", "--until", "--config", "--baseline", "--json", "--html"):
        assert option in result.output
    assert DEFAULT_CONFIG_DIR.name in result.output or "config" in result.output
