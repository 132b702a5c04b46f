"""Configuration as versioned data, without a broker: the published record and its refusals,
what a worker keeps of its own when it runs a published version, naming versions, the diff,
and a topology switched between records (state carried over, a removed rep gets nothing,
an added one is not flooded, waiting lines judged again at once)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import yaml

from tests.support.desk import Pipeline
from topics import messages
from topics.messages import Assign, DeskDue
from topics.public import Company, Reason, RoutedLead, Score, Source
from workers import config_versions as cv
from workers.core.context import Context
from workers.core.queue_desk import QueueDesk, waiting_line
from workers.settings import DEFAULT_CONFIG_DIR, config_version, load_config

NOW = 1_796_000_000.0  # any instant: the reps below are always in
TOPIC = "reference.config"


def copy(tmp_path: Path, name: str, change=None) -> Path:
    """The bundled config with every rep available around the clock, changed by `change`."""
    target = tmp_path / name
    shutil.copytree(DEFAULT_CONFIG_DIR, target)
    reps = yaml.safe_load((target / "reps.yaml").read_text())
    routing = yaml.safe_load((target / "routing.yaml").read_text())
    for rep in reps["reps"].values():
        rep.pop("working_hours", None)
        rep.pop("out_of_office", None)
    if change is not None:
        change(reps, routing)
    (target / "reps.yaml").write_text(yaml.safe_dump(reps))
    (target / "routing.yaml").write_text(yaml.safe_dump(routing))
    return target


def published(config, note: str = "") -> cv.Published:
    return cv.read_record(cv.record(config, note=note, publisher="ops@test", at=NOW), 3)


# ------------------------------------------------------------------------- the record
def test_a_record_reads_back_as_the_version_of_its_files() -> None:
    config = load_config(DEFAULT_CONFIG_DIR, env={})
    p = published(config, "as deployed")
    assert p.version == config.version == config_version(config.texts)
    assert len(p.version) == 12 and p.note == "as deployed" and p.publisher == "ops@test"
    assert p.files["routing.yaml"] == (DEFAULT_CONFIG_DIR / "routing.yaml").read_text()
    assert p.offset == 3 and p.when == "2026-11-30 00:53:20 UTC"
    # Same files, same version; any change of any file, another version.
    assert (
        load_config(DEFAULT_CONFIG_DIR, env={"LEADROUTER_LOG_LEVEL": "DEBUG"}).version == p.version
    )
    changed = dict(config.texts, **{"reps.yaml": config.texts["reps.yaml"] + "\n"})
    assert config_version(changed) != p.version


@pytest.mark.parametrize(
    ("value", "reason", "says"),
    [
        (b"{not json", cv.NOT_JSON, "not JSON"),
        (b"[1, 2]", cv.CORRUPT, "not a JSON object"),
        (b'{"format": 2, "files": {}}', cv.NEWER_FORMAT, "format 2 by a newer release"),
        (b'{"version": "x", "files": {}}', cv.CORRUPT, "no format 1 record"),
        (
            b'{"format": 1, "version": "x", "files": {"routing.yaml": ""}}',
            cv.CORRUPT,
            "files missing: settings.yaml, scoring.yaml, reps.yaml",
        ),
    ],
)
def test_a_record_that_is_no_configuration_is_refused(value, reason, says) -> None:
    with pytest.raises(cv.Refused) as caught:
        cv.read_record(value)
    assert caught.value.reason == reason and says in caught.value.detail


def test_files_that_do_not_hash_to_their_version_are_refused_as_corrupt() -> None:
    obj = orjson.loads(cv.record(load_config(env={}), note="", publisher="", at=NOW))
    obj["files"]["reps.yaml"] += "# edited by hand\n"
    with pytest.raises(cv.Refused) as caught:
        cv.read_record(orjson.dumps(obj))
    assert caught.value.reason == cv.CORRUPT and "not to its version" in caught.value.detail


def test_a_version_config_check_refuses_is_refused_with_its_problems() -> None:
    config = load_config(env={})
    files = dict(config.texts, **{"routing.yaml": "queues: {}\nrules: 7\n"})
    obj = {"format": 1, "version": config_version(files), "files": files}
    p = cv.read_record(orjson.dumps(obj))  # a version on paper...
    with pytest.raises(cv.Refused) as caught:
        cv.runnable(p, config, TOPIC)  # ...that no worker runs
    assert caught.value.reason == cv.INVALID
    assert f"{TOPIC}@{p.version}/routing.yaml: rules: got the number 7" in caught.value.detail


def test_a_worker_keeps_how_it_runs_and_takes_everything_else_from_the_version(tmp_path) -> None:
    def higher_bar(reps, routing) -> None:
        pass

    candidate = copy(tmp_path, "candidate", higher_bar)
    scoring = yaml.safe_load((candidate / "scoring.yaml").read_text())
    scoring["mql_threshold"] = 75
    (candidate / "scoring.yaml").write_text(yaml.safe_dump(scoring))
    settings = yaml.safe_load((candidate / "settings.yaml").read_text())
    settings["kafka"].update(bootstrap_servers="elsewhere:9092", group_id="theirs")
    settings["dedupe_window"] = 64
    (candidate / "settings.yaml").write_text(yaml.safe_dump(settings))
    local = load_config(
        DEFAULT_CONFIG_DIR,
        env={"KAFKA_BOOTSTRAP_SERVERS": "mine:9092", "LEADROUTER_STORE": "memory"},
    )
    run = cv.runnable(published(load_config(candidate, env={})), local, TOPIC)
    assert run.scoring.mql_threshold == 75 and run.settings.dedupe_window == 64
    assert run.settings.kafka.bootstrap_servers == "mine:9092"
    assert run.settings.kafka.group_id == local.settings.kafka.group_id
    assert run.settings.store.kind == "memory"
    assert run.version == load_config(candidate, env={}).version


def test_a_version_whose_credentials_come_from_the_environment_runs() -> None:
    """SASL_SSL in the published settings.yaml, its mechanism and credentials in each
    worker's environment (a Secret): the version is judged without that environment, and
    runs with the worker's own connection settings."""
    local = load_config(env={})
    settings = yaml.safe_load(local.texts["settings.yaml"])
    settings["kafka"]["security_protocol"] = "SASL_SSL"
    files = dict(local.texts, **{"settings.yaml": yaml.safe_dump(settings)})
    obj = {"format": 1, "version": config_version(files), "files": files}
    run = cv.runnable(cv.read_record(orjson.dumps(obj)), local, TOPIC)
    assert run.version == config_version(files)
    assert run.settings.kafka == local.settings.kafka


