"""Faust `Record` models of the public contract, for sales teams' own Faust apps.

    import faust
    from topics.records import RoutedLead, SalesActivity, read_committed

    app = read_committed(faust.App("acme-sales", broker="kafka://broker:9092"))
    leads = app.topic("leads.routed.fast-lane", value_type=RoutedLead)

Every model is derived from the dataclass of the same name in `topics.public` when this
module is imported (same fields, same order, same types, nested dataclasses as nested
Records), so the models cannot drift from the contract or from its JSON Schemas. Two
differences are Faust's own: a field whose type allows null is optional in a Record (Faust
gives every `X | None` field the default None), and fields a record carries beyond the
model are kept as attributes and otherwise ignored, as the contract asks of consumers.
Records serialize as plain JSON objects (no Faust metadata), so what a team sends on
`sales.activities` is exactly the contract's SalesActivity.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from typing import Any

import faust
from faust.transport.drivers import aiokafka as _driver

from topics import public

__all__ = [
    "RECORDS",
    "Account",
    "Activity",
    "AdClick",
    "Company",
    "Consent",
    "EmailEvent",
    "FormFill",
    "Reason",
    "RoutedLead",
    "SalesActivity",
    "Score",
    "Source",
    "Utm",
    "read_committed",
    "record_of",
]

_derived: dict[type, type[faust.Record]] = {}


def _faust_type(tp: Any) -> Any:
    """The Record-side type of a dataclass field type: dataclasses become their Records,
    inside `X | None`, `list[...]` and `dict[...]` too; everything else is kept."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return record_of(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return typing.Union[tuple(_faust_type(a) for a in args)]  # noqa: UP007
    if origin is list:
        return list[_faust_type(args[0])]
    if origin is dict:
        return dict[_faust_type(args[0]), _faust_type(args[1])]
    return tp


def record_of(cls: type) -> type[faust.Record]:
    """The Faust Record of a contract dataclass (built once, then reused)."""
    if cls in _derived:
        return _derived[cls]
    hints = typing.get_type_hints(cls)
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": cls.__name__,
        "__doc__": cls.__doc__,
        "__annotations__": {},
    }
    for f in dataclasses.fields(cls):
        namespace["__annotations__"][f.name] = _faust_type(hints[f.name])
        if f.default is not dataclasses.MISSING:
            namespace[f.name] = f.default
    record = types.new_class(
        cls.__name__,
        (faust.Record,),
        {"serializer": "json", "include_metadata": False},
        lambda ns: ns.update(namespace),
    )
    _derived[cls] = record
    return record


Utm = record_of(public.Utm)
Consent = record_of(public.Consent)
FormFill = record_of(public.FormFill)
EmailEvent = record_of(public.EmailEvent)
AdClick = record_of(public.AdClick)
SalesActivity = record_of(public.SalesActivity)
Account = record_of(public.Account)
Company = record_of(public.Company)
Score = record_of(public.Score)
Reason = record_of(public.Reason)
Source = record_of(public.Source)
Activity = record_of(public.Activity)
RoutedLead = record_of(public.RoutedLead)

RECORDS: dict[str, type[faust.Record]] = {
    topic: record_of(cls) for topic, cls in public.PUBLIC_VALUES.items()
}
"""The Record of each public topic's value, by contract name (as `public.PUBLIC_VALUES`)."""


# ------------------------------------------------------------------ read committed only
# Under "faust", so that logging configured for Faust applies (mode would otherwise name the
# logger after this module).
_log = logging.getLogger("faust.transport.drivers.aiokafka.read_committed")


class _ReadCommittedThread(_driver.AIOKafkaConsumerThread):
    logger = _log

    def _create_worker_consumer(self, transport: _driver.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when the consumer starts (its fetcher is built in start()).
        consumer._isolation_level = "read_committed"
        return consumer


class _ReadCommittedConsumer(_driver.Consumer):
    logger = _log

    def _new_consumer_thread(self) -> _driver.AIOKafkaConsumerThread:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)


class ReadCommittedTransport(_driver.Transport):
    """Faust's Kafka transport with a consumer that reads only committed records."""

    Consumer = _ReadCommittedConsumer


def read_committed(app: faust.App) -> faust.App:
    """Make `app` read only committed records, and return it.

    leadrouter publishes routed leads in Kafka transactions (exactly_once). Faust's
    consumer reads `read_uncommitted` unless the app itself runs exactly_once, so a plain
    Faust app would also see leads of transactions that were aborted and then redone.
    Call this right after creating the app, before declaring topics or agents.
    """
    if getattr(app, "_consumer", None) is not None:
        raise RuntimeError("read_committed(app) must be called before the app's consumer exists")
    app.transport = ReadCommittedTransport(app.conf.broker_consumer, app)
    return app
