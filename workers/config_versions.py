"""Configuration as versioned data: the record `leadrouter config publish` writes to the
compacted `reference.config` topic, and how a worker judges one before running it.

A record is keyed by its version and holds the four files' texts as written (comments
and all, so `config diff` shows what a person changed), with when, who and why:

    {"format": 1, "version": "3f2a9c0d1b7e", "published_at": 1796000000.123,
     "note": "Maya on leave", "publisher": "ops@laptop", "files": {"settings.yaml": ...}}

The version is the content hash of the files (`settings.config_version`), so a worker on
local files and a worker on the same files published report the same version. A record is
refused, never run, when it is not JSON, comes from a newer format, does not match its
own hash (corrupt or hand-edited) or fails the validation `config check` applies.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from workers.settings import (
    CONFIG_FILES,
    Config,
    ConfigError,
    config_from_texts,
    config_version,
    with_process_settings,
)

FORMAT = 1
# Why a record was refused: the `reason` label of leadrouter_config_refused_total.
NOT_JSON, NEWER_FORMAT, CORRUPT, INVALID = "not_json", "newer_format", "corrupt", "invalid"
REFUSED_REASONS = (NOT_JSON, NEWER_FORMAT, CORRUPT, INVALID)
LATEST = "latest"


@dataclass(frozen=True)
class Published:
    """One published version, as read back from the topic."""

    version: str
    published_at: float
    note: str
    publisher: str
    files: Mapping[str, str]
    offset: int = -1

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.published_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Refused(Exception):
    """A record on the configuration topic this worker will not run: `reason` is one of
    REFUSED_REASONS, `detail` what is wrong, in the words of `config check` when invalid."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def record(config: Config, *, note: str, publisher: str, at: float) -> bytes:
    """The record value that publishes `config` (validated: it was loaded)."""
    return _record(config.version, config.texts, note, publisher, at)


def republished(earlier: Published, *, note: str, publisher: str, at: float) -> bytes:
    """An earlier version published again (a rollback): the same files, a new time."""
    return _record(earlier.version, earlier.files, note, publisher, at)


def _record(version: str, files: Mapping[str, str], note: str, publisher: str, at: float) -> bytes:
    return orjson.dumps(
        {
            "format": FORMAT,
            "version": version,
            "published_at": round(at, 3),
            "note": note,
            "publisher": publisher,
            "files": {name: files[name] for name in CONFIG_FILES},
        }
    )


def read_record(value: bytes | None, offset: int = -1) -> Published:
    """The published version a record holds; `Refused` when it is not one this release
    can trust: not JSON, a newer format, or files that do not hash to its version."""
    try:
        obj: Any = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise Refused(NOT_JSON, f"not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise Refused(CORRUPT, "not a JSON object")
    form = obj.get("format")
    if isinstance(form, int) and form > FORMAT:
        raise Refused(
            NEWER_FORMAT,
            f"written in format {form} by a newer release; this worker reads format {FORMAT}",
        )
    files = obj.get("files")
    if form != FORMAT or not isinstance(files, dict):
        raise Refused(CORRUPT, f"no format {FORMAT} record (format {form!r}, files missing)")
    missing = [n for n in CONFIG_FILES if not isinstance(files.get(n), str)]
    if missing:
        raise Refused(CORRUPT, f"files missing: {', '.join(missing)}")
    version = obj.get("version")
    actual = config_version(files)
    if version != actual:
        raise Refused(CORRUPT, f"the files hash to {actual}, not to its version {version!r}")
    at = obj.get("published_at")
    return Published(
        version=actual,
        published_at=float(at) if isinstance(at, int | float) else 0.0,
        note=str(obj.get("note") or ""),
        publisher=str(obj.get("publisher") or ""),
        files={n: files[n] for n in CONFIG_FILES},
        offset=offset,
    )


def origin(topic: str, version: str) -> Path:
    """How errors name a published version's files: `reference.config@<version>/routing.yaml`."""
    return Path(f"{topic}@{version}")


def checked(published: Published, topic: str) -> Config:
    """The published version validated as `config check` does, or `Refused(INVALID)`
    listing every problem."""
    try:
        return config_from_texts(
            published.files, origin(topic, published.version), env={}, connects=False
        )
    except ConfigError as exc:
        raise Refused(INVALID, "; ".join(str(p) for p in exc.problems)) from None


def runnable(published: Published, local: Config, topic: str) -> Config:
    """The published version as this process would run it (its process settings kept)."""
    return with_process_settings(checked(published, topic), local.settings)


def find(versions: Iterable[Published], ref: str) -> Published:
    """`ref`: `latest`, or a version or a unique prefix of one (4 characters or more).
    LookupError says why none matched."""
    versions = list(versions)
    if not versions:
        raise LookupError("no configuration has been published yet")
    if ref == LATEST:
        return versions[-1]
    if len(ref) < 4:
        raise LookupError(f"{ref!r}: give at least 4 characters of a version")
    matches = {p.version: p for p in versions if p.version.startswith(ref.lower())}
    if not matches:
        raise LookupError(f"no published version {ref!r} (see `leadrouter config history`)")
    if len(matches) > 1:
        raise LookupError(f"{ref!r} names {len(matches)} versions: {', '.join(sorted(matches))}")
    return matches.popitem()[1]


def diff(a: Mapping[str, str], b: Mapping[str, str], a_name: str, b_name: str) -> list[str]:
    """What changed from `a` to `b`, file by file (unified diff lines, no newlines)."""
    out: list[str] = []
    for name in CONFIG_FILES:
        old, new = a.get(name, ""), b.get(name, "")
        if old == new:
            continue
        out += difflib.unified_diff(
            old.splitlines(),
            new.splitlines(),
            f"{a_name}/{name}",
            f"{b_name}/{name}",
            lineterm="",
        )
    return out
