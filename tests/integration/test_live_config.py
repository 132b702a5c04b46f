"""Configuration as versioned data, on the reference broker with real workers and the real
`leadrouter config` commands: a worker under traffic switches to a newly published version
without a restart (a rep put out of office gets nothing routed after it; the records carry
the version that decided them), two workers converge on one version, records that are no
valid configuration are refused while routing goes on, and a restarted worker comes back on
the latest version (a rollback is publishing an earlier one again)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import yaml
from kafka import KafkaProducer

from tests.integration.test_pipeline import ROUTED, form
from tests.support.metrics import scrape, value
from tests.support.traffic import SteadyForms
from tests.support.worker import LEADROUTER, patience, wait_until
from topics import catalogue as cat
from workers.settings import load_config

pytestmark = pytest.mark.integration
FAST_LANE = ["ana.silva", "ben.carter", "chloe.martin", "daisuke.ito"]
ON_LEAVE = "ben.carter"


def leadrouter(lane, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A `leadrouter` command as an operator runs it against the lane's broker."""
    env = {
        "PATH": str(LEADROUTER.parent),
        "KAFKA_BOOTSTRAP_SERVERS": lane.bootstrap,
        "LEADROUTER_TOPIC_PREFIX": lane.prefix,
    }
    done = subprocess.run(
        [str(LEADROUTER), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr}"
    return done


def variant(lane, name: str, change) -> str:
    """A copy of the lane's configuration with `change(reps, routing)` applied."""
    target = lane.tmp / name
    shutil.copytree(lane.config_dir, target)
    files = {name: target / f"{name}.yaml" for name in ("reps", "routing")}
    data = {name: yaml.safe_load(path.read_text()) for name, path in files.items()}
    before = orjson.dumps(data)
    change(data["reps"], data["routing"])
    assert orjson.dumps(data) != before
    for name, path in files.items():
        if yaml.safe_load(path.read_text()) != data[name]:  # the others stay as written
            path.write_text(yaml.safe_dump(data[name]))
    return str(target)


def on_leave(reps, routing) -> None:
    today = datetime.now(UTC).date()
    away = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=2))}
    reps["reps"][ON_LEAVE]["out_of_office"] = [away]


def running(worker) -> str | None:
    """The version the worker's metrics say it runs."""
    for (name, labels), v in scrape(worker.metrics_url).items():
        if name == "leadrouter_config_info" and v == 1:
            return dict(labels)["version"]
    return None


def routed(lane, what: str, until) -> list[dict]:
    found = lane.topics.read(
        ROUTED, lambda r: until([orjson.loads(x.value) for x in r]), patience(90), what
    )
    return [orjson.loads(r.value) for r in found]


