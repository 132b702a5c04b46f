"""Every argument of every `leadrouter` command is judged before anything connects: a bad one
is refused with exit status 2 and a message naming the argument, the value and what it must
be. Each case runs the real CLI in a fresh interpreter with no broker configured (so a refusal
for want of a broker, instead of the argument, fails here) and, like test_cli_imports, checks
that no Kafka client was imported on the way."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.unit.test_cli_imports import run_cli
from tests.unit.test_report_cli import CASES as HISTORY_CASES
from workers.cli import main

# (arguments, the last line of stderr). {missing}: a path that does not exist, {file}: a
# file, {dir}: a directory. Every command and every argument it takes has at least one case.
CASES: list[tuple[list[str], str]] = [
    # the headline: a negative rate is named, before any broker is looked for
    (
        ["simulate", "--rate", "-5", "--duration", "1"],
        "Error: Invalid value for '--rate': -5 is too small: the rate must be more than 0 "
        "events per second; for example --rate 200",
    ),
    (
        ["simulate", "--rate", "0"],
        "Error: Invalid value for '--rate': 0 is too small: the rate must be more than 0 "
        "events per second; for example --rate 200",
    ),
    (
        ["simulate", "--rate", "fast"],
        "Error: Invalid value for '--rate': 'fast' is not a number: the rate must be more than "
        "0 events per second; for example --rate 200",
    ),
    (
        ["simulate", "--rate", "nan"],
        "Error: Invalid value for '--rate': 'nan' is not a finite number: the rate must be more "
        "than 0 events per second; for example --rate 200",
    ),
    (
        ["simulate", "--rate", "inf"],
        "Error: Invalid value for '--rate': 'inf' is not a finite number: the rate must be more "
        "than 0 events per second; for example --rate 200",
    ),
    (
        ["simulate", "--duration", "0"],
        "Error: Invalid value for '--duration': 0 is too small: the duration must be more than "
        "0 seconds; for example --duration 60",
    ),
    (
        ["simulate", "--duration", "-1"],
        "Error: Invalid value for '--duration': -1 is too small: the duration must be more than "
        "0 seconds; for example --duration 60",
    ),
    (
        ["simulate", "--seed", "-1"],
        "Error: Invalid value for '--seed': -1 is too small: the seed must be a whole number, 0 "
        "or more; for example --seed 7",
    ),
    (
        ["simulate", "--seed", "1.5"],
        "Error: Invalid value for '--seed': '1.5' is not a whole number: the seed must be a "
        "whole number, 0 or more; for example --seed 7",
    ),
    (
        ["simulate", "--malformed", "1.5"],
        "Error: Invalid value for '--malformed': 1.5 is too large: the share of broken events "
        "must be from 0 to 1; for example --malformed 0.01",
    ),
    (
        ["simulate", "--malformed", "-0.1"],
        "Error: Invalid value for '--malformed': -0.1 is too small: the share of broken events "
        "must be from 0 to 1; for example --malformed 0.01",
    ),
    (
        ["simulate", "--sales-delay-scale", "-1"],
        "Error: Invalid value for '--sales-delay-scale': -1 is too small: the sales delay scale "
        "must be 0 or more; for example --sales-delay-scale 0.01",
    ),
    (
        ["simulate", "--config", "{missing}"],
        "Error: Invalid value for '--config': Directory '{missing}' does not exist.",
    ),
    (["simulate", "--rate"], "Error: Option '--rate' requires an argument."),
    (
        ["demo", "--rate", "-1"],
        "Error: Invalid value for '--rate': -1 is too small: the rate must be more than 0 "
        "events per second; for example --rate 100",
    ),
    (
        ["demo", "--duration", "0"],
        "Error: Invalid value for '--duration': 0 is too small: the duration must be more than "
        "0 seconds; for example --duration 60",
    ),
    (
        ["demo", "--seed", "seven"],
        "Error: Invalid value for '--seed': 'seven' is not a number: the seed must be a whole "
        "number, 0 or more; for example --seed 7",
    ),
    (
        ["demo", "--config", "{file}"],
        "Error: Invalid value for '--config': Directory '{file}' is a file.",
    ),
    (
        ["worker", "--config", "{missing}"],
        "Error: Invalid value for '--config': Directory '{missing}' does not exist.",
    ),
    (
        ["worker", "--config", "{file}"],
        "Error: Invalid value for '--config': Directory '{file}' is a file.",
    ),
    (["worker", "--threads", "4"], "Error: No such option: --threads"),
    (["worker", "now"], "Error: Got unexpected extra argument (now)"),
    (
        ["topics", "apply", "--config", "{missing}"],
        "Error: Invalid value for '--config': Directory '{missing}' does not exist.",
    ),
    (
        ["topics", "check", "--config", "{file}"],
        "Error: Invalid value for '--config': Directory '{file}' is a file.",
    ),
    (["topics", "create"], "Error: No such command 'create'."),
    (
        ["config", "check", "{missing}"],
        "Error: Invalid value for '[DIRECTORY]': Directory '{missing}' does not exist.",
    ),
    (
        ["config", "check", "{file}"],
        "Error: Invalid value for '[DIRECTORY]': Directory '{file}' is a file.",
    ),
    (
        ["config", "check", "--config", "{missing}"],
        "Error: Invalid value for '--config': Directory '{missing}' does not exist.",
    ),
    (
        ["config", "check", "{dir}", "--config", "{other_dir}"],
        "Error: DIRECTORY {dir} and --config {other_dir} differ",
    ),
    (
        ["config", "publish", "--config", "{file}"],
        "Error: Invalid value for '--config': Directory '{file}' is a file.",
    ),
    (
        ["config", "show", "--at", "yesterday"],
        "Error: Invalid value for '--at': 'yesterday' is not a time: write it RFC 3339 with its "
        "UTC offset, for example 2026-12-01T15:00:00Z or 2026-12-01T16:00:00+01:00",
    ),
    (
        ["config", "show", "--at", "2026-12-01T15:00"],
        "Error: Invalid value for '--at': '2026-12-01T15:00' has no UTC offset, so it names a "
        "different moment in every time zone: add one, for example 2026-12-01T15:00Z or "
        "2026-12-01T15:00+01:00",
    ),
    (
        ["config", "show", "--html", "{missing}/routing.html"],
        "Error: Invalid value for '--html': cannot write {missing}/routing.html: the directory "
        "{missing} does not exist",
    ),
    (
        ["config", "show", "--html", "{dir}"],
        "Error: Invalid value for '--html': File '{dir}' is a directory.",
    ),
    (
        ["config", "show", "--config", "{missing}"],
        "Error: Invalid value for '--config': Directory '{missing}' does not exist.",
    ),
    (
        ["config", "publish", "{missing}"],
        "Error: Invalid value for '[DIRECTORY]': Directory '{missing}' does not exist.",
    ),
    (
        ["config", "publish", "--note", "x" * 201],
        "Error: Invalid value for '--note': the note must be one line of at most 200 "
        "characters (got 201); for example --note 'ben.carter on leave until Monday'",
    ),
    (
        ["config", "publish", "--note", "two\nlines"],
        "Error: Invalid value for '--note': the note must be one line of at most 200 "
        "characters (got 9, with a line break); for example --note 'ben.carter on leave "
        "until Monday'",
    ),
    (
        ["config", "publish", "--version", "abc"],
        "Error: Invalid value for '--version': 'abc' is not a version: give `latest` or 4 to 12 "
        "hex digits of one, as `leadrouter config history` lists them, for example 3f2a9c0d",
    ),
    (["forget"], "Error: Missing argument 'EMAIL|LEAD_ID'."),
    (
        ["forget", "jane", "--reason", "art. 17"],
        "Error: Invalid value for 'EMAIL|LEAD_ID': 'jane' is neither an e-mail address nor a "
        "lead id: give the address the lead used (jane@acme-corp.com) or its lead id (ld_ "
        "followed by 20 hex digits)",
    ),
    (
        ["forget", "jane@acme-corp.com", "--reason", "y" * 201],
        "Error: Invalid value for '--reason': the reason must be one line of at most 200 "
        "characters (got 201); for example --reason 'GDPR art. 17 request #123'",
    ),
    (
        ["forget", "jane@acme-corp.com", "--config", "{missing}"],
        "Error: Invalid value for '--config': Directory '{missing}' does not exist.",
    ),
    (
        ["config", "publish", "{dir}", "--version", "abcd"],
        "Error: give DIRECTORY to publish, or --version V to publish again; not both",
    ),
    (
        ["config", "history", "--json", "--config", "{missing}"],
        "Error: Invalid value for '--config': Directory '{missing}' does not exist.",
    ),
    (
        ["config", "diff", "latest", "{missing}"],
        "Error: Invalid value for 'B': '{missing}' is not a version: give `latest` or 4 to 12 "
        "hex digits of one or a config directory, as `leadrouter config history` lists them, "
        "for example 3f2a9c0d",
    ),
    (
        ["config", "diff", "nope", "latest", "--config", "{missing}"],
        "Error: Invalid value for '--config': Directory '{missing}' does not exist.",
    ),
    (["accounts", "load"], "Error: Missing argument 'FILE.csv'."),
    (
        ["accounts", "load", "{missing}"],
        "Error: Invalid value for 'FILE.csv': File '{missing}' does not exist.",
    ),
    (
        ["accounts", "load", "{dir}"],
        "Error: Invalid value for 'FILE.csv': File '{dir}' is a directory.",
    ),
    (
        ["accounts", "load", "{file}", "--config", "{missing}"],
        "Error: Invalid value for '--config': Directory '{missing}' does not exist.",
    ),
    (["route"], "Error: No such command 'route'."),
]
CASES += HISTORY_CASES  # explain and report: tests/unit/test_report_cli.py


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("args")
    (base / "a-file").write_text("not a directory\n")
    (base / "other").mkdir()
    return {
        "missing": str(base / "missing"),
        "file": str(base / "a-file"),
        "dir": str(base),
        "other_dir": str(base / "other"),
    }


def _leaf(args: list[str]) -> tuple[click.Command, str, list[str]]:
    command: click.Command = main
    path, rest = [], list(args)
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest[0]]
        path.append(rest.pop(0))
    return command, " ".join(path), rest


def _every_parameter(group: click.Group, prefix: str = "") -> set[tuple[str, str]]:
    out = set()
    for name, command in group.commands.items():
        path = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            out |= _every_parameter(command, path)
        else:
            out |= {(path, p.name or "") for p in command.params if p.name != "help"}
    return out


def test_every_argument_of_every_command_has_a_case() -> None:
    """A new command or option without a refusal case in the table fails here."""
    covered = set()
    for args, _ in CASES:
        command, path, rest = _leaf(args)
        if isinstance(command, click.Group):
            continue
        context = click.Context(command, info_name=path, resilient_parsing=True)
        try:
            _, _, given = command.make_parser(context).parse_args(rest)
        except click.UsageError:  # e.g. an option without its value
            continue
        covered |= {(path, p.name or "") for p in given}
    assert _every_parameter(main) - covered == set()


@pytest.mark.parametrize(("args", "says"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_a_bad_argument_is_refused_before_anything_connects(
    paths: dict[str, str], args: list[str], says: str
) -> None:
    argv = [a.format(**paths) for a in args]
    code, loaded, stderr = run_cli(*argv)
    assert code == 2, stderr
    assert stderr.splitlines()[-1] == says.format(**paths)
    assert "broker" not in stderr
    assert loaded == [], f"`leadrouter {' '.join(args)}` imported {loaded}"


def test_a_good_argument_passes_to_the_broker_check(paths: dict[str, str]) -> None:
    """The other side: with valid arguments the same command goes on, and (no broker being
    configured) stops at the broker, exit 1, still without a Kafka client imported."""
    code, loaded, stderr = run_cli("simulate", "--rate", "5", "--duration", "1", "--seed", "0")
    assert (code, loaded) == (1, [])
    assert "no Kafka broker configured" in stderr
    code, loaded, stderr = run_cli("topics", "check")
    assert (code, loaded) == (1, [])
    assert "no Kafka broker configured" in stderr


def test_an_unreadable_accounts_file_is_refused_before_anything_connects(tmp_path: Path) -> None:
    """The CSV's content is judged before a client is built: no broker is configured here, so
    a refusal about the broker would mean the file was read too late. (Reading it needs
    workers.admin, which imports kafka-python; nothing connects.)"""
    bad = tmp_path / "accounts.csv"
    bad.write_text("domain,name,employees\nacme.com,Acme,lots\n")
    result = CliRunner().invoke(
        main, ["accounts", "load", str(bad)], env={"KAFKA_BOOTSTRAP_SERVERS": ""}
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for 'FILE.csv': {bad}: line 2: employees 'lots' is not a number"
    )
    no_header = tmp_path / "no-header.csv"
    no_header.write_text("acme.com,Acme\n")
    result = CliRunner().invoke(
        main, ["accounts", "load", str(no_header)], env={"KAFKA_BOOTSTRAP_SERVERS": ""}
    )
    assert result.exit_code == 2
    assert "header must include domain and name" in result.stderr


@pytest.mark.parametrize("command", [["topics", "check"], ["topics", "apply"]])
def test_a_broker_that_does_not_answer_is_said_in_one_line(monkeypatch, command) -> None:
    """Not a traceback: the address, how long it waited and the client's own words."""
    from workers import admin
    from workers.embedded import free_port

    monkeypatch.setattr(admin, "ADMIN_DEADLINE", 1.0)
    address = f"127.0.0.1:{free_port()}"  # nobody listens there
    result = CliRunner().invoke(main, command, env={"KAFKA_BOOTSTRAP_SERVERS": address})
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: no answer from the broker at {address} within 1 s ("), last
    assert "Traceback" not in result.output


def test_simulate_told_to_stop_while_the_broker_is_away_stops(monkeypatch) -> None:
    """Ctrl-C while it waits for a broker that does not answer: it ends there, with nothing
    sent (without the stop it would wait out the admin deadline and fail)."""
    import threading

    from workers import admin
    from workers.embedded import free_port
    from workers.settings import load_config
    from workers.simulate import run_simulation

    monkeypatch.setattr(admin, "ADMIN_DEADLINE", 2.0)
    config = load_config(env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"})
    stop = threading.Event()
    stop.set()
    counts = run_simulation(config, rate=10, duration=60, stop=stop)
    assert counts == {"marketing": 0, "sales": 0, "routed_seen": 0}
