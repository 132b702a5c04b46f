"""Issue 6, point 5: malicious or broken configuration. (Field-level validation has unit
tests in tests/unit/test_settings.py and tests/unit/test_route.py; these are the process-
level guarantees.)

- `leadrouter worker` started on a hostile config directory exits non-zero, promptly,
  before touching a broker, naming the file and the path inside it: unknown keys, wrong
  types, patterns RE2 refuses (backreferences, too long, too big to compile), YAML tags
  that would construct Python objects or run commands (nothing runs: a marker file stays
  absent), YAML alias bombs, code in environment overrides; and it never echoes a secret.
- Config is data: a routing rule with a pathological pattern (exponential under a
  backtracking engine) and code-like values runs in linear time on hostile input and
  executes nothing.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

import orjson
import pytest
import yaml

from tests.reliability.conftest import Rig
from tests.support.faults import ROUTED, environ_without_kafka, produce_all, read_all
from tests.support.metrics import scrape, value
from tests.support.worker import LEADROUTER, patience, wait_until
from topics import catalogue as cat
from workers.core.identity import lead_id
from workers.settings import DEFAULT_CONFIG_DIR

SECRET = "s3cr3t-Pa55-do-not-print"
# A rejected config must not hang the start. Each worker is started alone (a cold start
# takes about 0.2 s of CPU; thirteen at once on two cores raced one shared deadline) and
# held to both limits: wall time (a hang: waiting on a network, a lock) and CPU time (work:
# an alias bomb expanded, a pattern compiled; unlike wall time, not inflated by a loaded
# machine, so it can be tight).
START_LIMIT = 20.0  # seconds of wall time, per worker
CPU_LIMIT = 5.0  # seconds of CPU time (user + system), per worker


def config_copy(target: Path) -> Path:
    shutil.copytree(DEFAULT_CONFIG_DIR, target)
    return target


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n" + text + "\n")


def edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def first_rule(data: dict, when: dict) -> None:
    data["rules"].insert(0, {"name": "hostile", "when": when, "queue": "smb"})


BOMB = "\n".join(
    [f"l0: &l0 [{', '.join(['lol'] * 9)}]"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
)


def hostile_cases(tmp: Path, marker: Path) -> dict[str, tuple[Path, dict[str, str], list[str]]]:
    """name -> (config dir, extra env, fragments the error output must contain)."""
    cases: dict[str, tuple[Path, dict[str, str], list[str]]] = {}

    def case(name: str, env: dict[str, str] | None = None) -> Path:
        return config_copy(tmp / name)

    d = case("unknown-key")
    edit(d / "settings.yaml", lambda s: s["kafka"].update(bootstrap_server="x:1"))
    cases["unknown-key"] = (d, {}, [f"{d / 'settings.yaml'}: kafka.bootstrap_server"])

    d = case("wrong-types")
    edit(d / "reps.yaml", lambda r: r["reps"]["ana.silva"].update(daily_capacity="lots"))
    edit(d / "routing.yaml", lambda r: r["queues"]["smb"].update(sla_minutes=[1, 2]))
    cases["wrong-types"] = (
        d,
        {},
        [
            f"{d / 'reps.yaml'}: reps.ana.silva.daily_capacity",
            f"{d / 'routing.yaml'}: queues.smb.sla_minutes",
        ],
    )

    for name, pattern, why in [
        ("backreference", r"^(a+)\1$", "invalid pattern"),
        ("too-long", "(a|aa)*" * 40, "characters long, more than 200"),
        ("too-big", "((((a{100}){100}){100}){100})", "invalid pattern"),
    ]:
        d = case(f"regex-{name}")
        edit(
            d / "routing.yaml",
            lambda r, p=pattern: first_rule(r, {"field": "company.name", "matches": p}),
        )
        cases[f"regex-{name}"] = (d, {}, [f"{d / 'routing.yaml'}: rules[0].when", why])

    touch = f"touch {marker}"
    tags = {
        "settings.yaml": f"log_level: !!python/object/apply:os.system [{touch!r}]",
        "scoring.yaml": (
            "mql_threshold: !!python/object/apply:builtins.eval "
            f"[\"__import__('os').system('{touch}')\"]"
        ),
        "routing.yaml": (
            f"default_queue: !!python/object/new:subprocess.Popen [[touch, '{marker}']]"
        ),
        "reps.yaml": "extra: !!python/name:os.system",
    }
    for file, line in tags.items():
        d = case(f"tag-{file}")
        append(d / file, line)
        cases[f"tag-{file}"] = (d, {}, [f"{d / file}: line", "not valid YAML"])
    d = case("tag-custom")
    append(d / "settings.yaml", "extra: !include /etc/passwd")
    cases["tag-custom"] = (d, {}, [f"{d / 'settings.yaml'}: line", "not valid YAML"])

    d = case("alias-bomb")
    append(d / "settings.yaml", BOMB + "\ncompetitor_domains: *l9")
    cases["alias-bomb"] = (d, {}, [f"{d / 'settings.yaml'}: "])

    d = case("env-code")
    cases["env-code"] = (
        d,
        {
            "LEADROUTER_LOG_LEVEL": f"__import__('os').system('{touch}')",
            "LEADROUTER_METRICS_PORT": f"$({touch})",
        },
        [f"{d / 'settings.yaml'}: log_level", f"{d / 'settings.yaml'}: metrics.port"],
    )

    d = case("secret")
    edit(d / "settings.yaml", lambda s: s["kafka"].update(sasl_password=[SECRET], nope=SECRET))
    cases["secret"] = (
        d,
        {"LEADROUTER_KAFKA_SASL_PASSWORD": SECRET, "LEADROUTER_KAFKA_SASL_MECHANISM": "MD5"},
        [f"{d / 'settings.yaml'}: kafka.sasl_mechanism"],
    )
    return cases


def refuse(
    directory: Path, env: dict[str, str], data_dir: Path
) -> tuple[int | None, str, float, float]:
    """Start `leadrouter worker` on `directory` alone and wait for it to exit: (exit code,
    None when it had to be killed; its output; wall seconds; CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    proc = subprocess.Popen(
        [str(LEADROUTER), "worker", "--config", str(directory)],
        env={
            **environ_without_kafka(),
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # never reached
            "LEADROUTER_DATA_DIR": str(data_dir),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=patience(START_LIMIT + 30))
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        code = None
    took = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, out, took, cpu


def test_worker_refuses_hostile_config_naming_file_and_path(tmp_path):
    marker = tmp_path / "pwned"
    cases = hostile_cases(tmp_path, marker)
    failures = []
    for name, (directory, env, expected) in cases.items():  # one at a time: each alone
        code, out, took, cpu = refuse(directory, env, tmp_path / "data")
        if code is None:
            failures.append(f"{name}: still running after {took:.0f}s")
            continue
        if code == 0:
            failures.append(f"{name}: exit 0\n{out}")
        if "configuration is invalid" not in out:
            failures.append(f"{name}: no clear error\n{out}")
        missing = [e for e in expected if e not in out]
        if missing:
            failures.append(f"{name}: {missing} not in\n{out}")
        if "Traceback" in out:
            failures.append(f"{name}: a traceback instead of an error\n{out}")
        if SECRET in out:
            failures.append(f"{name}: the secret was printed\n{out}")
        if took > patience(START_LIMIT):
            failures.append(f"{name}: took {took:.1f}s to refuse")
        if cpu > CPU_LIMIT:
            failures.append(f"{name}: used {cpu:.1f}s of CPU to refuse")
    assert not marker.exists(), "a command in config was executed"
    assert not failures, "\n\n".join(failures)


@pytest.mark.integration
def test_pathological_pattern_and_code_like_values_are_inert(rig: Rig, tmp_path):
    """A rule pattern that is exponential under backtracking, on 2000-character hostile
    input, and rule values that look like code: leads route promptly, nothing runs."""
    marker = tmp_path / "pwned"
    evil = "^(a+)+$"  # RE2: linear; a backtracking engine never finishes on 'a'*1999+'!'
    code = [
        f"$(touch {marker})",
        f"__import__('os').system('touch {marker}')",
        f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}",
        f"!!python/object/apply:os.system ['touch {marker}']",
    ]

    def rules(routing: dict) -> None:
        first_rule(routing, {"field": "company.name", "matches": evil})
        code_rule = {"field": "company.name", "in": code}
        routing["rules"].insert(1, {"name": "code", "when": code_rule, "queue": "mid-market"})

    edit(rig.config_dir / "routing.yaml", rules)
    worker = rig.worker("w1").launch().wait_ready()
    tag = rig.prefix.rstrip(".")
    companies = {f"slow{i}@{tag}.com": "a" * (1999 - i) + "!" for i in range(20)} | {
        f"match@{tag}.com": "a" * 1500,
        f"code@{tag}.com": f"$(touch {marker})",
    }
    now = time.time()
    records = []
    for n, (email, company) in enumerate(companies.items()):
        event = {
            "event_id": f"{tag}-{n}",
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "email": email,
            "form_id": "demo-request",
            "company": company,
        }
        records.append((cat.FORM_FILLS, None, orjson.dumps(event)))
    sent = time.monotonic()
    produce_all(rig.bootstrap, rig.prefix, records)
    topics = [rig.prefix + t for t in ROUTED]
    got = wait_until(
        lambda: (r := read_all(rig.bootstrap, topics)) and len(r) >= len(records) and r,
        60,
        "every hostile lead to be routed",
    )
    elapsed = time.monotonic() - sent
    queues = {r.key.decode(): r.topic.removeprefix(rig.prefix) for r in got}
    assert queues[lead_id(f"match@{tag}.com")] == cat.routed_topic("smb"), "the rule is live"
    assert queues[lead_id(f"code@{tag}.com")] == cat.routed_topic("mid-market")
    for i in range(20):
        assert queues[lead_id(f"slow{i}@{tag}.com")] == cat.routed_topic("fast-lane")
    assert elapsed < 30, f"routing 22 leads took {elapsed:.1f}s"
    samples = scrape(worker.metrics_url)
    latency = value(samples, "leadrouter_route_latency_seconds_sum") / max(
        1, value(samples, "leadrouter_route_latency_seconds_count")
    )
    assert latency < 5, f"mean event-to-routed latency {latency:.2f}s"
    assert not marker.exists(), "a value in config was executed"
