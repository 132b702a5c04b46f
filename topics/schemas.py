"""JSON Schemas (draft 2020-12) of every public topic's value, generated from `topics.public`.

The types are the source; the files in `topics/schemas/` are generated from them and
committed, so that a consuming team can validate what it reads without importing Python:

    python -m topics.schemas          # (re)write topics/schemas/*.schema.json
    python -m topics.schemas --check  # exit 1 when a committed file differs from the types

`leads.deadletter` has no schema: it carries the original bytes unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from topics import catalogue as cat
from topics.public import PUBLIC_VALUES

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_DIR = Path(__file__).with_name("schemas")
SUFFIX = ".schema.json"
# Field metadata in `topics.public` that is JSON Schema vocabulary (pydantic does not read
# dataclass field metadata, so it is carried over here).
KEYWORDS = ("format", "pattern", "description")


def file_name(topic: str) -> str:
    """`leads.routed.<queue>` (one schema for every queue) -> `leads.routed.schema.json`."""
    if topic.startswith(cat.ROUTED_PREFIX):
        return cat.ROUTED_PREFIX.rstrip(".") + SUFFIX
    return topic + SUFFIX


def _dataclasses_in(cls: type) -> dict[str, type]:
    """Every dataclass reachable from `cls` through its field types, by name (as in $defs)."""
    found: dict[str, type] = {}

    def visit(tp: Any) -> None:
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            if tp.__name__ not in found:
                found[tp.__name__] = tp
                for hint in typing.get_type_hints(tp).values():
                    visit(hint)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    visit(cls)
    return found


def _apply_metadata(node: dict[str, Any], cls: type) -> None:
    """Copy `format`/`pattern`/`description` from field metadata onto the property; on a
    nullable property, onto its non-null branch (null carries no format)."""
    for f in dataclasses.fields(cls):
        extra = {k: v for k, v in f.metadata.items() if k in KEYWORDS}
        if not extra:
            continue
        prop = node["properties"][f.name]
        branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
        for branch in branches:
            branch.update(extra)


def generate(topic: str) -> dict[str, Any]:
    """The JSON Schema of `topic`'s value (a contract name from `PUBLIC_VALUES`)."""
    root = PUBLIC_VALUES[topic]
    body = TypeAdapter(root).json_schema(mode="validation")
    defs = body.get("$defs", {})
    for name, cls in _dataclasses_in(root).items():
        _apply_metadata(body if cls is root else defs[name], cls)
    head = {
        "$schema": DRAFT,
        "title": body.pop("title"),
        "description": body.pop("description", ""),
        "$comment": (
            f"Value of the Kafka topic `{topic}` (UTF-8 JSON). Generated from "
            "topics/public.py by `python -m topics.schemas`; do not edit."
        ),
    }
    return {**head, **body}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generate_all() -> dict[str, str]:
    """{file name: file text} for every public topic."""
    return {file_name(topic): render(generate(topic)) for topic in PUBLIC_VALUES}


def load(topic: str) -> dict[str, Any]:
    """The shipped schema of a public topic, e.g. `sales.activities` or
    `leads.routed.fast-lane` (without the deployment's topic prefix)."""
    name = file_name(topic)
    if name not in {file_name(t) for t in PUBLIC_VALUES}:
        raise KeyError(f"no schema for topic {topic!r}")
    text = resources.files("topics").joinpath("schemas", name).read_text(encoding="utf-8")
    return json.loads(text)


def differences(directory: Path = SCHEMA_DIR) -> list[str]:
    """Files in `directory` that are missing, stale or left over, compared to the types."""
    want = generate_all()
    have = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*" + SUFFIX)}
    out = [f"{n}: missing" for n in sorted(want) if n not in have]
    out += [
        f"{n}: differs from the types" for n in sorted(want) if n in have and have[n] != want[n]
    ]
    out += [f"{n}: no public topic has this schema" for n in sorted(set(have) - set(want))]
    return out


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    """Write every schema; remove files no public topic has any more. Returns what changed."""
    changed = differences(directory)
    directory.mkdir(parents=True, exist_ok=True)
    want = generate_all()
    for name, text in want.items():
        (directory / name).write_text(text, encoding="utf-8")
    for path in directory.glob("*" + SUFFIX):
        if path.name not in want:
            path.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topics.schemas", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files differ")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check:
        problems = differences(args.dir)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run `python -m topics.schemas` and commit the result", file=sys.stderr)
        return 1 if problems else 0
    for line in write(args.dir) or ["up to date"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
