"""The lead desk: what happens to a lead when a touch, an assignment or a sales activity
arrives. Plain synchronous code over plain dicts; the stream shell feeds it records and
carries out the effects it returns (records to send, leads to publish, timers).

State is a key-value view owned by one partition: leads by lead id, visitors by
`v:<anonymous_id>`, queue desks by `q:<queue>`, open SLA timers by `s:<lead_id>`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Protocol

from topics.contracts import Invalid, parse
from workers.core import assign, enrich, identity, score
from workers.core.route import choose_queue
from workers.settings import Config

MAX_VISITOR_CLICKS = 20
RECENT_ASSIGNMENTS = 2000
# A lead waiting for its queue desk's answer keeps the touches meanwhile (bounded) to publish
# them as activity once routed; with the desk on another worker the wait is a round trip.
MAX_HELD_TOUCHES = 20
HELD_FIELDS = ("event_id", "ch", "type", "form_id", "at")
ACTIVITY_RANK = {
    "accepted": 0,
    "contacted": 1,
    "meeting_booked": 2,
    "opportunity_created": 3,
    "won": 4,
    "lost": 4,
    "rejected": 4,
}
CONVERSIONS = ("opportunity_created", "won", "lost")
CLOSING = ("won", "lost", "rejected")
DISQUALIFYING_FLAGS = ("unsubscribed", "bounced", "spam_complaint")
CHANNEL_OF_KIND = {"form_fill": "form", "email_event": "email", "ad_click": "ad"}


class State(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...
    def put(self, key: str, value: dict[str, Any]) -> None: ...
    def delete(self, key: str) -> None: ...


class Recorder(Protocol):
    """The facts the desk reports; the shell turns them into Prometheus metrics."""

    def accepted(self, channel: str) -> None: ...
    def duplicate(self, channel: str) -> None: ...
    def generated(self, channel: str, source: str) -> None: ...
    def scored(self, total: float) -> None: ...
    def disqualified(self, reason: str) -> None: ...
    def routed(self, queue: str, rule: str, grade: str, latency: float) -> None: ...
    def unassigned(self, queue: str, reason: str) -> None: ...
    def activity(self, kind: str, outcome: str) -> None: ...
    def speed_to_lead(self, queue: str, seconds: float) -> None: ...
    def conversion(self, queue: str, source: str, outcome: str, seconds: float) -> None: ...
    def sla_breach(self, queue: str) -> None: ...


@dataclass
class Effects:
    """What the shell must do: `internal` (key, record) re-keyed to their owner,
    `published` (queue, lead id, RoutedLead) for sales, `timers` (due, lead id)."""

    internal: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    published: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    timers: list[tuple[float, str]] = field(default_factory=list)


def seen_key(event_id: str) -> str:
    """A short fixed-size fingerprint of an event id: the lead's dedupe memory stays small."""
    return hashlib.blake2b(event_id.encode(), digest_size=5).hexdigest()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ingest(kind: str, raw: bytes | None, now: float, max_bytes: int) -> tuple[str, dict] | Invalid:
    """Validate one input record and key it by its owner: the lead, or the anonymous
    visitor when an ad click has no e-mail or a form fill carries a visitor id to join."""
    fields = parse(kind, raw, now, max_bytes)
    if isinstance(fields, Invalid):
        return fields
    if kind == "sales_activity":
        return fields["lead_id"], {"k": "activity", "in": now, **fields}
    channel = CHANNEL_OF_KIND[kind]
    touch = {"k": "touch", "ch": channel, "in": now, **fields}
    email = fields.get("email")
    anonymous = fields.get("anonymous_id")
    if email is None:  # anonymous ad click: kept under the visitor until a form names them
        touch["k"] = "visitor"
        return "v:" + (anonymous or "click:" + fields["click_id"]), touch
    touch["lead"] = identity.lead_id(email)
    if channel == "form" and anonymous:
        touch["k"] = "visitor"
        return "v:" + anonymous, touch
    return touch["lead"], touch


def _source(touch: dict[str, Any]) -> dict[str, Any]:
    """First-touch attribution of one touch: channel, ad platform, UTM source and campaign."""
    channel = touch["ch"]
    utm = touch.get("utm") or {}
    platform = touch.get("platform")
    return {
        "channel": channel,
        "platform": platform,
        "utm_source": (utm.get("source") or platform or ("email" if channel == "email" else None)),
        "utm_campaign": utm.get("campaign") or touch.get("campaign"),
        "event_id": touch["id"] if "id" in touch else touch.get("event_id"),
        "at": touch["at"],
    }