# ------------------------------------------------------------------------- naming, diff
def test_a_version_is_named_by_latest_or_a_unique_prefix(tmp_path) -> None:
    a = published(load_config(copy(tmp_path, "a"), env={}), "a")
    b = published(
        load_config(
            copy(
                tmp_path,
                "b",
                lambda reps, r: (
                    reps["reps"].pop("smb", 0) or r["queues"]["smb"].update(sla_minutes=60)
                ),
            ),
            env={},
        ),
        "b",
    )
    assert cv.find([a, b], "latest") is b
    assert cv.find([a, b], a.version[:5].upper()) is a
    for ref, says in (
        ("abc", "at least 4 characters"),
        ("ffffffff", "no published version"),
    ):
        with pytest.raises(LookupError, match=says):
            cv.find([a, b], ref)
    with pytest.raises(LookupError, match="no configuration has been published"):
        cv.find([], "latest")
    twins = [replace(a, version="abcd" + "1" * 8), replace(a, version="abcd" + "2" * 8)]
    with pytest.raises(LookupError, match="names 2 versions"):
        cv.find(twins, "abcd")


def test_diff_shows_what_changed_file_by_file() -> None:
    a = {
        "settings.yaml": "x: 1\n",
        "scoring.yaml": "s\n",
        "routing.yaml": "r\n",
        "reps.yaml": "a\nb\n",
    }
    b = dict(a, **{"reps.yaml": "a\nc\n"})
    lines = cv.diff(a, b, "e68faea04c7c", "3f2a9c0d1b7e")
    assert lines[:2] == ["--- e68faea04c7c/reps.yaml", "+++ 3f2a9c0d1b7e/reps.yaml"]
    assert "-b" in lines and "+c" in lines and not any("routing" in x for x in lines)
    assert cv.diff(a, a, "x", "y") == []


