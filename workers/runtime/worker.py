"""The worker: the batch loop that runs the topology on Kafka, and the session around it.

One consumer reads the marketing and sales topics and the internal topic; each batch is
handed to the topology in handling order, its output produced into the batch's unit of work
(commit.py), then committed with the state changelog and the input offsets. Broker trouble
ends the session, not the process: the clients are torn down, owned state dropped (it is
restored from the changelog) and the session restarts with backoff. See
docs/architecture.md for why this is a batch loop and not per-event Faust agents.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from kafka.errors import KafkaError as KafkaPythonError

from topics import catalogue as cat
from workers import admin
from workers.config_versions import Published
from workers.connection import instance_id
from workers.core.context import queue_desk_key
from workers.core.enrich import AccountBook
from workers.core.privacy import EXPIRY, idle_before
from workers.core.queue_desk import waiting_line
from workers.core.topology import Topology
from workers.metrics import Health, Metrics, serve
from workers.runtime import outbox
from workers.runtime.accounts import AccountsReader
from workers.runtime.clients import Clients, fatal
from workers.runtime.commit import Committer, Stuck, within
from workers.runtime.config_reader import ConfigReader
from workers.runtime.lag import LagGauge
from workers.runtime.memory import TRIM_EVERY, release_freed_memory, settle_garbage
from workers.runtime.outbox import Outbox, abort_mark
from workers.runtime.partitions import Partitions
from workers.runtime.selection import Selection
from workers.runtime.sink import KafkaSink, OutboxSink
from workers.runtime.timers import Timers
from workers.settings import Config, unpublished_overrides

log = logging.getLogger("leadrouter.worker")
MAX_BACKOFF = 30.0
# Expiry timers are looked up every hundredth of the period, at least every second and at
# most every minute (the memory store's lookup is a scan); a look takes this many timers
# per partition, and a turn of the loop handles this many (each up to CHUNK records).
EXPIRY_CHECK_AT_MOST = 60.0
TIMERS_PER_LOOK = 200
TIMERS_PER_TURN = 5


def kafka_failure(exc: BaseException) -> bool:
    """A Kafka failure, also when confluent-kafka reports it as a SystemError: a delivery
    callback that ran after flush or poll had raised the producer's fatal error (fenced)."""
    return isinstance(exc, (KafkaException, KafkaPythonError)) or (
        isinstance(exc, SystemError) and isinstance(exc.__cause__, KafkaException)
    )


def fatal_error(exc: BaseException) -> bool:
    """A fatal producer error (fenced, or another one librdkafka calls fatal: `fatal`),
    raised as it is or as the cause of a SystemError: that producer can deliver nothing any
    more."""
    for err in (exc, exc.__cause__):
        if isinstance(err, KafkaException) and err.args:
            code = err.args[0]
            if isinstance(code, KafkaError) and fatal(code):
                return True
    return False


