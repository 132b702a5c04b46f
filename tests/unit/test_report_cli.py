"""`leadrouter explain`, `report` and `replay` judge every argument before anything connects:
exit status 2, a message naming the argument and what it must be, and no Kafka client
imported (the rules of tests/unit/test_cli_args.py and test_cli_imports.py, which run the
CLI in a fresh interpreter with no broker configured).

`CASES` has the same shape as test_cli_args.CASES, so that table can take them in
(`CASES += REPORT_CASES`) and its every-argument-has-a-case check covers these commands."""

from __future__ import annotations

import pytest

from tests.unit.test_cli_imports import run_cli

SINCE_HINT = (
    "is not a time: write an ISO 8601 date or date-time (UTC unless it has an offset), a span "
    "ago such as 30s, 15m, 2h or 7d, or now; for example"
)
CASES: list[tuple[list[str], str]] = [
    (["explain"], "Error: Missing argument 'EMAIL|LEAD_ID'."),
    (
        ["explain", "jane"],
        "Error: Invalid value for 'EMAIL|LEAD_ID': 'jane' is neither an e-mail address nor a "
        "lead id: give the address the lead used (jane@acme-corp.com) or its lead id (ld_ "
        "followed by 20 hex digits)",
    ),
    (
        ["explain", "jane@", "--json"],
        "Error: Invalid value for 'EMAIL|LEAD_ID': 'jane@' is not an e-mail address",
    ),
    (
        ["explain", "jane@acme-corp.com", "--since", "yesterday"],
        f"Error: Invalid value for '--since': 'yesterday' {SINCE_HINT} --since 2h or --since "
        "2026-12-01T09:00:00Z",
    ),
    (
        ["explain", "jane@acme-corp.com", "--since", "2999-01-01"],
        "Error: --since is in the future: there is no history after now yet",
    ),
    (
        ["explain", "jane@acme-corp.com", "--config", "{missing}"],
        "Error: Invalid value for '--config': Directory '{missing}' does not exist.",
    ),
    (["report"], "Error: Missing option '--since'."),
    (
        ["report", "--since", "last week"],
        f"Error: Invalid value for '--since': 'last week' {SINCE_HINT} --since 2h or --since "
        "2026-12-01T09:00:00Z",
    ),
    (
        ["report", "--since", "1d", "--until", "soon"],
        f"Error: Invalid value for '--until': 'soon' {SINCE_HINT} --until 2h or --until "
        "2026-12-01T09:00:00Z",
    ),
    (
        ["report", "--since", "2026-11-02T10:00:00Z", "--until", "2026-11-02T09:00"],
        "Error: --until (2026-11-02T09:00:00Z) must be after --since (2026-11-02T10:00:00Z)",
    ),
    (
        ["report", "--since", "2026-11-02", "--until", "2026-11-02"],
        "Error: --until (2026-11-02T00:00:00Z) must be after --since (2026-11-02T00:00:00Z)",
    ),
    (
        ["report", "--since", "2999-01-01"],
        "Error: --since is in the future: there is no history after now yet",
    ),
    (
        ["report", "--since", "1h", "--json", "{missing}/report.json"],
        "Error: Invalid value for '--json': cannot write {missing}/report.json: the directory "
        "{missing} does not exist",
    ),
    (
        ["report", "--since", "1h", "--html", "{dir}"],
        "Error: Invalid value for '--html': File '{dir}' is a directory.",
    ),
    (
        ["report", "--since", "1h", "--config", "{file}"],
        "Error: Invalid value for '--config': Directory '{file}' is a file.",
    ),
    # replay (workers/cli.py; the engine in workers/replay.py)
    (["replay", "--config", "config"], "Error: Missing option '--since'."),
    (["replay", "--since", "1h"], "Error: Missing option '--config'."),
    (
        ["replay", "--since", "nope", "--config", "config"],
        f"Error: Invalid value for '--since': 'nope' {SINCE_HINT} --since 2h or --since "
        "2026-12-01T09:00:00Z",
    ),
    (
        ["replay", "--since", "1h", "--until", "nope", "--config", "config"],
        f"Error: Invalid value for '--until': 'nope' {SINCE_HINT} --until 2h or --until "
        "2026-12-01T09:00:00Z",
    ),
    (
        ["replay", "--since", "1h", "--config", "{missing}"],
        "Error: Invalid value for '--config': '{missing}' is not a version: give `latest` or 4 "
        "to 12 hex digits of one or a config directory, as `leadrouter config history` lists "
        "them, for example 3f2a9c0d",
    ),
    (
        ["replay", "--since", "1h", "--config", "config", "--baseline", "{file}"],
        "Error: Invalid value for '--baseline': '{file}' is not a version: give `latest` or 4 "
        "to 12 hex digits of one or a config directory, as `leadrouter config history` lists "
        "them, for example 3f2a9c0d",
    ),
    (
        ["replay", "--since", "1h", "--config", "config", "--json", "{missing}/r.json"],
        "Error: Invalid value for '--json': cannot write {missing}/r.json: the directory "
        "{missing} does not exist",
    ),
    (
        ["replay", "--since", "1h", "--config", "config", "--html", "{missing}/r.html"],
        "Error: Invalid value for '--html': cannot write {missing}/r.html: the directory "
        "{missing} does not exist",
    ),
    (
        ["replay", "--since", "1h", "--config", "config", "--sample", "-1"],
        "Error: Invalid value for '--sample': -1 is too small: the number of changed leads "
        "shown must be a whole number, from 0 to 10000 leads; for example --sample 20",
    ),
    (
        ["replay", "--since", "1h", "--config", "config", "--store", "cloud"],
        "Error: Invalid value for '--store': 'cloud' is not one of 'auto', 'memory', 'disk'.",
    ),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("args")
    (base / "a-file").write_text("not a directory\n")
    return {"missing": str(base / "missing"), "file": str(base / "a-file"), "dir": str(base)}


@pytest.mark.parametrize(
    "args",
    [
        ["explain", "Jane@Acme-Corp.com", "--since", "7d", "--json"],
        ["explain", "ld_0123456789abcdef0123"],
        ["report", "--since", "2026-11-01", "--until", "now", "--json", "{dir}/r.json"],
    ],
    ids=lambda a: " ".join(a),
)
def test_good_arguments_go_on_to_the_broker_check(paths: dict[str, str], args: list[str]) -> None:
    """With valid arguments the command goes on and (no broker configured) stops there,
    exit 1, still without a Kafka client imported."""
    code, loaded, stderr = run_cli(*[a.format(**paths) for a in args])
    assert (code, loaded) == (1, [])
    assert "no Kafka broker configured" in stderr
