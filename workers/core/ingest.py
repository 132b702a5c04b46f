"""Ingest, the pipeline's first stage: validate one input record against its contract and
key it by its owner (the lead, or the anonymous visitor when an ad click has no e-mail or a
form fill carries a visitor id to join). What fails validation goes to dead letters."""

from __future__ import annotations

from topics.contracts import Invalid, parse
from topics.messages import Feedback, Message, Touch, VisitorTouch
from topics.vocabulary import CHANNEL_OF_KIND, SALES_ACTIVITY
from workers.core.context import visitor_key
from workers.core.identity import lead_id


def ingest(
    kind: str, raw: bytes | None, now: float, max_bytes: int
) -> tuple[str, Message] | Invalid:
    """The owner's key and the message for it, or why the record is invalid."""
    fields = parse(kind, raw, now, max_bytes)
    if isinstance(fields, Invalid):
        return fields
    if kind == SALES_ACTIVITY:
        return fields["lead_id"], Feedback(
            fields["lead_id"],
            fields["type"],
            fields["event_id"],
            fields["at"],
            now,
            fields["rep_id"],
            fields["reason"],
        )
    channel = CHANNEL_OF_KIND[kind]
    email = fields.get("email")
    anonymous = fields.get("anonymous_id")
    if email is None:  # anonymous ad click: kept under the visitor until a form names them
        key = visitor_key(anonymous or "click:" + fields["click_id"])
        return key, VisitorTouch(channel, fields["event_id"], fields["at"], now, None, fields)
    lead = lead_id(email)
    if channel == "form" and anonymous:
        touch: Touch = VisitorTouch(channel, fields["event_id"], fields["at"], now, lead, fields)
        return visitor_key(anonymous), touch
    return lead, Touch(channel, fields["event_id"], fields["at"], now, lead, fields)