def test_a_worker_under_traffic_switches_to_a_published_version(lane, started):
    local = load_config(lane.config_dir, env={}).version
    first = leadrouter(lane, "config", "publish", str(lane.config_dir), "--note", "as deployed")
    assert f"published {local}" in first.stdout
    worker = started()
    assert running(worker) == local
    leave = variant(lane, "leave", on_leave)
    candidate = load_config(leave, env={}).version
    assert candidate != local
    demo_request = lambda n: form(f"before{n}@acme-corp.com", "demo-request")  # noqa: E731
    with SteadyForms(lane, demo_request) as traffic:
        wait_until(lambda: traffic.sent >= 40, patience(30), "traffic under way")
        leadrouter(lane, "config", "publish", leave, "--note", f"{ON_LEAVE} on leave")
        wait_until(lambda: running(worker) == candidate, patience(30), "the switch")
        sent_at_switch = traffic.sent
        wait_until(lambda: traffic.sent >= sent_at_switch + 60, patience(30), "more traffic")
    total = traffic.sent
    records = routed(lane, f"all {total} leads routed", lambda r: len(r) >= total)
    versions = {r["reason"]["config_version"] for r in records}
    assert versions == {local, candidate}, versions
    before = [r for r in records if r["reason"]["config_version"] == local]
    after = [r for r in records if r["reason"]["config_version"] == candidate]
    assert {r["rep_id"] for r in before} == set(FAST_LANE)  # round robin: everyone had some
    assert after and ON_LEAVE not in {r["rep_id"] for r in after}
    assert {r["rep_id"] for r in after} == set(FAST_LANE) - {ON_LEAVE}
    # Routed in the order they came, with no restart and no rebalance on the way.
    assert worker.process is not None and worker.process.poll() is None
    samples = scrape(worker.metrics_url)
    assert value(samples, "leadrouter_config_switches_total") == 1
    log = worker.log_path.read_text()
    assert log.count("assigned ") == 1, "the switch must not cost a rebalance"
    assert f"-> {candidate}" in log and f"{ON_LEAVE} on leave" in log
    # replay takes published versions as well as directories: with ben on leave, the
    # leads he had go to others.
    out = lane.tmp / "replay.json"
    leadrouter(
        lane,
        "replay",
        "--since",
        "1h",
        "--baseline",
        local[:8],
        "--config",
        "latest",
        "--json",
        str(out),
        "--sample",
        "5",
    )
    report = orjson.loads(out.read_bytes())
    assert report["baseline"]["reps"][ON_LEAVE]["leads"] > 0
    assert report["candidate"]["reps"].get(ON_LEAVE, {}).get("leads", 0) == 0
    assert report["changed_count"] > 0
    # explain shows the version that decided a lead.
    explained = leadrouter(lane, "explain", after[0]["email"], "--since", "1h").stdout
    assert f"config {candidate}" in explained
    # The history lists both, the latest last; diff shows the absence, file by file.
    history = leadrouter(lane, "config", "history", "--config", str(lane.config_dir)).stdout
    lines = history.splitlines()
    assert lines[0].startswith(local) and "as deployed" in lines[0]
    assert lines[1].startswith(candidate) and "(latest)" in lines[1]
    diff = leadrouter(lane, "config", "diff", local[:6], "latest").stdout
    assert f"--- {local}/reps.yaml" in diff and f"+++ {candidate}/reps.yaml" in diff
    assert "+    out_of_office:" in diff
    assert "routing.yaml" not in diff


def test_two_workers_converge_and_refuse_a_record_that_is_no_configuration(lane, started):
    workers = [started("w1"), started("w2")]
    leave = variant(lane, "leave", on_leave)
    candidate = load_config(leave, env={}).version
    leadrouter(lane, "config", "publish", leave, "--note", "leave")
    for w in workers:
        wait_until(lambda w=w: running(w) == candidate, patience(30), f"{w.port} on {candidate}")
    # Records no worker may run: not JSON, a newer format, files not matching their version,
    # a configuration that fails validation. Each is refused; the version stays.
    good = orjson.loads(_latest_record(lane))
    broken_routing = dict(good, files={**good["files"], "routing.yaml": "queues: {}\nrules: 7\n"})
    tampered = dict(good, files={**good["files"], "reps.yaml": good["files"]["reps.yaml"] + "#"})
    from workers.settings import config_version

    broken_routing["version"] = config_version(broken_routing["files"])
    bad = [b"{not json", orjson.dumps(dict(good, format=2)), orjson.dumps(tampered)]
    bad.append(orjson.dumps(broken_routing))
    producer = KafkaProducer(bootstrap_servers=lane.bootstrap)
    for record in bad:
        producer.send(lane.prefix + cat.CONFIG, key=b"bad", value=record)
    producer.flush()
    producer.close()

    def refused(w) -> dict[str, float]:
        samples = scrape(w.metrics_url)
        return {
            reason: value(samples, "leadrouter_config_refused_total", reason=reason)
            for reason in ("not_json", "newer_format", "corrupt", "invalid")
        }

    every = {"not_json": 1, "newer_format": 1, "corrupt": 1, "invalid": 1}
    for w in workers:
        wait_until(lambda w=w: refused(w) == every, patience(30), "every bad record refused")
        assert running(w) == candidate
        assert "refused (invalid)" in w.log_path.read_text()
    # Routing goes on, on the version they had.
    lane.topics.send(cat.FORM_FILLS, form("after-bad@acme-corp.com", "demo-request"))
    lane.topics.flush()
    records = routed(lane, "the lead routed", lambda r: len(r) >= 1)
    assert records[0]["reason"]["config_version"] == candidate
    assert records[0]["rep_id"] != ON_LEAVE
    # `config history` shows the versions and says which records were none.
    history = leadrouter(lane, "config", "history", "--config", str(lane.config_dir))
    assert history.stdout.splitlines()[0].startswith(candidate)
    assert history.stderr.count("not a version") == 4