# ------------------------------------------------------------------------- switching
def form(n: int, form_id: str = "demo-request") -> dict:
    return {
        "event_id": f"f{n}",
        "occurred_at": "2026-11-29T10:00:00Z",
        "email": f"lead{n}@acme-corp.com",
        "form_id": form_id,
    }


def reps_of(line: Pipeline, since: int = 0) -> list[str | None]:
    return [p[2]["rep_id"] for p in line.published[since:] if p[2]["event"] == "lead.assigned"]


def test_a_switch_carries_state_over_and_a_removed_rep_gets_nothing(tmp_path) -> None:
    before = load_config(copy(tmp_path, "before"), env={})
    after = load_config(
        copy(
            tmp_path, "after", lambda reps, r: r["queues"]["fast-lane"]["reps"].remove("ben.carter")
        ),
        env={},
    )
    line = Pipeline(before, NOW)
    for n in range(5):
        line.send("form_fill", form(n))
    assert reps_of(line) == ["ana.silva", "ben.carter", "chloe.martin", "daisuke.ito", "ana.silva"]
    line.topology.reconfigure(after)
    seen = len(line.published)
    for n in range(5, 11):
        line.send("form_fill", form(n))
    # Round robin goes on from where it was, over the reps the new version names.
    assert reps_of(line, seen) == [
        "chloe.martin",
        "daisuke.ito",
        "ana.silva",
        "chloe.martin",
        "daisuke.ito",
        "ana.silva",
    ]
    versions = [p[2]["reason"]["config_version"] for p in line.published]
    assert versions[:seen] == [before.version] * seen
    assert set(versions[seen:]) == {after.version}


def test_a_rep_added_to_a_least_loaded_queue_is_not_flooded(tmp_path) -> None:
    mid = "mid-market"

    def only_two(reps, routing) -> None:
        routing["queues"][mid]["reps"] = ["kai.andersen", "lena.fischer"]
        routing["rules"] = [{"name": "all", "when": {"always": True}, "queue": mid}]

    def three(reps, routing) -> None:
        only_two(reps, routing)
        routing["queues"][mid]["reps"].append("maya.patel")

    line = Pipeline(load_config(copy(tmp_path, "two", only_two), env={}), NOW)
    for n in range(20):
        line.send("form_fill", form(n))
    stats = line.state.get(f"q:{mid}")["reps"]
    floor = min(stats[r]["open"] for r in ("kai.andersen", "lena.fischer"))
    assert floor >= 8
    line.topology.reconfigure(load_config(copy(tmp_path, "three", three), env={}))
    seen = len(line.published)
    for n in range(20, 29):
        line.now += 1  # leads a second apart: ties go to whoever waited longest
        line.send("form_fill", form(n))
    after = reps_of(line, seen)
    # Counted from the others' lowest open load: a share of what follows, not all of it
    # (from zero, least loaded would give the newcomer all nine).
    assert 2 <= after.count("maya.patel") <= 5, after
    trace = [s for p in line.published[seen:] for s in p[2]["reason"]["trace"]]
    assert f"maya.patel joins the queue counted from its lowest open load ({floor})" in trace


def test_after_a_switch_a_waiting_line_is_judged_at_once(tmp_path) -> None:
    def nobody_in(reps, routing) -> None:
        for name in routing["queues"]["fast-lane"]["reps"]:
            reps["reps"][name]["out_of_office"] = [{"from": "2026-11-01", "to": "2026-12-31"}]

    line = Pipeline(load_config(copy(tmp_path, "away", nobody_in), env={}), NOW)
    line.send("form_fill", form(1))
    assert reps_of(line) == [None]
    key = "q:fast-lane"
    assert waiting_line(line.state.get(key))[0] == 1
    line.now = NOW + 60  # published a minute later: the reps are back
    line.topology.reconfigure(load_config(copy(tmp_path, "back"), env={}))
    sink_timers: list = []

    class Sink:
        def set_timer(self, partition, due, key) -> None:
            sink_timers.append((due, key))

    line.topology.wake_desks(line.state_of, Sink())  # type: ignore[arg-type]
    assert sink_timers == [(NOW + 60, key)]
    line.timers += sink_timers
    line.fire_timers()
    assert reps_of(line)[-1] == "ana.silva"
    assert waiting_line(line.state.get(key))[0] == 0


