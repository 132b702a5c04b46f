"""The Faust Record models of `topics.records` against the contract's dataclasses: the same
fields in the same order, required exactly where the contract cannot do without a value,
nested models as Records; and what they read and write is the contract's JSON."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict
from datetime import UTC, datetime

import faust
import orjson
import pytest
from jsonschema import Draft202012Validator

from tests.support.desk import Pipeline
from topics import public, records, schemas
from workers.settings import load_config

CONFIG = load_config(env={})
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC).timestamp()
CONTRACT = {
    name: cls
    for name, cls in vars(public).items()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == public.__name__
}


def nullable(tp: object) -> bool:
    return typing.get_origin(tp) in (types.UnionType, typing.Union) and type(None) in (
        typing.get_args(tp)
    )


def test_every_contract_dataclass_has_its_record():
    assert set(CONTRACT) <= set(records.__all__)
    assert {t: r.__name__ for t, r in records.RECORDS.items()} == {
        t: c.__name__ for t, c in public.PUBLIC_VALUES.items()
    }


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_record_fields_follow_the_dataclass(name: str):
    cls, record = CONTRACT[name], getattr(records, name)
    assert issubclass(record, faust.Record)
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    descriptors = record._options.descriptors
    assert list(descriptors) == [f.name for f in fields]
    for f in fields:
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        # Faust makes every nullable field optional (default None): a Record requires a
        # field exactly when the contract requires it and null is not a value of it.
        assert descriptors[f.name].required == (no_default and not nullable(hints[f.name])), f
        inner = typing.get_args(hints[f.name])[0] if nullable(hints[f.name]) else hints[f.name]
        if dataclasses.is_dataclass(inner):
            assert records.record_of(inner) is getattr(records, inner.__name__)


def routed() -> list[dict]:
    line = Pipeline(CONFIG, NOW)
    at = datetime.fromtimestamp(NOW, UTC).isoformat()
    line.send(
        "form_fill",
        {"event_id": "f1", "occurred_at": at, "email": "ann@acme.com", "form_id": "demo-request"},
    )
    line.send(
        "email_event",
        {"event_id": "e1", "occurred_at": at, "email": "ann@acme.com", "type": "reply"},
    )
    return [lead for _, _, lead in line.published]


def test_routed_leads_read_as_nested_records():
    assigned, activity = (records.RoutedLead.from_data(dict(v)) for v in routed())
    assert assigned.event == "lead.assigned" and assigned.activity is None
    assert isinstance(assigned.score, records.Score) and assigned.score.grade in "ABCD"
    assert isinstance(assigned.company, records.Company)
    assert isinstance(assigned.reason, records.Reason) and assigned.reason.trace
    assert isinstance(activity.activity, records.Activity)
    assert activity.activity.type == "reply"


def test_extra_fields_are_kept_and_ignored():
    value = {**routed()[0], "added_later": {"x": 1}}
    lead = records.RoutedLead.from_data(value)
    assert lead.added_later == {"x": 1}
    assert "added_later" not in orjson.loads(lead.dumps())


def test_records_write_the_contracts_json():
    """What a Faust app sends is the contract's JSON: no Faust metadata, valid by schema."""
    sent = records.SalesActivity(
        event_id="a1",
        occurred_at="2026-11-25T15:01:00Z",
        lead_id="ld_1",
        type="contacted",
        rep_id="ana.silva",
    )
    value = orjson.loads(sent.dumps())
    assert value == {**asdict(public.SalesActivity(**value))}
    assert "__faust" not in value
    check = Draft202012Validator(schemas.load("sales.activities"))
    assert list(check.iter_errors(value)) == []
    # Faust writes a nullable field the value lacks as null (`previous_rep_id`, only on
    # lead.reassigned): the same object to any reader of the contract.
    written = orjson.loads(records.RoutedLead.from_data(dict(routed()[1])).dumps())
    assert written == {**routed()[1], "previous_rep_id": None}