class Worker:
    def __init__(
        self,
        config: Config,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        serve_metrics: bool = True,
    ) -> None:
        self.config = self.local = config
        s = config.settings
        self.settings = s
        self.clock = clock
        self.metrics = metrics or Metrics(s.metrics.sources, s.metrics.campaigns)
        self.metrics.declare(config.routing.queues, [r.name for r in config.routing.rules])
        self.health = Health()
        self.serve_metrics = serve_metrics
        self.accounts = AccountBook()
        prefix = s.kafka.topic_prefix
        self.internal_topic = prefix + cat.INTERNAL
        self.changelog_topic = prefix + cat.CHANGELOG
        self.input_topics = [prefix + t for t in (*cat.INPUT_KINDS, cat.ERASURES)]
        self.clients = Clients(s, instance_id(s))
        self.timers = Timers()
        self.partitions = Partitions(s, self.clients, self.changelog_topic, self.timers)
        self.lag = LagGauge(self.metrics, prefix)
        self.topology: Topology | None = None
        self.stopping = threading.Event()
        self.consumer: Consumer | None = None
        self.selection: Selection | None = None
        self.committer: Committer | None = None
        self.accounts_reader: AccountsReader | None = None
        self.config_reader: ConfigReader | None = None
        self.config_topic = prefix + cat.CONFIG
        self.rejudge = False  # a switched configuration: desks judge their lines again
        self.follows_published = s.config_source == "published"
        self.switched = False
        self.next_expiry_check = 0.0
        self.expiry_backlog: list[tuple[int, str]] = []
        self.refused_offsets: set[int] = set()  # judged once per process, not per session
        self.metrics.running(config.version, clock(), switched=False)
        self.abandoned = False
        self.last_run = 0  # at_least_once: the last batch id (runtime/outbox.py)

    @property
    def exactly_once(self) -> bool:
        return self.committer is not None and self.committer.exactly_once

    # ------------------------------------------------------------------ lifecycle
    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def run(self) -> int:
        """Run until stopped; broker trouble restarts the session with backoff, not the process."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        stop_http = None
        if self.serve_metrics:
            m = self.settings.metrics
            _, stop_http = serve(self.metrics.registry, self.health, m.host, m.port)
            log.info("metrics on http://%s:%d/metrics", m.host, m.port)
        backoff = 1.0
        try:
            while not self.stopping.is_set():
                try:
                    self._session()
                    backoff = 1.0
                except (KafkaException, KafkaPythonError, SystemError) as exc:
                    if not kafka_failure(exc):
                        raise
                    log.error("Kafka session failed (%s); restarting in %.0f s", exc, backoff)
                    self._teardown(flush=not fatal_error(exc))
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            self._teardown()
            if stop_http:
                stop_http()
        log.info("worker stopped")
        return 0

    def _session(self) -> None:
        try:
            admin.ensure_topics(self.config, stop=self.stopping)
        except admin.Stopped:
            return
        self._open_clients()
        assert self.consumer is not None and self.accounts_reader is not None
        assert self.config_reader is not None and self.committer is not None
        committer = self.committer
        self.accounts_reader.load()
        if self.follows_published:
            self.config_reader.load()
            published = self.config_reader.latest()
            if published is not None and published[0].version != self.config.version:
                self._switch(*published, starting=self.topology is None)
        meta = self.consumer.list_topics(self.internal_topic, timeout=30)
        partitions = len(meta.topics[self.internal_topic].partitions)
        self.topology = Topology(
            self.config,
            self.accounts,
            self.metrics,
            self.clock,
            partitions,
            defer_hand_overs=not self.exactly_once,
        )
        prefix = self.settings.kafka.topic_prefix
        selection = self.selection = Selection(
            self.consumer,
            self.settings.ingest.batch_size,
            prefix + cat.FORM_FILLS,
            prefix + cat.AD_CLICKS,
        )
        topics = [*self.input_topics, self.internal_topic]
        self.consumer.subscribe(
            topics, on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost
        )
        log.info(
            "worker %s consuming %d topics (%s)",
            self.clients.instance,
            len(topics),
            "exactly_once" if self.exactly_once else "at_least_once",
        )
        trimmed = time.monotonic()
        while not self.stopping.is_set():
            batch, fetched = selection.next_batch()
            committer.check()  # an offset commit, not waited for, found this member fenced
            if fetched < selection.batch_size and time.monotonic() - trimmed > TRIM_EVERY:
                release_freed_memory()  # caught up: a backlog's buffers are free now
                trimmed = time.monotonic()
            self.health.beat()
            self.accounts_reader.poll()
            newer = self.config_reader.newer(self.config.version)
            if newer is not None and self.follows_published:
                self._switch(*newer)
            due = self.timers.due(self.clock()) + self._expiries()
            if batch or due or self.partitions.dirty() or (self.rejudge and self.partitions.states):
                self._process(batch, due)
        self.consumer.close()
        self.consumer = None
        if self.clients.static:  # a static member leaves only when told: now, not at timeout
            admin.leave_group(self.config, self.clients.instance)

    def _open_clients(self) -> None:
        self.committer = Committer(
            self.clients, self.settings.kafka.processing_guarantee, self.changelog_topic
        )
        read_committed = self.committer.exactly_once
        self.partitions.read_committed = self.lag.read_committed = read_committed
        self.consumer = Consumer(
            {
                **self.clients.batch_consumer(read_committed=read_committed, stats_cb=self.lag),
                "on_commit": self.committer.committed,
            }
        )
        self.accounts_reader = AccountsReader(
            self.clients, self.settings.kafka.topic_prefix + cat.ACCOUNTS, self.accounts
        )
        self.config_reader = ConfigReader(
            self.clients, self.config_topic, self.local, self.metrics, self.refused_offsets
        )

    def _teardown(self, *, flush: bool = True) -> None:
        """Close the session's clients. `flush=False` after a fatal producer error: such a
        producer can deliver nothing, and confluent-kafka's flush of it has raised its fatal
        error, a SystemError caused by it, and a SystemError with no exception at all."""
        readers = (
            self.consumer,
            self.accounts_reader.close() if self.accounts_reader else None,
            self.config_reader.close() if self.config_reader else None,
        )
        for client in readers:
            if client is not None:
                try:
                    within(15, client.close)
                except Stuck:
                    self.abandoned = True  # the producer is abandoned with it, not flushed
                except (KafkaException, RuntimeError):
                    pass
        self.consumer = self.accounts_reader = self.config_reader = None
        self.selection = None
        if self.committer is not None and not self.abandoned:
            # A producer that cannot deliver: its open transaction is aborted by the broker, and
            # the batch is read again by the next session, whose new producer takes the next
            # epoch.
            if not flush:
                log.warning("producer closed without flushing after a fatal error")
            else:
                try:
                    self.committer.producer.flush(5)
                except (KafkaException, SystemError) as exc:  # best effort: the session is over
                    log.warning("producer closed without flushing: %s", exc.__cause__ or exc)
        self.committer = None
        self.abandoned = False
        self.partitions.drop_all()
        self.health.ready = False

    # ------------------------------------------------------------------ rebalancing
    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        owned = [tp.partition for tp in partitions if tp.topic == self.internal_topic]
        cut = self.partitions.restore(owned)
        for p, batch in cut.items():  # before anything else is written there
            key, value, headers = abort_mark(self.clients.instance, batch)
            self._send_now([(self.changelog_topic, p, key, value, headers)])
        self._send_outbox_left(owned)
        self.health.ready = True
        # Desks restored from before a switch (or from a worker on another version) judge
        # their lines under the version this worker runs.
        self.rejudge = self.rejudge or self.switched
        self._show_lines()
        log.info("assigned %d partitions", len(partitions))

    def _send_outbox_left(self, partitions: list[int]) -> None:
        """Outputs a restored partition's state still holds (at_least_once: durable, maybe
        not sent before a crash): sent again now, then removed with the next batch."""
        for p in partitions:
            state = self.partitions.states.get(p)
            left = outbox.left_in(state) if state is not None else {}
            if left:
                self._send_now([out for outputs in left.values() for out in outputs])
                for key in left:
                    state.delete(key)  # type: ignore[union-attr]
                log.info("partition %d: %d outbox records sent again", p, len(left))

    def _send_now(self, outputs: list[outbox.Output]) -> None:
        if self.committer is None:
            raise KafkaException("no producer to send with")
        self.committer.send_now(outputs)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.committer is not None and not self.abandoned:
            try:  # the next owner starts after this member's last batch, not before it
                self.committer.confirm_offsets(consumer)
            except KafkaException as exc:
                if fatal_error(exc):
                    raise  # to the session, which starts again with new clients
                log.warning("last batch's offsets not confirmed at the revoke: %s", exc)
        self._give_up(partitions)

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Lost, not revoked (the session timed out): another member may own them already,
        so nothing is committed; the next owner reads the last batches again (safe)."""
        if self.committer is not None:
            self.committer.unconfirmed.clear()
        self._give_up(partitions)

    def _give_up(self, partitions: list[TopicPartition]) -> None:
        if self.selection is not None:  # the batch being gathered drops their records
            self.selection.revoked(partitions)
        for tp in partitions:
            if tp.topic == self.internal_topic:
                self.partitions.drop(tp.partition)
        self._show_lines()
        log.info("revoked %d partitions", len(partitions))

    # ------------------------------------------------------------------ the batch
    def _process(self, batch: list[Message], due: list[tuple[int, str]]) -> None:
        committer, topology = self.committer, self.topology
        assert committer is not None and topology is not None and self.consumer is not None
        started = time.perf_counter()
        try:
            offsets = committer.begin(batch, self.consumer)
            deadletter_topic = self.settings.kafka.topic_prefix + cat.DEADLETTER
            sent: Outbox | None = None
            if committer.exactly_once:
                sink = KafkaSink(committer, self.timers, self.internal_topic, deadletter_topic)
            else:
                sent = Outbox(outbox.next_run(self.last_run, self.partitions.states))
                self.last_run = sent.run
                batch = outbox.admit(batch, self.partitions.states, self.internal_topic)
                sink = OutboxSink(
                    committer, self.timers, self.internal_topic, deadletter_topic, topology, sent
                )
            state_of = self.partitions.states.get  # a C call per lookup, on the hot path
            woke = self.rejudge and bool(self.partitions.states)
            if woke:
                topology.wake_desks(state_of, sink)
            topology.process(batch, state_of, sink, self.clock())
            topology.fire(due, state_of, sink)
            self.metrics.batch_process.observe(time.perf_counter() - started)
            if sent is not None:
                sent.store(self.partitions.states)
            changes = self.partitions.changes()
            committing = time.perf_counter()
            committer.commit(offsets, changes, self.consumer, sent)
        except Stuck:
            self.abandoned = True
            raise
        self.metrics.batch_commit.observe(time.perf_counter() - committing)
        if woke:  # durable now: a failed batch leaves it to the next session
            self.rejudge = False
        self.partitions.persist(changes, committer.changelog_offsets)
        if sent is not None:
            sent.forget_sent(self.partitions.states)
        self.metrics.flush()
        if batch:
            self.metrics.batch_size.observe(len(batch))
        self._show_lines()
        settle_garbage()

    # ------------------------------------------------------------------ expiry
    def _expiries(self) -> list[tuple[int, str]]:
        """Expiry timers due now (a second's records idle longer than the period), at most
        TIMERS_PER_TURN (each up to CHUNK records), found by looking at each owned
        partition's timer keys every hundredth of the period (at least every second, at
        most every minute: the memory store's lookup is a scan). A backlog found by one
        look is handed out over the next turns before looking again."""
        topology = self.topology
        if not self.expiry_backlog:
            now = time.monotonic()
            if now < self.next_expiry_check or not topology or not topology.ctx.expire_after:
                return []  # not yet, or expiry turned off
            period = topology.ctx.expire_after
            self.next_expiry_check = now + min(max(period / 100, 1.0), EXPIRY_CHECK_AT_MOST)
            end = idle_before(self.clock() - period)
            for p, state in list(self.partitions.states.items()):
                keys = state.keys_between(EXPIRY, end, TIMERS_PER_LOOK)
                self.expiry_backlog += [(p, key) for key in keys]
        owned = self.partitions.states
        due = [(p, k) for p, k in self.expiry_backlog[:TIMERS_PER_TURN] if p in owned]
        del self.expiry_backlog[:TIMERS_PER_TURN]
        return due

    # ------------------------------------------------------------------ configuration
    def _switch(self, config: Config, published: Published, *, starting: bool = False) -> None:
        """Run a published version from the next batch on: no restart, no rebalance.
        Its queues' topics are made first; state carries over (Topology.reconfigure)."""
        try:
            admin.ensure_topics(config, stop=self.stopping)
        except admin.Stopped:
            return  # stopping: the next start runs it
        previous, self.config = self.config.version, config
        self.switched = True
        self.metrics.declare(config.routing.queues, [r.name for r in config.routing.rules])
        if self.topology is not None:
            self.topology.reconfigure(config)
            self.rejudge = True
        self.metrics.running(config.version, self.clock(), switched=not starting)
        log.info(
            "configuration %s%s -> %s (published %s%s)",
            "at start: local files " if starting else "",
            previous,
            config.version,
            published.when,
            f": {published.note}" if published.note else "",
        )
        ignored = unpublished_overrides(os.environ)
        if ignored:
            log.warning(
                "%s set, but configuration %s decides %s: set %s in the files you publish",
                ", ".join(ignored),
                config.version,
                "these keys" if len(ignored) > 1 else "this key",
                "them" if len(ignored) > 1 else "it",
            )

    def _show_lines(self) -> None:
        """The waiting lines of the queue desks this worker owns, for the metrics."""
        topology, states = self.topology, self.partitions.states
        if topology is None:
            return
        lines = {}
        for queue in self.config.routing.queues:
            key = queue_desk_key(queue)
            state = states.get(topology.owner(key))
            if state is not None:
                lines[queue] = waiting_line(state.get(key))
        self.metrics.lines.lines = lines
