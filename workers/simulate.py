"""Realistic traffic for demos, tests and the benchmark.

Marketing: form fills across forms, campaigns and countries; e-mail engagement; ad clicks,
many anonymous, whose visitors fill a form later; returning visitors; a small share of
malformed records. Sales: a simulated team that reads the routed queues and answers with
activities after realistic delays, with outcomes that differ by lead source.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from topics import catalogue as cat
from topics.public import RoutedLead, SalesActivity
from workers.settings import Config

FIRST = [
    "ana",
    "ben",
    "carla",
    "dmitri",
    "eva",
    "farid",
    "grace",
    "hiro",
    "ines",
    "jonas",
    "kim",
    "liam",
    "mia",
    "nils",
    "olga",
    "pablo",
    "quinn",
    "rosa",
    "sven",
    "tara",
    "umar",
    "vera",
]
LAST = [
    "smith",
    "garcia",
    "muller",
    "rossi",
    "tanaka",
    "kowalski",
    "dubois",
    "nguyen",
    "silva",
    "jensen",
    "okafor",
    "kim",
    "novak",
    "haddad",
    "berg",
    "costa",
    "walsh",
    "ito",
]
TITLES = [
    "CEO",
    "CTO",
    "VP Sales",
    "VP Marketing",
    "Director of IT",
    "Head of Growth",
    "Marketing Manager",
    "Sales Manager",
    "Software Engineer",
    "Analyst",
    "Consultant",
    "Marketing Intern",
    "Operations Lead",
    "Chief Revenue Officer",
    "Student",
]
INDUSTRIES = [
    "software",
    "financial_services",
    "healthcare",
    "manufacturing",
    "retail",
    "education",
    "logistics",
    "media",
]
COUNTRIES = [
    ("US", 30),
    ("GB", 10),
    ("DE", 8),
    ("FR", 6),
    ("CA", 5),
    ("NL", 4),
    ("SE", 3),
    ("AU", 4),
    ("JP", 4),
    ("SG", 3),
    ("IN", 5),
    ("BR", 4),
    ("ES", 3),
    ("AE", 2),
    ("MX", 2),
    ("PL", 2),
]
FORMS = [
    ("demo-request", 10),
    ("contact-sales", 6),
    ("whitepaper", 30),
    ("webinar", 25),
    ("pricing", 12),
    ("newsletter-signup", 17),
]
EMAIL_TYPES = [
    ("delivered", 40),
    ("open", 35),
    ("click", 15),
    ("reply", 2),
    ("bounce", 3),
    ("unsubscribe", 3),
    ("spam_complaint", 0.5),
]
SOURCES = [
    ("google", 30, "cpc"),
    ("linkedin", 20, "paid-social"),
    ("meta", 10, "paid-social"),
    ("newsletter", 15, "email"),
    ("partner", 8, "referral"),
    ("organic", 12, "organic"),
    ("g2", 5, "review"),
]
CAMPAIGNS = [
    "spring-launch",
    "q4-webinar-series",
    "brand-search",
    "retargeting",
    "partner-newsletter",
    "competitor-conquest",
    "devrel-meetup",
]
PLATFORMS = [("google", 45), ("linkedin", 25), ("meta", 20), ("microsoft", 7), ("other", 3)]
FREE_MAIL = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "gmx.de"]
# How likely a routed lead from each source reaches each stage: the dashboard shows which
# sources convert.
SOURCE_WIN = {
    "google": 0.25,
    "linkedin": 0.35,
    "meta": 0.1,
    "newsletter": 0.2,
    "partner": 0.45,
    "organic": 0.3,
    "g2": 0.4,
}


def _pick(rng: random.Random, weighted: list[tuple[Any, ...]]) -> Any:
    return rng.choices(weighted, weights=[w[1] for w in weighted])[0]


def iso_now(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@dataclass
class Company:
    domain: str
    name: str
    employees: int
    industry: str
    country: str


@dataclass
class Person:
    email: str
    first: str
    last: str
    title: str
    company: Company | None
    country: str
    anonymous_id: str
    phone: str | None
    consent: bool


def companies(seed: int = 7, count: int = 300) -> list[Company]:
    """A fixed population of companies, the same for a given seed (accounts CSV uses it)."""
    rng = random.Random(seed)
    out = []
    stems = [
        "acme",
        "globex",
        "initech",
        "umbrella",
        "hooli",
        "vandelay",
        "stark",
        "wayne",
        "tyrell",
        "cyberdyne",
        "soylent",
        "wonka",
        "gringotts",
        "monarch",
        "oscorp",
        "aperture",
    ]
    suffixes = [" Inc.", " Ltd", " GmbH", " AB", " SAS", " LLC", " Corp."]
    for i in range(count):
        stem = f"{rng.choice(stems)}{rng.choice(['', 'tech', 'labs', 'systems', 'data'])}{i}"
        country = _pick(rng, COUNTRIES)[0]
        size = int(rng.lognormvariate(5, 1.6))
        out.append(
            Company(
                f"{stem}.com",
                stem.title() + rng.choice(suffixes),
                max(2, size),
                rng.choice(INDUSTRIES),
                country,
            )
        )
    return out


class Traffic:
    """An endless, seedable stream of (topic, key, value) marketing records."""

    def __init__(self, config: Config, seed: int | None = None, malformed_share: float = 0.01):
        self.rng = random.Random(seed)
        self.prefix = config.settings.kafka.topic_prefix
        self.companies = companies()
        self.people: list[Person] = []
        self.anonymous: list[str] = []  # visitors who clicked an ad but filled no form yet
        self.malformed_share = malformed_share
        self.counter = 0

    def _person(self) -> Person:
        rng = self.rng
        if self.people and rng.random() < 0.6:  # returning visitor
            return rng.choice(self.people[-5000:])
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company = rng.choice(self.companies) if rng.random() < 0.75 else None
        domain = company.domain if company else rng.choice(FREE_MAIL)
        if rng.random() < 0.01:
            domain = "mailinator.com"
        country = company.country if company and rng.random() < 0.8 else _pick(rng, COUNTRIES)[0]
        person = Person(
            email=f"{first}.{last}{rng.randrange(100000)}@{domain}",
            first=first.title(),
            last=last.title(),
            title=rng.choice(TITLES),
            company=company,
            country=country,
            anonymous_id=(
                self.anonymous.pop()
                if self.anonymous and rng.random() < 0.5
                else uuid.UUID(int=rng.getrandbits(128)).hex
            ),
            phone=f"+1 415 555 {rng.randrange(1000, 9999)}" if rng.random() < 0.4 else None,
            consent=rng.random() < 0.85,
        )
        self.people.append(person)
        if len(self.people) > 20000:
            del self.people[:10000]
        return person

    def _base(self, now: float) -> dict[str, Any]:
        self.counter += 1
        return {
            "event_id": uuid.UUID(int=self.rng.getrandbits(128)).hex,
            "occurred_at": iso_now(now),
            "context": {
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
                "Gecko) Chrome/126.0 Safari/537.36",
                "locale": self.rng.choice(["en-US", "de-DE", "fr-FR", "en-GB", "ja-JP"]),
                "ip_country": self.rng.choice(["US", "DE", "GB", "FR", "JP"]),
            },
        }

    def form_fill(self, now: float, person: Person | None = None) -> dict[str, Any]:
        rng = self.rng
        p = person or self._person()
        source, _, medium = _pick(rng, SOURCES)
        event = self._base(now)
        event.update(
            email=p.email,
            form_id=_pick(rng, FORMS)[0],
            first_name=p.first,
            last_name=p.last,
            company=p.company.name if p.company else None,
            job_title=p.title,
            country=p.country,
            anonymous_id=p.anonymous_id,
            page_url=f"https://www.example.com/{rng.choice(['pricing', 'demo', 'resources'])}",
            utm={
                "source": source,
                "medium": medium,
                "campaign": rng.choice(CAMPAIGNS),
                "term": None,
                "content": rng.choice(["hero", "sidebar", "footer"]),
            },
            consent={"marketing": p.consent},
        )
        if p.phone:
            event["phone"] = p.phone
        if p.company and rng.random() < 0.5:
            event["employees"] = p.company.employees
        return event

    def email_event(self, now: float) -> dict[str, Any]:
        p = self._person()
        event = self._base(now)
        event.update(
            email=p.email,
            type=_pick(self.rng, EMAIL_TYPES)[0],
            campaign=self.rng.choice(CAMPAIGNS),
            url="https://www.example.com/blog/lead-routing-best-practices",
        )
        return event

    def ad_click(self, now: float) -> dict[str, Any]:
        rng = self.rng
        event = self._base(now)
        anonymous = uuid.UUID(int=rng.getrandbits(128)).hex
        event.update(
            platform=_pick(rng, PLATFORMS)[0],
            click_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            campaign=rng.choice(CAMPAIGNS),
            ad_group=rng.choice(["brand", "generic", "competitor"]),
            keyword=rng.choice(["lead routing", "sales automation", "crm integration"]),
            cost_micros=rng.randrange(100_000, 9_000_000),
            anonymous_id=anonymous,
            landing_url="https://www.example.com/landing/spring?gclid=abc",
        )
        if rng.random() < 0.2:
            event["email"] = self._person().email
        else:
            self.anonymous.append(anonymous)
            if len(self.anonymous) > 5000:
                del self.anonymous[:2500]
        return event

    def malformed(self, now: float) -> tuple[str, bytes]:
        rng = self.rng
        topic = rng.choice([cat.FORM_FILLS, cat.EMAIL_EVENTS, cat.AD_CLICKS])
        kind = rng.randrange(5)
        if kind == 0:
            return topic, b'{"event_id": "broken", "occurred_at": '
        event = self.form_fill(now) if topic == cat.FORM_FILLS else self.email_event(now)
        if topic == cat.AD_CLICKS:
            event = self.ad_click(now)
        if kind == 1:
            event.pop("event_id")
        elif kind == 2:
            event["occurred_at"] = "yesterday at noon"
        elif kind == 3:
            event["email"] = "not-an-address"
        else:
            event["event_id"] = 12345
        return topic, orjson.dumps(event)

    def next(self, now: float) -> tuple[str, bytes | None, bytes]:
        """The next marketing record: (topic with prefix, key, value)."""
        rng = self.rng
        if rng.random() < self.malformed_share:
            topic, value = self.malformed(now)
            return self.prefix + topic, None, value
        roll = rng.random()
        if roll < 0.22:
            topic, event = cat.FORM_FILLS, self.form_fill(now)
        elif roll < 0.75:
            topic, event = cat.EMAIL_EVENTS, self.email_event(now)
        else:
            topic, event = cat.AD_CLICKS, self.ad_click(now)
        key = (event.get("email") or event.get("anonymous_id") or "").encode() or None
        return self.prefix + topic, key, orjson.dumps(event)

    def stream(
        self, count: int, now: float | None = None
    ) -> Iterator[tuple[str, bytes | None, bytes]]:
        stamp = now if now is not None else time.time()
        for _ in range(count):
            yield self.next(stamp)


class SalesTeam:
    """Answers routed leads like a sales team: contacts most (fast lane fastest), books
    meetings, opens opportunities, wins or loses by source; some leads wait past the SLA.

    The decisions only: plain and synchronous, so they are testable without a broker. The
    Faust app in `workers.sales_team` feeds it routed leads and sends what falls due."""

    def __init__(self, config: Config, seed: int | None = None, delay_scale: float = 1.0):
        self.rng = random.Random(None if seed is None else seed + 1)
        self.scale = delay_scale
        self.queue: list[tuple[float, int, str, str | None, str]] = []
        self.seq = 0

    def _later(self, at: float, lead_id: str, rep: str | None, kind: str) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, lead_id, rep, kind))

    def on_routed(self, lead: RoutedLead, now: float) -> None:
        """Plan the answers of the rep a lead was given (assigned, handed out from its
        queue's line, or reassigned). `lead` is a RoutedLead: the dataclass of
        `topics.public` or the Faust Record of `topics.records` (the same fields)."""
        if lead.event not in ("lead.assigned", "lead.reassigned") or lead.rep_id is None:
            return  # an activity; or a lead waiting in its queue's line: nobody has it yet
        rng, s = self.rng, self.scale
        lead_id, rep = lead.lead_id, lead.rep_id
        if rng.random() < 0.12:  # forgotten: the SLA timer will flag it
            return
        median = 120 if lead.queue == "fast-lane" else 1800
        t = now + rng.lognormvariate(0, 0.8) * median * s
        self._later(t, lead_id, rep, "accepted" if rng.random() < 0.5 else "contacted")
        if rng.random() < 0.15:
            self._later(t + 60 * s, lead_id, rep, "rejected")
            return
        t += rng.lognormvariate(0, 0.5) * 600 * s
        self._later(t, lead_id, rep, "contacted")
        if rng.random() < 0.4:
            t += rng.lognormvariate(0, 0.5) * 3600 * s
            self._later(t, lead_id, rep, "meeting_booked")
            if rng.random() < 0.5:
                t += rng.lognormvariate(0, 0.5) * 86400 * s
                self._later(t, lead_id, rep, "opportunity_created")
                win = SOURCE_WIN.get(lead.source.utm_source or "", 0.2)
                t += rng.lognormvariate(0, 0.5) * 7 * 86400 * s
                self._later(t, lead_id, rep, "won" if rng.random() < win * 2 else "lost")

    def due(self, now: float) -> Iterator[SalesActivity]:
        """The planned answers whose time has come, in time order (value on
        `sales.activities`, keyed by `lead_id`)."""
        while self.queue and self.queue[0][0] <= now:
            at, _, lead_id, rep, kind = heapq.heappop(self.queue)
            yield SalesActivity(
                event_id=uuid.UUID(int=self.rng.getrandbits(128)).hex,
                occurred_at=iso_now(at),
                lead_id=lead_id,
                type=kind,  # type: ignore[arg-type]
                rep_id=rep,
            )


def run_simulation(
    config: Config,
    *,
    rate: float,
    duration: float,
    seed: int | None = None,
    malformed_share: float = 0.01,
    sales_delay_scale: float = 1.0,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Send marketing traffic at `rate` for `duration` seconds (or until `stop` is set)
    while the simulated sales team, a Faust app on a thread of its own, answers routed
    leads. Returns counts: marketing records sent, sales activities sent, routed leads seen."""
    from confluent_kafka import Producer

    from workers.admin import Stopped, ensure_topics
    from workers.connection import librdkafka_config
    from workers.logs import kafka_logger
    from workers.sales_team import SalesTeamApp

    try:
        ensure_topics(config, stop=stop)  # a broker still starting is waited for, stoppably
    except Stopped:
        return {"marketing": 0, "sales": 0, "routed_seen": 0}
    producer = Producer(
        {
            **librdkafka_config(config.settings),
            "linger.ms": 5,
            "enable.idempotence": True,
            "logger": kafka_logger(),
        }
    )
    traffic = Traffic(config, seed, malformed_share)
    sales = SalesTeamApp(config, SalesTeam(config, seed, sales_delay_scale)).start()
    pace = stop if stop is not None else threading.Event()
    marketing = 0
    start = time.time()
    try:
        while time.time() - start < duration and not pace.is_set():
            now = time.time()
            target = int((now - start) * rate)
            while marketing < target:
                topic, key, value = traffic.next(now)
                producer.produce(topic, value, key)
                marketing += 1
            producer.poll(0)
            pace.wait(0.02)
    finally:
        producer.flush(30)
        sales.stop()
    return {
        "marketing": marketing,
        "sales": sales.counts.sales,
        "routed_seen": sales.counts.routed_seen,
    }
