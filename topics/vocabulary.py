"""The contract's closed vocabularies, defined once and imported where used (validation,
the domain core, metrics labels, the JSON Schemas). Order is meaningful where noted."""

from __future__ import annotations

EMAIL_TYPES = ("delivered", "open", "click", "reply", "bounce", "unsubscribe", "spam_complaint")
AD_PLATFORMS = ("google", "meta", "linkedin", "microsoft", "other")
# In the order a sale progresses; the last three close it.
ACTIVITY_TYPES = (
    "accepted",
    "contacted",
    "meeting_booked",
    "opportunity_created",
    "won",
    "lost",
    "rejected",
)
FIRST_CONTACT = ("contacted", "meeting_booked")  # either gives speed to lead
CONVERSIONS = ("opportunity_created", "won", "lost")
CLOSING = ("won", "lost", "rejected")

LEAD_ASSIGNED = "lead.assigned"  # a lead routed to a queue (and a rep, when one is free)
LEAD_ACTIVITY = "lead.activity"  # a touch on a lead already routed, for its owner
# a lead taken from its rep after an SLA breach and given to another (same queue or the
# queue it escalates to): `rep_id` the new rep, `previous_rep_id` the one who lost it
LEAD_REASSIGNED = "lead.reassigned"
ROUTED_EVENTS = (LEAD_ASSIGNED, LEAD_ACTIVITY, LEAD_REASSIGNED)

# Input kinds (which contract a topic carries) and the channel each marketing kind is.
FORM_FILL = "form_fill"
EMAIL_EVENT = "email_event"
AD_CLICK = "ad_click"
SALES_ACTIVITY = "sales_activity"
CHANNEL_OF_KIND = {FORM_FILL: "form", EMAIL_EVENT: "email", AD_CLICK: "ad"}

# `error.reason` on leads.deadletter: stable codes.
INVALID_REASONS = (
    "invalid_encoding",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "invalid_type",
    "invalid_value",
    "invalid_time",
    "invalid_email",
    "too_large",
)
PROCESSING_ERROR = "processing_error"  # a record the worker failed on (a bug), parked

# E-mail events that flag a lead for good (the flag is also the disqualification reason).
EMAIL_FLAGS = {
    "unsubscribe": "unsubscribed",
    "bounce": "bounced",
    "spam_complaint": "spam_complaint",
}
# Why a qualified lead is kept from routing (leadrouter_leads_disqualified_total{reason}).
COMPETITOR, DISPOSABLE, NO_CONSENT = "competitor", "disposable", "no_consent"
DISQUALIFY_REASONS = (*EMAIL_FLAGS.values(), COMPETITOR, DISPOSABLE, NO_CONSENT)
# Outcomes after which a lead may be routed again, once the recycle period has passed.
RECYCLING = ("lost", "rejected")
