"""Internal messages: what one key's owner hands to another (topic `leadrouter.internal`).

Each message is a type here, with its encoder and decoder beside it. Inside one worker the
objects are handed over as they are; between workers they travel as JSON objects whose `k`
field names the type. That wire form is a versioned format: it is exactly what the previous
release wrote (a worker of either release reads the other's during a rolling deploy), and a
field is only ever added, never renamed. Unknown fields of a touch are kept in `data`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import orjson

from topics.public import Activity, Company, Reason, RoutedLead, Score, Source, encode_routed


@dataclass(slots=True)
class Touch:
    """A marketing touch for the lead that owns it (`lead`): validated contract fields in
    `data` (with `event_id` and `at`), the channel, and when it was ingested. `prior` holds
    an anonymous visitor's earlier clicks, carried to the lead by the form that named them."""

    KIND: ClassVar[str] = "touch"
    channel: str
    event_id: str
    at: float
    ingested: float
    lead: str | None
    data: dict[str, Any]
    prior: list[dict[str, Any]] | None = None

    def get(self, name: str) -> Any:
        """A contract field of the touch, or None."""
        return self.data.get(name)


@dataclass(slots=True)
class VisitorTouch(Touch):
    """A touch for an anonymous visitor (`v:<anonymous_id>`): an ad click without an
    e-mail, or a form fill that names the visitor and so joins their clicks to the lead."""

    KIND: ClassVar[str] = "visitor"


@dataclass(slots=True)
class Assign:
    """A qualified lead asks its queue's desk for a rep; `draft` is the RoutedLead to
    publish once the desk has chosen (rep, times and assignment steps still to come)."""

    KIND: ClassVar[str] = "assign"
    lead: str
    queue: str
    preferred: str | None
    at: float
    draft: RoutedLead


@dataclass(slots=True)
class Assigned:
    """The queue desk's answer to the lead: where it went, by which rule and strategy.
    `trigger`, the qualifying event's id, is new since 0.1.0 (which ignores it): the lead
    keeps it for what is published from its state later (a hand-out, a reassignment)."""

    KIND: ClassVar[str] = "assigned"
    queue: str
    rep: str | None
    rule: str | None
    assignment: str
    routed_at: float
    sla_due: float
    trigger: str | None = None


@dataclass(slots=True)
class Reassign:
    """A lead whose SLA passed with no first touch asks a desk for another rep: its own
    queue's (`why` reassign) or the queue it escalates to (`why` escalate). `exclude`: the
    reps it has had, who are not given it again; `at` the breach, `given_at` when the
    previous rep was given the lead (their counts for it are taken back)."""

    KIND: ClassVar[str] = "reassign"
    lead: str
    queue: str
    previous_rep: str
    previous_queue: str
    exclude: list[str]
    why: str
    at: float
    given_at: float


@dataclass(slots=True)
class Handed:
    """A desk gives a lead to a rep after its routing: from the waiting line (`why`
    waiting), or on a reassignment or escalation. `at`, when it was given, grows with each
    hand-over of a lead, so an answer given twice is known; `rep` None: nobody was free."""

    KIND: ClassVar[str] = "handed"
    lead: str
    queue: str
    rep: str | None
    previous_rep: str | None
    assignment: str
    why: str
    at: float
    sla_due: float
    waited: float
    steps: list[str]


@dataclass(slots=True)
class Claimed:
    """A rep touched a lead while it waited in its queue's line: it leaves the line, and
    the rep's counts include it."""

    KIND: ClassVar[str] = "claimed"
    lead: str
    rep: str | None


@dataclass(slots=True)
class Withdraw:
    """A rep no longer has a lead this desk gave them at `at` (it was reassigned, or another
    rep had touched it first): their counts for it are taken back, once per (lead, at)."""

    KIND: ClassVar[str] = "withdraw"
    rep: str
    at: float
    lead: str


@dataclass(slots=True)
class Release:
    """A lead closed (won, lost, rejected): its rep's open load in the queue desk drops."""

    KIND: ClassVar[str] = "release"
    rep: str


@dataclass(slots=True)
class Feedback:
    """A validated sales activity, for the lead it names."""

    KIND: ClassVar[str] = "activity"
    lead_id: str
    type: str
    event_id: str
    at: float
    ingested: float
    rep_id: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class Forget:
    """Erase what names a person (`leadrouter forget`), or an idle one's state expired: to
    the lead, then from it to its visitor records and its queue desk. `at` is the erasure's
    time (events of the person that occurred before it are dropped from then on); `erase`
    False for an expiry, which keeps no marker."""

    KIND: ClassVar[str] = "forget"
    lead: str
    at: float
    reason: str
    erase: bool


@dataclass(slots=True)
class SlaDue:
    """A lead's SLA timer fired (never on the wire: timers live with the lead's partition)."""

    KIND: ClassVar[str] = "sla_due"
    lead: str


@dataclass(slots=True)
class DeskDue:
    """A queue desk's timer fired: hand out waiting leads (never on the wire either)."""

    KIND: ClassVar[str] = "desk_due"
    queue: str


@dataclass(slots=True)
class ExpiryDue:
    """A lead's or visitor's expiry timer came due (never on the wire: its key in the
    partition's state, `x:<due>:<key>`, is the timer)."""

    KIND: ClassVar[str] = "expiry_due"
    key: str


Message = (
    Touch
    | VisitorTouch
    | Assign
    | Assigned
    | Release
    | Feedback
    | SlaDue
    | Reassign
    | Handed
    | Claimed
    | Withdraw
    | DeskDue
    | Forget
    | ExpiryDue
)
# Sent between workers as their fields, in declaration order: added after release 0.1.0,
# so no earlier wire form to keep.
_PLAIN: tuple[type, ...] = (Reassign, Handed, Claimed, Withdraw, Forget)