def _recent_assignments(desk: dict[str, Any]) -> dict[str, Any]:
    """The queue's last RECENT_ASSIGNMENTS routings, fingerprinted, oldest first, each with
    its rep and time so a redelivered request can be answered again: a mapping so a
    redelivery is found without a scan, short keys so the desk's changelog record stays
    small although it is rewritten every batch. Older state kept a list of the plain
    "lead/event" strings; it is converted on first use (without answers to give again)."""
    recent = desk.get("recent")
    if isinstance(recent, dict):
        return recent
    desk["recent"] = {seen_key(attempt): 1 for attempt in recent or ()}
    return desk["recent"]


def source_label(source: dict[str, Any] | None) -> str:
    if not source:
        return "direct"
    return (source.get("utm_source") or "direct").lower()


class LeadDesk:
    def __init__(
        self,
        config: Config,
        accounts: enrich.AccountBook,
        recorder: Recorder,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.accounts = accounts
        self.recorder = recorder
        self.clock = clock
        self.seniority = enrich.SeniorityMatcher(config.scoring.seniority_keywords)
        settings = config.settings
        self.fast_forms = frozenset(settings.fast_lane_forms)
        self.fast_email = frozenset(settings.fast_lane_email_types)
        self.competitors = frozenset(d.lower() for d in settings.competitor_domains)
        self.consent_countries = frozenset(settings.consent.required_countries)
        self.owner_queue = {}
        for name, queue in config.routing.queues.items():
            for rep in queue.reps:
                self.owner_queue.setdefault(rep, name)

    # ------------------------------------------------------------------ dispatch
    def handle(self, key: str, record: dict[str, Any], state: State) -> Effects:
        effects = Effects()
        kind = record.get("k")
        if kind == "touch":
            self.on_touch(key, record, state, effects)
        elif kind == "visitor":
            self.on_visitor(key, record, state, effects)
        elif kind == "assign":
            self.on_assign(key, record, state, effects)
        elif kind == "assigned":
            self.on_assigned(key, record, state, effects)
        elif kind == "release":
            desk = state.get(key) or {}
            assign.release(desk, record["rep"])
            state.put(key, desk)
        elif kind == "activity":
            self.on_activity(key, record, state, effects)
        return effects

    # ------------------------------------------------------------------ visitors
    def on_visitor(self, key: str, touch: dict[str, Any], state: State, fx: Effects) -> None:
        visitor = state.get(key) or {"clicks": [], "lead": None}
        if touch.get("lead") is None:  # an anonymous ad click
            if visitor["lead"] is not None:  # already known: it is the lead's touch
                fx.internal.append(
                    (visitor["lead"], {**touch, "k": "touch", "lead": visitor["lead"]})
                )
                return
            if any(c["id"] == touch["event_id"] for c in visitor["clicks"]):
                self.recorder.duplicate(touch["ch"])
                return
            self.recorder.accepted(touch["ch"])
            visitor["clicks"].append(_compact_click(touch))
            visitor["clicks"] = visitor["clicks"][-MAX_VISITOR_CLICKS:]
            state.put(key, visitor)
            return
        # A form fill naming this visitor: their earlier clicks become the lead's touches.
        forwarded = {**touch, "k": "touch", "prior": visitor["clicks"]}
        visitor["lead"], visitor["clicks"] = touch["lead"], []
        state.put(key, visitor)
        fx.internal.append((touch["lead"], forwarded))

    # ------------------------------------------------------------------ touches
    def on_touch(self, lead_id: str, touch: dict[str, Any], state: State, fx: Effects) -> None:
        lead = state.get(lead_id)
        is_new = lead is None
        if lead is None:
            lead = {"id": lead_id, "state": "new", "seen": [], "engagement": {}, "flags": {}}
        fingerprint = seen_key(touch["event_id"])
        if fingerprint in lead["seen"]:
            self.recorder.duplicate(touch["ch"])
            return
        self._remember(lead, fingerprint)
        self.recorder.accepted(touch["ch"])
        scoring = self.config.scoring
        prior = touch.get("prior")
        if prior:  # the visitor's earlier clicks: remembered too, so a redelivery is a duplicate
            seen = lead["seen"]
            fresh = [(c, key) for c in prior if (key := seen_key(c["id"])) not in seen]
            prior = [c for c, _ in fresh]
            for _, key in fresh:
                self._remember(lead, key)
        touches = [*(_expand_click(c) for c in prior), touch] if prior else (touch,)
        for t in touches:
            label, points = score.touch_points(
                scoring, t["ch"], t.get("form_id") if t["ch"] == "form" else t.get("type")
            )
            score.add_touch(lead["engagement"], scoring, label, points, t["at"])
            first = lead.get("first_touch")
            if first is None or t["at"] < first["at"]:
                lead["first_touch"] = _source(t)
        self._absorb(lead, touch)
        if is_new or touch["ch"] == "form" or lead.get("enriched") != self.accounts.version:
            self._enrich(lead)
        if is_new:
            first = lead["first_touch"]
            self.recorder.generated(first["channel"], source_label(first))
        lead["score"] = score.totals(
            scoring, sum(p for _, _, p in lead["fit"]), lead["engagement"], touch["at"]
        )
        self.recorder.scored(lead["score"]["total"])

        if lead["state"] == "routed" and self._recyclable(lead, touch["at"]):
            for k in ("queue", "rep", "routed_at", "sla_due", "first_contact_at", "outcome"):
                lead.pop(k, None)
            lead["state"] = "new"
        if lead["state"] == "routed":
            self._publish_activity(lead, touch, fx)
        elif lead["state"] == "new":
            self._qualify(lead, touch, fx)
        elif lead["state"] == "pending":  # its queue desk has not answered yet
            held = lead.setdefault("held", [])
            held.append({k: touch[k] for k in HELD_FIELDS if k in touch})
            del held[:-MAX_HELD_TOUCHES]
        state.put(lead_id, lead)

    def _publish_activity(self, lead: dict[str, Any], touch: dict[str, Any], fx: Effects) -> None:
        """A touch on a routed lead goes to its owner's queue; it is not reassigned."""
        fx.published.append(
            (lead["queue"], lead["id"], self._routed_lead(lead, touch, "lead.activity"))
        )

    def _remember(self, lead: dict[str, Any], fingerprint: str) -> None:
        seen = lead["seen"]
        seen.append(fingerprint)
        if len(seen) > self.config.settings.dedupe_window:
            del seen[: len(seen) - self.config.settings.dedupe_window]

    def _absorb(self, lead: dict[str, Any], touch: dict[str, Any]) -> None:
        """Identity and enrichment: newer non-empty values win, flags only accumulate."""
        email = touch.get("email")
        if email:
            lead["email"] = email
            domain = identity.email_domain(email)
            lead["domain"] = domain
            lead["free_mail"] = identity.is_free_mail(domain)
            lead["disposable"] = identity.is_disposable(domain)
        for src, dst in (
            ("first_name", "first_name"),
            ("last_name", "last_name"),
            ("company", "company_name"),
            ("job_title", "job_title"),
            ("country", "country"),
            ("employees", "employees"),
            ("phone", "phone"),
        ):
            if touch.get(src) is not None:
                lead[dst] = touch[src]
        if touch.get("consent") is not None:
            lead["consent"] = touch["consent"]
        if touch.get("anonymous_id"):
            ids = lead.setdefault("anonymous_ids", [])
            if touch["anonymous_id"] not in ids:
                ids[:] = [*ids, touch["anonymous_id"]][-10:]
        if touch["ch"] == "email":
            flag = {
                "unsubscribe": "unsubscribed",
                "bounce": "bounced",
                "spam_complaint": "spam_complaint",
            }.get(touch["type"])
            if flag:
                lead["flags"][flag] = True

    def _enrich(self, lead: dict[str, Any]) -> None:
        """Derived facts: account, region, time zone, phone, seniority and fit. Only redone
        when identity fields or the accounts table changed: most touches are e-mail events."""
        account, matched_by = self.accounts.match(
            None if lead.get("free_mail") else lead.get("domain"), lead.get("company_name")
        )
        lead["account_domain"] = account["domain"] if account else None
        lead["account_match"] = matched_by
        lead["enriched"] = self.accounts.version
        country = lead.get("country") or (account or {}).get("country")
        lead["region"] = enrich.region_of(country, self.config.settings.regions.overrides)
        lead["timezone"] = enrich.country_zone(country) if country else None
        if lead.get("phone"):
            lead["phone_e164"] = enrich.phone_e164(lead["phone"], country)
        lead["seniority"] = self.seniority.level(lead.get("job_title"))
        account = account or {}
        lead["fit"] = [
            [c["factor"], c["value"], c["points"]]
            for c in score.fit_contributions(
                self.config.scoring,
                seniority=lead.get("seniority"),
                employees=lead.get("employees") or account.get("employees"),
                industry=account.get("industry"),
                country=lead.get("country") or account.get("country"),
                free_mail=bool(lead.get("free_mail")),
                known_account=bool(account),
            )
        ]

    def _account(self, lead: dict[str, Any]) -> dict[str, Any]:
        domain = lead.get("account_domain")
        return (self.accounts.by_domain.get(domain) if domain else None) or {}

    def _contributions(self, lead: dict[str, Any], now: float) -> list[dict[str, Any]]:
        """The score's explanation: built only for leads that are published."""
        engagement = score.engagement_contributions(self.config.scoring, lead["engagement"], now)
        fit = [{"factor": f, "value": v, "points": p} for f, v, p in lead["fit"]]
        return fit + engagement

    def _recyclable(self, lead: dict[str, Any], at: float) -> bool:
        due = lead.get("recyclable_at")
        return due is not None and at >= due

    def _disqualifier(self, lead: dict[str, Any]) -> str | None:
        for flag in DISQUALIFYING_FLAGS:
            if lead["flags"].get(flag):
                return flag
        if lead.get("domain") in self.competitors:
            return "competitor"
        if lead.get("disposable"):
            return "disposable"
        country = lead.get("country") or self._account(lead).get("country")
        if country in self.consent_countries and lead.get("consent") is not True:
            return "no_consent"
        return None

    def _qualify(self, lead: dict[str, Any], touch: dict[str, Any], fx: Effects) -> None:
        fast = (touch["ch"] == "form" and touch.get("form_id") in self.fast_forms) or (
            touch["ch"] == "email" and touch.get("type") in self.fast_email
        )
        if fast:
            trigger = "fast_lane"
        elif lead["score"]["total"] >= self.config.scoring.mql_threshold:
            trigger = "mql"
        else:
            return
        reason = self._disqualifier(lead)
        if reason is not None:
            if lead.get("disqualified") != reason:
                lead["disqualified"] = reason
                self.recorder.disqualified(reason)
            return
        view = self._view(lead, touch, trigger)
        routing = self.config.routing
        owner = self._account(lead).get("owner")
        trace = [
            f"touch {touch['event_id']} ({touch['ch']}) triggered {trigger}: score "
            f"{lead['score']['total']:g} (threshold {self.config.scoring.mql_threshold:g})",
            *(
                f"score {c['factor']}={c['value']!r}: {c['points']:+g}"
                for c in self._contributions(lead, touch["at"])
            ),
        ]
        preferred = None
        if routing.account_owner_precedence and owner in self.owner_queue:
            queue, rule = self.owner_queue[owner], "account-owner"
            trace.append(f"account {lead['account_domain']} is owned by {owner}: queue {queue}")
            preferred = owner
        else:
            queue, rule, why = choose_queue(routing, view)
            trace.append(why)
        lead["state"] = "pending"
        lead["queue"] = queue
        draft = self._routed_lead(lead, touch, "lead.assigned")
        draft["queue"] = queue
        draft["reason"] = {"rule": rule, "assignment": None, "trace": trace}
        fx.internal.append(
            (
                "q:" + queue,
                {
                    "k": "assign",
                    "lead": lead["id"],
                    "queue": queue,
                    "preferred": preferred,
                    "at": touch["at"],
                    "draft": draft,
                },
            )
        )

    def _view(self, lead: dict[str, Any], touch: dict[str, Any], trigger: str) -> dict[str, Any]:
        """The flat lead fields that routing rules may test."""
        account = self._account(lead)
        first = lead.get("first_touch") or {}
        s = lead["score"]
        return {
            "trigger": trigger,
            "trigger_form": touch.get("form_id"),
            "region": lead.get("region"),
            "country": lead.get("country") or account.get("country"),
            "seniority": lead.get("seniority"),
            "score": s["total"],
            "fit": s["fit"],
            "engagement": s["engagement"],
            "grade": s["grade"],
            "free_mail": bool(lead.get("free_mail")),
            "email_domain": lead.get("domain"),
            "company.domain": account.get("domain") or lead.get("domain"),
            "company.name": account.get("name") or lead.get("company_name"),
            "company.employees": account.get("employees") or lead.get("employees"),
            "company.industry": account.get("industry"),
            "company.country": account.get("country") or lead.get("country"),
            "account.owner": account.get("owner"),
            "source.channel": first.get("channel"),
            "source.platform": first.get("platform"),
            "source.utm_source": first.get("utm_source"),
            "source.utm_campaign": first.get("utm_campaign"),
        }

    def _routed_lead(self, lead: dict[str, Any], touch: dict[str, Any], event: str) -> dict:
        account = self._account(lead)
        first = lead.get("first_touch") or {}
        name = " ".join(p for p in (lead.get("first_name"), lead.get("last_name")) if p) or None
        s = lead["score"]
        out: dict[str, Any] = {
            "event": event,
            "lead_id": lead["id"],
            "queue": lead.get("queue"),
            "rep_id": lead.get("rep"),
            "email": lead.get("email"),
            "name": name,
            "phone": lead.get("phone_e164"),
            "job_title": lead.get("job_title"),
            "seniority": lead.get("seniority"),
            "region": lead.get("region"),
            "company": {
                "domain": account.get("domain") or lead.get("domain"),
                "name": account.get("name") or lead.get("company_name"),
                "employees": account.get("employees") or lead.get("employees"),
                "industry": account.get("industry"),
                "country": account.get("country") or lead.get("country"),
            },
            "score": {**s, "contributions": self._contributions(lead, touch["at"])},
            "reason": {"rule": lead.get("rule"), "assignment": lead.get("assignment"), "trace": []},
            "source": {
                "channel": first.get("channel"),
                "platform": first.get("platform"),
                "utm_source": first.get("utm_source"),
                "utm_campaign": first.get("utm_campaign"),
            },
            "trigger_event_id": touch["event_id"],
            "generated_at": iso(first.get("at")),
            "routed_at": iso(lead.get("routed_at")),
            "sla_due_at": iso(lead.get("sla_due")),
        }
        if event == "lead.activity":
            out["activity"] = {
                "channel": touch["ch"],
                "type": touch.get("type") or touch.get("form_id") or "ad_click",
                "occurred_at": iso(touch["at"]),
            }
            out["reason"]["trace"] = [
                f"lead already routed to {lead.get('queue')} ({lead.get('rep') or 'unassigned'}):"
                f" touch {touch['event_id']} published as activity, not reassigned"
            ]
        return out

    # ------------------------------------------------------------------ queue desks
    def on_assign(self, key: str, request: dict[str, Any], state: State, fx: Effects) -> None:
        queue_name = request["queue"]
        queue = self.config.routing.queues[queue_name]
        desk = state.get(key) or {}
        recent = _recent_assignments(desk)
        attempt = seen_key(f"{request['lead']}/{request['draft']['trigger_event_id']}")
        done = recent.get(attempt)
        if done is not None:  # a redelivered request: this routing was done already
            if isinstance(done, list):
                # Answered again, not routed again: without transactions a crash can lose the
                # lead's side (its state and the answer handed to it) while this desk's
                # state was written, and the lead would wait for an answer forever.
                rep, routed_at = done
                fx.internal.append(
                    (request["lead"], self._answer(queue_name, request, rep, routed_at))
                )
            return
        now = self.clock()
        rep, steps = assign.pick_rep(
            queue_name,
            queue,
            self.config.reps.reps,
            desk,
            now,
            self.config.routing.fairness_window_hours,
            request.get("preferred"),
        )
        recent[attempt] = [rep, int(now * 1000) / 1000]  # ms, never after the first answer
        if len(recent) > RECENT_ASSIGNMENTS:
            for oldest in list(islice(recent, len(recent) - RECENT_ASSIGNMENTS)):
                del recent[oldest]
        state.put(key, desk)
        answer = self._answer(queue_name, request, rep, now)
        routed = request["draft"]
        routed["rep_id"] = rep
        routed["routed_at"] = iso(now)
        routed["sla_due_at"] = iso(answer["sla_due"])
        routed["reason"]["assignment"] = answer["assignment"]
        routed["reason"]["trace"].extend(steps)
        fx.published.append((queue_name, request["lead"], routed))
        grade = routed["score"]["grade"]
        self.recorder.routed(
            queue_name, routed["reason"]["rule"], grade, max(0.0, now - request["at"])
        )
        if rep is None:
            self.recorder.unassigned(queue_name, "no_rep_available")
        fx.internal.append((request["lead"], answer))

    def _answer(
        self, queue_name: str, request: dict[str, Any], rep: str | None, routed_at: float
    ) -> dict[str, Any]:
        """The queue desk's answer to the lead: where it went, by which rule and strategy."""
        queue = self.config.routing.queues[queue_name]
        if rep is None:
            strategy = "unassigned"
        elif rep == request.get("preferred"):
            strategy = "account_owner"
        else:
            strategy = queue.strategy
        return {
            "k": "assigned",
            "queue": queue_name,
            "rep": rep,
            "rule": request["draft"]["reason"]["rule"],
            "assignment": strategy,
            "routed_at": routed_at,
            "sla_due": routed_at + queue.sla_minutes * 60,
        }

    def on_assigned(self, lead_id: str, msg: dict[str, Any], state: State, fx: Effects) -> None:
        lead = state.get(lead_id)
        if lead is None:
            return
        if lead["state"] == "routed" and (lead.get("routed_at") or 0) >= msg["routed_at"]:
            return  # an answer given again after a crash, which this lead had kept
        lead.update(
            state="routed",
            queue=msg["queue"],
            rep=msg["rep"],
            rule=msg["rule"],
            assignment=msg["assignment"],
            routed_at=msg["routed_at"],
            sla_due=msg["sla_due"],
        )
        lead.pop("recyclable_at", None)
        lead.pop("sla_breached", None)
        # Touches that arrived while the queue desk was deciding happened after the lead
        # qualified: sales get them as activity, as any touch on a routed lead.
        for touch in lead.pop("held", ()):
            self._publish_activity(lead, touch, fx)
        state.put(lead_id, lead)
        state.put("s:" + lead_id, {"due": msg["sla_due"]})
        fx.timers.append((msg["sla_due"], lead_id))

    # ------------------------------------------------------------------ sales feedback
    def on_activity(self, lead_id: str, act: dict[str, Any], state: State, fx: Effects) -> None:
        kind = act["type"]
        lead = state.get(lead_id)
        if lead is None:
            self.recorder.activity(kind, "unknown_lead")
            return
        fingerprint = seen_key(act["event_id"])
        if fingerprint in lead["seen"]:
            self.recorder.activity(kind, "duplicate")
            return
        self._remember(lead, fingerprint)
        routed_at = lead.get("routed_at")
        rank = ACTIVITY_RANK[kind]
        in_order = routed_at is not None and act["at"] >= routed_at and rank >= lead.get("rank", 0)
        self.recorder.activity(kind, "ok" if in_order else "out_of_order")
        lead["rank"] = max(rank, lead.get("rank", 0))
        queue = lead.get("queue")
        if routed_at is not None and queue is not None:
            elapsed = max(0.0, act["at"] - routed_at)
            if kind in ("contacted", "meeting_booked") and lead.get("first_contact_at") is None:
                lead["first_contact_at"] = act["at"]
                self.recorder.speed_to_lead(queue, elapsed)
                state.delete("s:" + lead_id)
            if kind in CONVERSIONS and lead.get("outcome") != kind:
                lead["outcome"] = kind
                self.recorder.conversion(
                    queue, source_label(lead.get("first_touch")), kind, elapsed
                )
            if kind in CLOSING and lead.get("rep") and not lead.get("closed"):
                lead["closed"] = True
                fx.internal.append(("q:" + queue, {"k": "release", "rep": lead["rep"]}))
            if kind in ("lost", "rejected"):
                recycle = self.config.settings.recycle_after_days * 86400
                lead["recyclable_at"] = act["at"] + recycle
        state.put(lead_id, lead)

    def on_sla_due(self, lead_id: str, state: State) -> None:
        """A queue's SLA passed: a breach unless sales touched the lead in time."""
        timer = state.get("s:" + lead_id)
        if timer is None:
            return
        state.delete("s:" + lead_id)
        lead = state.get(lead_id)
        if lead is None or lead.get("first_contact_at") is not None or lead.get("sla_breached"):
            return
        lead["sla_breached"] = True
        state.put(lead_id, lead)
        self.recorder.sla_breach(lead["queue"])


def _compact_click(touch: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": touch["event_id"],
        "at": touch["at"],
        "platform": touch["platform"],
        "campaign": touch.get("campaign"),
        "click_id": touch["click_id"],
    }


def _expand_click(click: dict[str, Any]) -> dict[str, Any]:
    return {
        "ch": "ad",
        "event_id": click["id"],
        "at": click["at"],
        "platform": click["platform"],
        "campaign": click.get("campaign"),
    }
