"""`leadrouter config check`, and every command refusing bad config, answers without importing
a Kafka client: those imports are most of a worker's start-up. Each case runs the real CLI in a
fresh interpreter and reads `sys.modules` afterwards, so a Kafka import put back at the top of
`workers.cli`, `workers.settings`, `workers.connection` (or anything they import) fails here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workers.settings import DEFAULT_CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]
KAFKA_CLIENTS = ("confluent_kafka", "kafka", "aiokafka", "faust")
MARK = "IMPORTED-KAFKA-CLIENTS "

# Runs the CLI as the console script does, then reports its exit code and which Kafka client
# packages ended up imported, on the last line of stdout.
HARNESS = """
import json, sys
{preload}
from workers.cli import main
code = 0
try:
    main(sys.argv[1:], prog_name="leadrouter")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({clients!r}))
print({mark!r} + json.dumps({{"code": code, "loaded": loaded}}))
"""


def run_cli(*args: str, preload: str = "") -> tuple[int, list[str], str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LEADROUTER_") and k != "KAFKA_BOOTSTRAP_SERVERS"
    }
    source = HARNESS.format(preload=preload, clients=KAFKA_CLIENTS, mark=MARK)
    proc = subprocess.run(
        [sys.executable, "-c", source, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    assert lines, f"harness failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(lines[-1].removeprefix(MARK))
    return report["code"], report["loaded"], proc.stderr


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("configs")
    good = base / "good"
    shutil.copytree(DEFAULT_CONFIG_DIR, good)
    bad = base / "bad"
    shutil.copytree(DEFAULT_CONFIG_DIR, bad)
    settings = yaml.safe_load((bad / "settings.yaml").read_text())
    settings["kafka"]["partitions"] = "many"
    settings["bogus"] = 1
    (bad / "settings.yaml").write_text(yaml.safe_dump(settings))
    retired = base / "retired"
    shutil.copytree(DEFAULT_CONFIG_DIR, retired)
    settings = yaml.safe_load((retired / "settings.yaml").read_text())
    settings["ingest"]["batch_timeout_ms"] = 20
    (retired / "settings.yaml").write_text(yaml.safe_dump(settings))
    return {"good": good, "bad": bad, "retired": retired, "csv": base / "accounts.csv"}


# (arguments with {good}/{bad}/{retired}/{csv} placeholders, exit code, text on stderr)
CASES = [
    (["config", "check", "{good}"], 0, ""),
    (["config", "check", "{bad}"], 1, "kafka.partitions"),
    (["worker", "--config", "{bad}"], 2, "configuration is invalid"),
    (["worker", "--config", "{good}"], 1, "no Kafka broker configured"),
    (["simulate", "--config", "{bad}"], 2, "configuration is invalid"),
    (["simulate", "--config", "{good}"], 1, "no Kafka broker configured"),
    (["topics", "apply", "--config", "{bad}"], 2, "configuration is invalid"),
    (["topics", "check", "--config", "{bad}"], 2, "configuration is invalid"),
    (["accounts", "load", "{csv}", "--config", "{bad}"], 2, "configuration is invalid"),
    (["demo", "--config", "{bad}"], 2, "configuration is invalid"),
]


@pytest.mark.parametrize(("args", "code", "says"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_refusal_imports_no_kafka_client(
    dirs: dict[str, Path], args: list[str], code: int, says: str
) -> None:
    argv = [a.format(**{k: str(v) for k, v in dirs.items()}) for a in args]
    exit_code, loaded, stderr = run_cli(*argv)
    assert exit_code == code, stderr
    assert says in stderr
    assert loaded == [], f"`leadrouter {' '.join(args)}` imported {loaded}"


def test_retired_key_is_a_warning_line_and_imports_nothing(dirs: dict[str, Path]) -> None:
    settings = dirs["retired"] / "settings.yaml"
    exit_code, loaded, stderr = run_cli("config", "check", str(dirs["retired"]))
    assert (exit_code, loaded) == (0, [])
    assert f"warning: {settings}: ingest.batch_timeout_ms: retired setting, ignored" in stderr
    # The worker logs it, in its log format, before it refuses for want of a broker.
    exit_code, loaded, stderr = run_cli("worker", "--config", str(dirs["retired"]))
    assert (exit_code, loaded) == (1, [])
    warning = next(line for line in stderr.splitlines() if "batch_timeout_ms" in line)
    assert f" WARNING leadrouter.config {settings}: ingest.batch_timeout_ms: " in warning
    assert "no Kafka broker configured" in stderr


def test_the_check_sees_a_kafka_import() -> None:
    """The harness itself: a Kafka client imported on the way is reported."""
    exit_code, loaded, _ = run_cli(
        "config", "check", str(DEFAULT_CONFIG_DIR), preload="import workers.admin"
    )
    assert exit_code == 0
    assert "kafka" in loaded