class UnknownMessage(ValueError):
    """A record on the internal topic that no type here describes."""


# ------------------------------------------------------------------ encoders
def _touch_wire(msg: Touch) -> dict[str, Any]:
    out = {"k": msg.KIND, "ch": msg.channel, "in": msg.ingested, **msg.data}
    if msg.lead is not None:
        out["lead"] = msg.lead
    if msg.prior is not None:
        out["prior"] = msg.prior
    return out


def _draft_wire(draft: RoutedLead) -> Any:
    """A draft is never published as it is: no configuration version yet (and a 0.1.0
    worker reading it knows no such key)."""
    return orjson.Fragment(encode_routed(draft).replace(b',"config_version":null}', b"}", 1))


def wire(msg: Message) -> dict[str, Any]:
    """The JSON object a message travels as."""
    if isinstance(msg, Touch):
        return _touch_wire(msg)
    if isinstance(msg, Assign):
        return {
            "k": msg.KIND,
            "lead": msg.lead,
            "queue": msg.queue,
            "preferred": msg.preferred,
            "at": msg.at,
            "draft": _draft_wire(msg.draft),
        }
    if isinstance(msg, Assigned):
        return {
            "k": msg.KIND,
            "queue": msg.queue,
            "rep": msg.rep,
            "rule": msg.rule,
            "assignment": msg.assignment,
            "routed_at": msg.routed_at,
            "sla_due": msg.sla_due,
            **({"trigger": msg.trigger} if msg.trigger is not None else {}),
        }
    if isinstance(msg, Release):
        return {"k": msg.KIND, "rep": msg.rep}
    if isinstance(msg, _PLAIN):
        return {"k": msg.KIND, **{name: getattr(msg, name) for name in msg.__slots__}}
    if isinstance(msg, Feedback):
        return {
            "k": msg.KIND,
            "in": msg.ingested,
            "lead_id": msg.lead_id,
            "rep_id": msg.rep_id,
            "type": msg.type,
            "reason": msg.reason,
            "event_id": msg.event_id,
            "at": msg.at,
        }
    raise UnknownMessage(f"{type(msg).__name__} is not sent between workers")


def encode(msg: Message) -> bytes:
    return orjson.dumps(wire(msg))


# ------------------------------------------------------------------ decoders
def _touch(cls: type[Touch], obj: dict[str, Any]) -> Touch:
    """`obj` is freshly decoded and becomes the touch's `data`: no copy."""
    data = obj
    del data["k"]
    channel = data.pop("ch")
    ingested = data.pop("in", 0.0)
    lead = data.pop("lead", None)
    prior = data.pop("prior", None)
    return cls(channel, data["event_id"], data["at"], ingested, lead, data, prior)


def routed_lead(obj: dict[str, Any]) -> RoutedLead:
    """A RoutedLead from its JSON object (a draft on the wire, or a record read back)."""
    activity = obj.get("activity")
    return RoutedLead(
        event=obj["event"],
        lead_id=obj["lead_id"],
        queue=obj["queue"],
        rep_id=obj.get("rep_id"),
        email=obj.get("email"),
        name=obj.get("name"),
        phone=obj.get("phone"),
        job_title=obj.get("job_title"),
        seniority=obj.get("seniority"),
        region=obj.get("region"),
        company=Company(**obj["company"]),
        score=Score(**obj["score"]),
        reason=Reason(**obj["reason"]),
        source=Source(**obj["source"]),
        trigger_event_id=obj["trigger_event_id"],
        generated_at=obj.get("generated_at"),
        routed_at=obj.get("routed_at"),
        sla_due_at=obj.get("sla_due_at"),
        activity=Activity(**activity) if activity else None,
    )


def _assign(obj: dict[str, Any]) -> Assign:
    return Assign(
        obj["lead"], obj["queue"], obj.get("preferred"), obj["at"], routed_lead(obj["draft"])
    )


def _assigned(obj: dict[str, Any]) -> Assigned:
    return Assigned(
        obj["queue"],
        obj.get("rep"),
        obj.get("rule"),
        obj["assignment"],
        obj["routed_at"],
        obj["sla_due"],
        obj.get("trigger"),
    )


def _plain(cls: type, obj: dict[str, Any]) -> Message:
    return cls(*(obj[name] for name in cls.__slots__))


def _feedback(obj: dict[str, Any]) -> Feedback:
    return Feedback(
        obj["lead_id"],
        obj["type"],
        obj["event_id"],
        obj["at"],
        obj.get("in", 0.0),
        obj.get("rep_id"),
        obj.get("reason"),
    )


_DECODERS: dict[str, Any] = {
    Touch.KIND: lambda obj: _touch(Touch, obj),
    VisitorTouch.KIND: lambda obj: _touch(VisitorTouch, obj),
    Assign.KIND: _assign,
    Assigned.KIND: _assigned,
    Release.KIND: lambda obj: Release(obj["rep"]),
    Feedback.KIND: _feedback,
    **{cls.KIND: partial(_plain, cls) for cls in _PLAIN},
}


def decode(raw: bytes) -> Message:
    """A message from its wire form; `UnknownMessage` (or a JSON/key error) when it is not one."""
    obj = orjson.loads(raw)
    if not isinstance(obj, dict):
        raise UnknownMessage(f"expected a JSON object, got {type(obj).__name__}")
    decoder = _DECODERS.get(obj.get("k"))  # type: ignore[arg-type]
    if decoder is None:
        raise UnknownMessage(f"unknown internal message kind {obj.get('k')!r}")
    return decoder(obj)
