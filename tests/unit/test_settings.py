"""Config validation: every problem named with file, path and what is wrong; nothing
in config is ever evaluated or constructed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from workers.cli import main
from workers.settings import DEFAULT_CONFIG_DIR, ConfigError, load_config


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, target)
    return target


def edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(directory, env={})
    return [str(p) for p in err.value.problems]


def test_shipped_config_is_valid_and_realistic():
    config = load_config(env={})
    assert len(config.routing.queues) >= 4
    assert len(config.reps.reps) >= 12
    zones = {r.timezone for r in config.reps.reps.values()}
    assert len(zones) >= 5
    assert any(r.out_of_office for r in config.reps.reps.values())
    strategies = {q.strategy for q in config.routing.queues.values()}
    assert strategies == {"round_robin", "weighted", "least_loaded"}


def test_unknown_key_names_file_and_path(config_dir: Path):
    edit(config_dir / "routing.yaml", lambda d: d["queues"]["smb"].update(stratgy="x"))
    found = problems(config_dir)
    assert any(
        p.startswith(str(config_dir / "routing.yaml")) and "queues.smb.stratgy" in p for p in found
    ), found


def test_wrong_types_and_values(config_dir: Path):
    edit(config_dir / "reps.yaml", lambda d: d["reps"]["ana.silva"].update(daily_capacity="lots"))
    edit(config_dir / "reps.yaml", lambda d: d["reps"]["ben.carter"].update(timezone="Mars/Base"))
    edit(config_dir / "scoring.yaml", lambda d: d["engagement"].update(half_life_days=0))
    found = "\n".join(problems(config_dir))
    assert "reps.ana.silva.daily_capacity" in found
    assert "reps.ben.carter.timezone" in found and "unknown time zone" in found
    assert "engagement.half_life_days" in found


def test_rule_errors_point_into_the_rule(config_dir: Path):
    def bad(d):
        d["rules"][1]["when"]["all"][0] = {"field": "x", "matches": "(unclosed"}
        d["rules"][2]["queue"] = "nowhere"

    edit(config_dir / "routing.yaml", bad)
    found = "\n".join(problems(config_dir))
    assert "rules[1].when.all[0]" in found and "invalid pattern" in found
    assert "unknown queue 'nowhere'" in found


def test_unknown_rep_in_queue(config_dir: Path):
    edit(config_dir / "routing.yaml", lambda d: d["queues"]["smb"]["reps"].append("ghost"))
    assert any("queues.smb.reps[2]" in p and "ghost" in p for p in problems(config_dir))


def test_yaml_tags_that_construct_objects_are_refused(config_dir: Path, tmp_path: Path):
    marker = tmp_path / "pwned"
    (config_dir / "settings.yaml").write_text(
        f"log_level: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    found = problems(config_dir)
    assert any("settings.yaml" in p and "not valid YAML" in p for p in found)
    assert not marker.exists()


def test_missing_file_and_broken_yaml(config_dir: Path):
    (config_dir / "reps.yaml").unlink()
    (config_dir / "scoring.yaml").write_text("mql_threshold: [1,\n")
    found = problems(config_dir)
    assert any("reps.yaml" in p and "file not found" in p for p in found)
    assert any("scoring.yaml: line" in p for p in found)


def test_environment_overrides_settings(config_dir: Path):
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1234",
        "LEADROUTER_TOPIC_PREFIX": "staging.",
        "LEADROUTER_METRICS_PORT": "9999",
        "LEADROUTER_DATA_DIR": "/tmp/lr",
        "LEADROUTER_KAFKA_SASL_PASSWORD": "s3cret",
    }
    s = load_config(config_dir, env=env).settings
    assert s.kafka.bootstrap_servers == "127.0.0.1:1234"
    assert s.kafka.topic_prefix == "staging."
    assert s.metrics.port == 9999
    assert s.store.data_dir == "/tmp/lr"
    assert "s3cret" not in repr(s)  # secrets never print
    bad = load_config.__wrapped__ if hasattr(load_config, "__wrapped__") else load_config
    with pytest.raises(ConfigError) as err:
        bad(config_dir, env={"LEADROUTER_METRICS_PORT": "not-a-port"})
    assert any("metrics.port" in str(p) for p in err.value.problems)


def test_an_empty_section_takes_its_environment_override(config_dir: Path):
    """`store:` left empty in the file, its data directory from the environment: the
    override fills the section (it raised a TypeError before)."""
    text = (config_dir / "settings.yaml").read_text()
    data = yaml.safe_load(text)
    data["store"] = None
    data["kafka"] = None
    (config_dir / "settings.yaml").write_text(yaml.safe_dump(data))
    env = {"LEADROUTER_DATA_DIR": "/tmp/lr", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1234"}
    s = load_config(config_dir, env=env).settings
    assert s.store.data_dir == "/tmp/lr"
    assert s.kafka.bootstrap_servers == "127.0.0.1:1234"
    # without the environment, the empty section is still reported in words
    assert any("store:" in p and "empty" in p for p in problems(config_dir))


def test_config_check_command_exits_non_zero_with_every_problem(config_dir: Path):
    runner = CliRunner()
    ok = runner.invoke(main, ["config", "check", str(DEFAULT_CONFIG_DIR)])
    assert ok.exit_code == 0 and "ok:" in ok.output
    # named with --config as every other command takes it: the same judgement
    result = runner.invoke(main, ["config", "check", "--config", str(config_dir)])
    assert result.exit_code == 0 and f"ok: {config_dir}:" in result.output
    edit(config_dir / "routing.yaml", lambda d: d.update(default_queue="nope", extra=1))
    result = runner.invoke(main, ["config", "check", str(config_dir)])
    assert result.exit_code == 1
    assert "routing.yaml: extra:" in result.output
    flagged = runner.invoke(main, ["config", "check", "--config", str(config_dir)])
    assert flagged.exit_code == 1 and flagged.output == result.output
    assert "default_queue 'nope' is not a queue" in result.output


def test_retired_setting_is_ignored_with_a_warning_naming_file_and_path(config_dir: Path):
    """`ingest.batch_timeout_ms` never had an effect and is gone; a file written for an older
    version still loads (an upgrade must not fail on it), with a warning, not an error."""
    assert load_config(config_dir, env={}).warnings == ()
    edit(config_dir / "settings.yaml", lambda d: d["ingest"].update(batch_timeout_ms="any"))
    config = load_config(config_dir, env={})
    assert "batch_timeout_ms" not in type(config.settings.ingest).model_fields
    assert config.settings.ingest.batch_size == 2000
    [warning] = config.warnings
    assert (warning.file, warning.path) == (
        str(config_dir / "settings.yaml"),
        "ingest.batch_timeout_ms",
    )
    assert "retired setting, ignored" in warning.message
    ok = CliRunner().invoke(main, ["config", "check", str(config_dir)])
    assert ok.exit_code == 0 and "ok:" in ok.output
    assert f"warning: {warning}" in ok.output


def test_unknown_keys_beside_a_retired_one_are_still_errors(config_dir: Path):
    edit(
        config_dir / "settings.yaml",
        lambda d: d["ingest"].update(batch_timeout_ms=20, batch_timeout=20),
    )
    found = problems(config_dir)
    assert found == [
        f"{config_dir / 'settings.yaml'}: ingest.batch_timeout: unknown key 'batch_timeout' "
        "(did you mean 'batch_size'?). Expected one of the keys of the input limits (ingest): "
        "max_event_bytes or batch_size; for example: ingest: "
        "{max_event_bytes: 65536, batch_size: 2000}"
    ]


def test_sasl_without_its_mechanism_is_refused(config_dir: Path):
    """Accepted, it would fail only at the first connection: librdkafka falls back to
    GSSAPI. The credentials may come later, from a secret."""
    sasl = {"LEADROUTER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    with pytest.raises(ConfigError) as err:
        load_config(config_dir, env=sasl)
    (problem,) = [str(p) for p in err.value.problems]
    assert problem.startswith(
        f"{config_dir / 'settings.yaml'}: kafka.sasl_mechanism: security_protocol SASL_SSL "
        "needs sasl_mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    full = {**sasl, "LEADROUTER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}
    assert load_config(config_dir, env=full).settings.kafka.sasl_mechanism == "SCRAM-SHA-512"


def test_the_lead_fields_are_those_routing_gives_its_rules():
    from workers.core.route import facts
    from workers.settings import LEAD_FIELDS

    lead = {"score": {"total": 1.0, "fit": 0.0, "engagement": 1.0, "grade": "D"}}
    assert sorted(facts(lead, {}, None, "mql")) == sorted(LEAD_FIELDS)


def test_a_rule_on_a_field_no_lead_has_is_refused_by_check_but_runs(config_dir: Path):
    """A typo in a field name made a test that answers alike for every lead. `config check` (and so
    `publish`, and replay's candidate) refuses it; loaded as a published version from before
    this check, it runs as it did, with a warning."""

    def typo(routing):
        routing["rules"][1]["when"] = {"any": [{"field": "regoin", "eq": "AMER"}]}

    edit(config_dir / "routing.yaml", typo)
    config = load_config(config_dir, env={})
    (never,) = config.never_match
    assert never in config.warnings
    assert str(never).startswith(
        f"{config_dir / 'routing.yaml'}: rules[1].when.any[0].field: unknown lead field "
        "'regoin' (did you mean region?): no lead has it, so this test answers alike for every "
        "lead"
    )
    result = CliRunner().invoke(main, ["config", "check", str(config_dir)])
    assert result.exit_code == 1
    assert str(never) in result.output and "1 problem" in result.output


def test_every_key_has_its_environment_variable(config_dir: Path):
    """LEADROUTER_ and the key's path: lists as a,b, mappings as YAML; the documented short
    names (LEADROUTER_TOPIC_PREFIX) still work and win; a bad value names its variable."""
    env = {
        "LEADROUTER_KAFKA_REPLICATION_FACTOR": "3",
        "LEADROUTER_INGEST_MAX_EVENT_BYTES": "1000",
        "LEADROUTER_KAFKA_TOPIC_PREFIX": "generated.",
        "LEADROUTER_DEDUPE_WINDOW": "5",
        "LEADROUTER_KAFKA_STATIC_MEMBERSHIP": "false",
        "LEADROUTER_COMPETITOR_DOMAINS": "rival.com, other-rival.io",
        "LEADROUTER_METRICS_SOURCES": "[google, meta]",
        "LEADROUTER_REGIONS_OVERRIDES": "{MX: AMER, TR: EMEA}",
        "LEADROUTER_PERSONAL_DATA_EXPIRE_AFTER_DAYS": "90",
    }
    s = load_config(config_dir, env=env).settings
    assert s.kafka.replication_factor == 3 and s.ingest.max_event_bytes == 1000
    assert s.kafka.topic_prefix == "generated." and s.dedupe_window == 5
    assert s.kafka.static_membership is False
    assert s.competitor_domains == ("rival.com", "other-rival.io")
    assert s.metrics.sources == ("google", "meta")
    assert s.regions.overrides == {"MX": "AMER", "TR": "EMEA"}
    assert s.personal_data.expire_after_days == 90
    documented = {**env, "LEADROUTER_TOPIC_PREFIX": "documented."}
    assert load_config(config_dir, env=documented).settings.kafka.topic_prefix == "documented."
    with pytest.raises(ConfigError) as err:
        load_config(config_dir, env={"LEADROUTER_KAFKA_REPLICATION_FACTOR": "three"})
    (problem,) = [str(p) for p in err.value.problems]
    assert "LEADROUTER_KAFKA_REPLICATION_FACTOR" in problem and "three" in problem


def test_variables_of_keys_a_published_version_decides_are_named():
    """Only the process's own keys (how it connects, stores, logs) stay its own under a
    published version; a variable for any other key is named, so nobody believes it runs."""
    from workers.settings import unpublished_overrides

    env = {
        "LEADROUTER_DEDUPE_WINDOW": "5",
        "LEADROUTER_EXPIRE_AFTER_DAYS": "90",
        "LEADROUTER_KAFKA_REPLICATION_FACTOR": "3",
        "LEADROUTER_DATA_DIR": "/tmp/lr",
        "LEADROUTER_COMPETITOR_DOMAINS": "",  # empty: not set
    }
    assert unpublished_overrides(env) == [
        "LEADROUTER_DEDUPE_WINDOW",
        "LEADROUTER_EXPIRE_AFTER_DAYS",
    ]