def _latest_record(lane) -> bytes:
    found = lane.topics.read([cat.CONFIG], lambda r: len(r) >= 1, patience(30), "a version")
    return found[-1].value


def test_a_restarted_worker_comes_back_on_the_latest_version_and_rollback(lane, started):
    local = load_config(lane.config_dir, env={}).version
    leave = variant(lane, "leave", on_leave)
    candidate = load_config(leave, env={}).version
    leadrouter(lane, "config", "publish", leave, "--note", "leave")
    # a variable for a key the published version decides is named, not silently dropped
    worker = started(extra_env={"LEADROUTER_DEDUPE_WINDOW": "5"})
    assert running(worker) == candidate  # at start: no switch needed
    assert value(scrape(worker.metrics_url), "leadrouter_config_switches_total") == 0
    worker.stop()
    assert (
        f"LEADROUTER_DEDUPE_WINDOW set, but configuration {candidate} decides this key"
        in worker.log_path.read_text()
    )
    # Invalid files are refused before anything is published.
    broken = variant(lane, "broken", lambda reps, routing: routing["queues"].pop("smb"))
    refused = leadrouter(lane, "config", "publish", broken, check=False)
    assert refused.returncode == 1 and "nothing published" in refused.stderr
    assert "routing.yaml" in refused.stderr
    # Roll back to the deployed files: publish them (the same version as local files).
    leadrouter(lane, "config", "publish", str(lane.config_dir), "--note", "back")
    again = leadrouter(lane, "config", "publish", str(lane.config_dir))
    assert "already the latest" in again.stdout
    worker = started("w1-again")
    assert running(worker) == local
    lane.topics.send(cat.FORM_FILLS, form("back@acme-corp.com", "demo-request"))
    lane.topics.flush()
    records = routed(lane, "the lead routed", lambda r: len(r) >= 1)
    assert records[0]["reason"]["config_version"] == local
    # `--version V` publishes an earlier version again; the running worker switches to it.
    leadrouter(lane, "config", "publish", "--version", candidate[:8])
    wait_until(lambda: running(worker) == candidate, patience(30), "the rollback switch")
    history = leadrouter(lane, "config", "history", "--config", str(lane.config_dir)).stdout
    assert [line[:12] for line in history.splitlines()] == [local, candidate]
    assert f"rollback to {candidate}" in history


def test_a_lead_waiting_for_a_rep_is_handed_out_when_a_version_brings_one_back(lane, started):
    """The switch makes each desk with a line judge it at once: the lead does not wait for
    the desk's next timer (here: the end of an absence days away)."""

    def only_ben(reps, routing) -> None:
        routing["queues"]["fast-lane"]["reps"] = [ON_LEAVE]

    def only_ben_away(reps, routing) -> None:
        only_ben(reps, routing)
        on_leave(reps, routing)

    away = variant(lane, "away", only_ben_away)
    back = variant(lane, "back", only_ben)
    leadrouter(lane, "config", "publish", away, "--note", "ben away")
    worker = started()
    email = "waits@acme-corp.com"
    lane.topics.send(cat.FORM_FILLS, form(email, "demo-request"))
    lane.topics.flush()
    waiting = routed(lane, "the lead routed to the line", lambda r: len(r) >= 1)
    assert waiting[0]["rep_id"] is None
    leadrouter(lane, "config", "publish", back, "--note", "ben back early")
    version = load_config(back, env={}).version
    handed = routed(lane, "the lead handed out", lambda r: len(r) >= 2)
    assert (handed[1]["event"], handed[1]["rep_id"]) == ("lead.assigned", ON_LEAVE)
    assert handed[1]["reason"]["config_version"] == version
    assert running(worker) == version
