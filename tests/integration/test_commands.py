"""The admin commands against the reference broker: topics apply and check, accounts load,
and the worker refusing to start on bad config or without a broker."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from tests.support.worker import LEADROUTER, always_open_config, unique, wait_until
from workers.cli import main
from workers.settings import DEFAULT_CONFIG_DIR

pytestmark = pytest.mark.integration


def run(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_topics_apply_is_idempotent_and_check_reports_drift(kafka_broker):
    prefix = unique("cat") + "."
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "LEADROUTER_TOPIC_PREFIX": prefix,
    }
    before = run(["topics", "check"], env)
    assert before.exit_code == 1 and f"{prefix}marketing.form-fills: missing" in before.output
    first = run(["topics", "apply"], env)
    assert first.exit_code == 0 and "created" in first.output
    again = run(["topics", "apply"], env)
    assert again.exit_code == 0 and "0 changes" in again.output
    ok = run(["topics", "check"], env)
    assert ok.exit_code == 0 and "ok:" in ok.output

    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    f"{prefix}reference.accounts",
                    configs={"cleanup.policy": "delete"},
                )
            ],
            incremental=True,
        )
        described = admin.describe_topics([f"{prefix}leads.deadletter"])
        assert len(described[0]["partitions"]) == 6
        admin.create_partitions({f"{prefix}leads.deadletter": 8})
    finally:
        admin.close()
    # the broker applies config and partition changes asynchronously, and its metadata
    # answers may lag one behind the other: wait until it reports both
    config_drift = f"{prefix}reference.accounts: cleanup.policy=delete, catalogue says compact"
    partition_drift = f"{prefix}leads.deadletter: 8 partitions, catalogue says 6"
    drift = wait_until(
        lambda: (
            (r := run(["topics", "check"], env)).exit_code == 1
            and config_drift in r.output
            and partition_drift in r.output
            and r
        ),
        30,
        "both drifts to show",
    )
    assert "drift: 2 differences" in drift.output
    fixed = run(["topics", "apply"], env)
    assert "set cleanup.policy=compact" in fixed.output
    after = wait_until(
        lambda: "reference.accounts" not in (r := run(["topics", "check"], env)).output and r,
        30,
        "the config fix to show",
    )
    assert after.exit_code == 1  # partitions cannot shrink: still reported, never hidden
    assert f"{prefix}leads.deadletter: 8 partitions" in after.output


def test_topics_apply_raises_partitions_but_never_those_of_state(kafka_broker):
    """More partitions for the inputs and outputs; the internal topic and the changelog keep
    theirs, since state is owned by crc32(key) % partitions (docs/scaling.md)."""
    prefix = unique("grow") + "."
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "LEADROUTER_TOPIC_PREFIX": prefix,
    }
    assert run(["topics", "apply"], env).exit_code == 0
    grown = run(["topics", "apply"], {**env, "LEADROUTER_PARTITIONS": "8"})
    assert grown.exit_code == 0, grown.output
    assert f"{prefix}marketing.form-fills: partitions raised to 8" in grown.output
    for state in ("leadrouter.internal", "leadrouter.state-changelog"):
        assert f"{prefix}{state}: 6 partitions, catalogue says 8; state is partitioned" in (
            grown.output
        )
    names = [f"{prefix}marketing.form-fills", f"{prefix}leadrouter.state-changelog"]
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:  # the broker's metadata may answer the growth late
        wait_until(
            lambda: (
                {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
                == {names[0]: 8, names[1]: 6}
            ),
            30,
            "form fills at 8 partitions, the changelog still at 6",
        )
    finally:
        admin.close()
    check = run(["topics", "check"], {**env, "LEADROUTER_PARTITIONS": "8"})
    assert check.exit_code == 1
    assert f"{prefix}leadrouter.internal: 6 partitions, catalogue says 8; state is" in (
        check.output
    )


def test_accounts_load_rejects_a_bad_file(kafka_broker, tmp_path: Path):
    bad = tmp_path / "accounts.csv"
    bad.write_text("domain,name,employees\nacme.com,Acme,lots\n")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers}
    result = CliRunner().invoke(main, ["accounts", "load", str(bad)], env=env)
    assert result.exit_code != 0
    assert f"{bad}: line 2: employees 'lots' is not a number" in result.output


def test_worker_refuses_bad_config_naming_file_and_path(tmp_path: Path):
    config = always_open_config(tmp_path / "config")
    routing = config / "routing.yaml"
    routing.write_text(routing.read_text().replace("strategy: round_robin", "strategy: luck", 1))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = subprocess.run(
        [str(LEADROUTER), "worker", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{routing}: queues.fast-lane.strategy:" in result.stderr


def test_worker_without_broker_says_what_to_set():
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    result = subprocess.run(
        [str(LEADROUTER), "worker", "--config", str(DEFAULT_CONFIG_DIR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def test_topics_check_reports_a_replication_factor_that_differs(kafka_broker, tmp_path: Path):
    """The single-node broker holds one replica of each partition; a catalogue asking for two
    is drift on every topic, told with how to fix it (`topics apply` cannot)."""
    prefix = unique("rf") + "."
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "LEADROUTER_TOPIC_PREFIX": prefix,
    }
    assert run(["topics", "apply"], env).exit_code == 0
    two = always_open_config(tmp_path / "config")
    settings = two / "settings.yaml"
    data = yaml.safe_load(settings.read_text())
    data["kafka"]["replication_factor"] = 2
    settings.write_text(yaml.safe_dump(data))
    check = run(["topics", "check", "--config", str(two)], env)
    assert check.exit_code == 1
    lines = [line for line in check.output.splitlines() if "replication factor" in line]
    assert any(
        line.startswith(f"{prefix}marketing.form-fills: replication factor 1, catalogue says 2;")
        for line in lines
    ), check.output
    assert all("kafka-reassign-partitions" in line for line in lines)
    assert len(lines) == 16, check.output  # every topic of the catalogue
    assert run(["topics", "check"], env).exit_code == 0  # with one asked for, no drift