def test_a_draft_on_the_wire_carries_no_version_for_a_previous_release_to_choke_on() -> None:
    draft = RoutedLead(
        event="lead.assigned",
        lead_id="ld_1",
        queue="smb",
        rep_id=None,
        email="a@b.c",
        name=None,
        phone=None,
        job_title=None,
        seniority=None,
        region=None,
        company=Company(None, None, None, None, None),
        score=Score(1, 1, 0, "D", []),
        reason=Reason("smb", None, ["x"]),
        source=Source(None, None, None, None),
        trigger_event_id="f1",
        generated_at=None,
        routed_at=None,
        sla_due_at=None,
    )
    raw = messages.encode(Assign("ld_1", "smb", None, NOW, draft))
    assert b"config_version" not in raw
    assert orjson.loads(raw)["draft"]["reason"] == {
        "rule": "smb",
        "assignment": None,
        "trace": ["x"],
    }
    assert messages.decode(raw).draft.reason.config_version is None


def test_a_lead_of_a_queue_a_version_removed_still_reaches_its_rep(tmp_path) -> None:
    def no_fast_lane(reps, routing) -> None:
        routing["queues"].pop("fast-lane")
        routing["rules"] = [r for r in routing["rules"] if r["queue"] != "fast-lane"]

    line = Pipeline(load_config(copy(tmp_path, "before"), env={}), NOW)
    line.send("form_fill", form(1))
    line.topology.reconfigure(load_config(copy(tmp_path, "after", no_fast_lane), env={}))
    line.now += 60
    click = {"event_id": "e1", "occurred_at": "2026-11-29T10:01:00Z", "type": "click"}
    line.send("email_event", click | {"email": "lead1@acme-corp.com"})
    queue, _, activity = line.published[-1]
    assert (queue, activity["event"], activity["rep_id"]) == (
        "fast-lane",
        "lead.activity",
        "ana.silva",
    )
    assert line.invalid == []


def test_a_lead_for_a_queue_its_desk_does_not_know_yet_waits_until_the_desk_switches(
    tmp_path,
) -> None:
    """A rollout under way: the lead's worker runs a version with a new queue, the desk's
    worker still the one before. The lead waits in the line instead of being lost."""

    def vip(reps, routing) -> None:
        routing["queues"]["vip"] = {
            "strategy": "round_robin",
            "sla_minutes": 5,
            "reps": ["olivia.davis"],
        }
        routing["rules"].insert(
            0, {"name": "vip", "when": {"field": "trigger", "eq": "fast_lane"}, "queue": "vip"}
        )

    before = load_config(copy(tmp_path, "before"), env={})
    after = load_config(copy(tmp_path, "after", vip), env={})
    line = Pipeline(after, NOW)
    old_desk = QueueDesk(Context(before, line.accounts, line.facts, lambda: line.now))
    line.topology.handlers[Assign] = old_desk.on_assign
    line.topology.handlers[DeskDue] = old_desk.on_due
    line.send("form_fill", form(1))
    ((queue, _, routed),) = line.published
    assert (queue, routed["rep_id"]) == ("vip", None)
    assert any(
        "vip is not in the configuration this desk runs" in s for s in routed["reason"]["trace"]
    )
    assert waiting_line(line.state.get("q:vip"))[0] == 1
    line.advance(NOW + 60)  # the desk looks again: still the old version, still waiting
    assert waiting_line(line.state.get("q:vip"))[0] == 1 and len(line.published) == 1
    line.now = NOW + 90
    line.topology.reconfigure(after)  # the desk's worker switches

    class Sink:
        def set_timer(self, partition, due, key) -> None:
            line.timers.append((due, key))

    line.topology.wake_desks(line.state_of, Sink())  # type: ignore[arg-type]
    line.fire_timers()
    assert [(q, p["event"], p["rep_id"]) for q, _, p in line.published[1:]] == [
        ("vip", "lead.assigned", "olivia.davis")
    ]
    assert waiting_line(line.state.get("q:vip"))[0] == 0
