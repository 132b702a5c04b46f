"""`--since/--until` as an operator writes them: dates, date-times, spans ago, `now`; anything
else refused with exit status 2 and what is accepted. No broker."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import pytest
from click.testing import CliRunner

from workers.history import Moment, check_stretch, parse_moment

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("30s", NOW - 30),
        ("15m", NOW - 900),
        ("2h", NOW - 7200),
        ("7d", NOW - 7 * 86400),
        ("1w", NOW - 7 * 86400),
        ("1.5h", NOW - 5400),
        ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC).timestamp()),
        ("2026-11-30T09:15:00", datetime(2026, 11, 30, 9, 15, tzinfo=UTC).timestamp()),
        ("2026-11-30T09:15:00Z", datetime(2026, 11, 30, 9, 15, tzinfo=UTC).timestamp()),
        ("2026-11-30 09:15", datetime(2026, 11, 30, 9, 15, tzinfo=UTC).timestamp()),
        ("2026-11-30T10:15:00+01:00", datetime(2026, 11, 30, 9, 15, tzinfo=UTC).timestamp()),
    ],
)
def test_accepted_moments(text: str, expected: float) -> None:
    assert parse_moment(text, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2h ago", "-2h", "2026-13-01", "12:00", "2x", "1e3s", "h"]
)
def test_refused_moments(text: str) -> None:
    assert parse_moment(text, now=NOW) is None


@click.command()
@click.option("--since", type=Moment(), required=True)
@click.option("--until", type=Moment(), default=None)
def _stretch(since: float, until: float | None) -> None:
    check_stretch(since, until)
    click.echo(f"{since:.0f} {until}")


def test_refusal_says_what_is_accepted_and_exits_2() -> None:
    result = CliRunner().invoke(_stretch, ["--since", "yesterday"])
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last == (
        "Error: Invalid value for '--since': 'yesterday' is not a time: write an ISO 8601 "
        "date or date-time (UTC unless it has an offset), a span ago such as 30s, 15m, 2h or "
        "7d, or now; for example --since 2h or --since 2026-12-01T09:00:00Z"
    )


def test_until_not_after_since_exits_2() -> None:
    result = CliRunner().invoke(
        _stretch, ["--since", "2026-12-01T10:00:00Z", "--until", "2026-12-01"]
    )
    assert result.exit_code == 2
    assert (
        "--until (2026-12-01T00:00:00Z) must be after --since (2026-12-01T10:00:00Z)"
        in result.output
    )
    same = CliRunner().invoke(_stretch, ["--since", "2026-12-01", "--until", "2026-12-01"])
    assert same.exit_code == 2


def test_a_good_stretch_passes() -> None:
    result = CliRunner().invoke(_stretch, ["--since", "2026-11-01", "--until", "now"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{datetime(2026, 11, 1, tzinfo=UTC).timestamp():.0f} ")


def test_metadata_is_asked_again_while_the_broker_says_it_may_answer_later():
    """A partition of a topic created a moment ago may have no leader yet
    (NOT_LEADER_FOR_PARTITION, retriable): planning asks again instead of failing."""
    from confluent_kafka import KafkaError, KafkaException

    from workers.history import _answered

    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaException(
                KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION, "no leader yet", retriable=True)
            )
        return "offsets"

    assert _answered(flaky) == "offsets" and len(calls) == 3

    def refused() -> str:
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "no"))

    calls.clear()
    with pytest.raises(KafkaException):
        _answered(refused)
    assert len(calls) == 1  # not retriable: said at once
