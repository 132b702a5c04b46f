"""The simulated sales team of `leadrouter simulate`, as a Faust app.

It is what a sales team's own consumer looks like: a faust-streaming agent subscribed to
every `leads.routed.<queue>` topic (names from the catalogue and the configured prefix),
reading RoutedLead records with the models of `topics.records` (committed records only),
and answering with SalesActivity records on `sales.activities`. When and how it answers is
decided by `workers.simulate.SalesTeam`, plain code; this module only moves records.

The app runs on a thread of its own with its own event loop (`SalesTeamApp`), so the
simulator's marketing side stays synchronous; `stop()` ends the app, its consumer thread
and the loop, from any thread. No web server, no tables; Faust's data dir is a temporary
directory removed at stop; the one internal topic Faust creates is its leader-assignor
topic, `<group>-simulated-sales-__assignor-__leader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import faust
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from topics import catalogue as cat
from topics.records import RoutedLead, SalesActivity, read_committed
from workers.connection import faust_broker, librdkafka_config
from workers.logs import kafka_logger
from workers.settings import Config

if TYPE_CHECKING:  # the decisions are handed in by run_simulation, which imports this module
    from workers.simulate import SalesTeam

log = logging.getLogger(__name__)

ANSWER_EVERY = 0.05  # seconds between looks at the team's due answers
STOP_TIMEOUT = 30.0
# Tansu answers a JoinGroup only after half the session timeout: 10 s (as the worker's own
# consumer) keeps that to 5 s; Faust's default of 60 s would take 30 s to start on it.
SESSION_TIMEOUT = 10.0
# Errors of a broker or topic that is still settling: worth another try.
SETTLING = frozenset(
    (
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
    )
)


@dataclass
class Counts:
    """What the app did; written on its thread, read from any (plain ints)."""

    routed_seen: int = 0
    sales: int = 0


def group_id(config: Config) -> str:
    return f"{config.settings.kafka.group_id}-simulated-sales"


def routed_topics(config: Config) -> list[str]:
    """Every `leads.routed.<queue>` topic the configured routing can publish to."""
    prefix = config.settings.kafka.topic_prefix
    return [prefix + cat.routed_topic(q) for q in config.routing.queues]


def start_from_now(config: Config, deadline: float = 15.0) -> None:
    """Commit the current end of every routed partition that the group has no offset for.

    The simulation answers leads routed from its start on (what `auto.offset.reset=latest`
    means), but a group only resolves `latest` once it has joined, seconds later: leads
    routed meanwhile would be skipped. Committed offsets fix the start at this call. A group
    that already has offsets keeps them. Errors of a broker or topic still settling (no
    coordinator or partition leader yet) are retried until `deadline`; if the commit is
    still refused (the group is busy), the app reads those partitions from the start."""
    consumer = Consumer(
        {
            **librdkafka_config(config.settings),
            "group.id": group_id(config),
            "logger": kafka_logger(),
        }
    )
    end = time.monotonic() + deadline
    try:
        while True:
            try:
                _commit_ends(consumer, routed_topics(config))
                return
            except KafkaException as exc:
                error = exc.args[0]
                settling = error.retriable() or error.code() in SETTLING
                if settling and time.monotonic() < end:
                    time.sleep(0.2)
                    continue
                log.warning("simulated sales: could not set the group's start offsets (%s)", exc)
                return
    finally:
        consumer.close()


def _commit_ends(consumer: Consumer, topics: list[str]) -> None:
    metadata = consumer.list_topics(timeout=10)
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        if topic in metadata.topics
        for p in metadata.topics[topic].partitions
    ]
    fresh = [tp for tp in consumer.committed(partitions, timeout=10) if tp.offset < 0]
    ends = [
        TopicPartition(tp.topic, tp.partition, consumer.get_watermark_offsets(tp, 10)[1])
        for tp in fresh
    ]
    if ends:
        consumer.commit(offsets=ends, asynchronous=False)


def build_app(
    config: Config,
    team: SalesTeam,
    counts: Counts,
    *,
    datadir: str,
    loop: asyncio.AbstractEventLoop,
) -> faust.App:
    """The Faust app: one agent reads routed leads, one timer sends the answers due."""
    app = read_committed(
        faust.App(
            group_id(config),
            **faust_broker(config.settings),
            loop=loop,
            datadir=datadir,
            store="memory://",
            web_enabled=False,
            autodiscover=False,
            consumer_auto_offset_reset="earliest",  # after start_from_now: only new partitions
            broker_session_timeout=SESSION_TIMEOUT,
            broker_heartbeat_interval=1.0,
            topic_replication_factor=1,  # the leader topic: like the demo broker, one node
        )
    )
    leads = app.topic(*routed_topics(config), key_serializer="raw", value_type=RoutedLead)
    activities = app.topic(
        config.settings.kafka.topic_prefix + cat.SALES_ACTIVITIES,
        key_serializer="raw",
        value_type=SalesActivity,
    )

    @app.agent(leads, name="simulated-sales.read-leads")
    async def read_leads(stream: faust.StreamT[Any]) -> None:
        async for lead in stream:
            team.on_routed(lead, time.time())
            counts.routed_seen += 1

    @app.timer(ANSWER_EVERY, name="simulated-sales.answer")
    async def answer() -> None:
        for activity in team.due(time.time()):
            await activities.send(key=activity.lead_id, value=SalesActivity(**asdict(activity)))
            counts.sales += 1

    return app


class SalesTeamApp:
    """The Faust app on its own thread and event loop: `start()`, then `stop()`.

    `ready` is set once the app has started (group joined, partitions assigned); `error`
    holds what ended the app early, if anything (it is logged too)."""

    def __init__(self, config: Config, team: SalesTeam) -> None:
        self.config = config
        self.team = team
        self.counts = Counts()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="simulated-sales", daemon=True)

    def start(self) -> SalesTeamApp:
        start_from_now(self.config)
        self._thread.start()
        return self

    def wait_ready(self, timeout: float) -> bool:
        """True once the app runs; False on timeout or when it ended before it could."""
        end = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if not self._thread.is_alive() or time.monotonic() > end:
                return False
        return True

    def stop(self, timeout: float = STOP_TIMEOUT + 10) -> None:
        """Stop the app and wait for its thread (idempotent, callable from any thread)."""
        self._stop.set()
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("simulated sales: the Faust app did not stop within %.0f s", timeout)

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        datadir = tempfile.mkdtemp(prefix="leadrouter-sales-")
        try:
            loop.run_until_complete(self._main(datadir))
        except BaseException as exc:
            self.error = exc
            log.error("simulated sales: the Faust app failed: %r", exc, exc_info=exc)
        finally:
            _close(loop)
            shutil.rmtree(datadir, ignore_errors=True)

    async def _main(self, datadir: str) -> None:
        if self._stop.is_set():
            return
        app = build_app(self.config, self.team, self.counts, datadir=datadir, loop=self._loop)
        starting = asyncio.ensure_future(app.start())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a failed start raises here
                self.ready.set()
                stopped = asyncio.ensure_future(app.wait_until_stopped())
                await asyncio.wait({stopping, stopped}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if app.crash_reason is not None:
                    raise app.crash_reason
        finally:
            starting.cancel()
            stopping.cancel()
            await asyncio.wait_for(app.stop(), STOP_TIMEOUT)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel whatever the app left on the loop, then close it."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
