"""A restore under exactly_once reads the changelog to the end of the log, not to the last
stable offset: a transaction still open when a partition is assigned is either the
previous owner's last batch (committed, its markers not yet written) or a dead member's
(aborted at its transaction timeout). The group's offsets move past the first kind's
input, so a restore that stopped short of it would lose that batch's state for good; this
was seen once as 71 touches missing from their leads' dedupe memory after a rebalance with
a member killed (test_rebalance.py).

A worker that starts while a dead member's transaction is still open must not take it for a
broker whose transactions cannot be read: with `auto` it would run at_least_once in a group
that runs exactly_once (seen as 16 touches published twice in test_rebalance.py).

Nor may the fault tests' audit run while such a transaction holds up the work behind it
(`wait_settled`)."""

from __future__ import annotations

import logging
import threading

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.faults import INPUTS, ROUTED, wait_settled
from tests.support.worker import unique, wait_until
from topics import catalogue as cat
from workers.runtime.clients import Clients
from workers.runtime.commit import Committer
from workers.runtime.partitions import Partitions
from workers.runtime.timers import Timers
from workers.settings import load_config

pytestmark = pytest.mark.integration


def transactional(bootstrap: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("tx")})
    producer.init_transactions(30)
    return producer


@pytest.mark.parametrize("ending", ["commit", "abort"])
def test_a_restore_waits_for_a_transaction_open_in_the_changelog(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture, ending: str
) -> None:
    caplog.set_level(logging.INFO, logger="leadrouter.worker")
    changelog = unique("o") + "." + cat.CHANGELOG
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for done in admin.create_topics([NewTopic(changelog, 1, 1)]).values():
        done.result(30)
    earlier = transactional(kafka_bootstrap)
    earlier.begin_transaction()
    for lead in (b"lead-1", b"lead-2"):
        earlier.produce(changelog, orjson.dumps({"n": 1}), lead, 0)
    earlier.commit_transaction(30)
    last = transactional(kafka_bootstrap)
    last.begin_transaction()
    last.produce(changelog, orjson.dumps({"n": 2}), b"lead-1", 0)
    assert last.flush(30) == 0  # on the broker, in a transaction still open

    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "LEADROUTER_STORE": "memory"}
    settings = load_config(env=env).settings
    owned = Partitions(settings, Clients(settings, unique("host")), changelog, Timers())
    owned.read_committed = True
    failures: list[BaseException] = []

    def restore() -> None:
        try:
            owned.restore([0])
        except BaseException as exc:
            failures.append(exc)

    restoring = threading.Thread(target=restore, daemon=True)
    restoring.start()
    wait_until(
        lambda: "a transaction is open" in caplog.text or not restoring.is_alive(),
        60,
        "the restore to see the open transaction",
    )
    assert restoring.is_alive() and not failures, (
        f"the restore ended while a transaction was open: {failures or caplog.text}"
    )
    if ending == "commit":
        last.commit_transaction(30)
    else:
        last.abort_transaction(30)
    restoring.join(60)
    assert not restoring.is_alive() and not failures, failures
    state = owned.state_of(0)
    assert state is not None
    assert state.get("lead-1") == {"n": 2 if ending == "commit" else 1}
    assert state.get("lead-2") == {"n": 1}
    owned.drop_all()


def test_a_transaction_left_open_does_not_turn_a_new_worker_to_at_least_once(
    kafka_bootstrap: str,
) -> None:
    changelog = unique("o") + "." + cat.CHANGELOG
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for done in admin.create_topics([NewTopic(changelog, 3, 1)]).values():
        done.result(30)
    dead = transactional(kafka_bootstrap)  # a member killed mid-batch: never ends it
    dead.begin_transaction()
    dead.produce(changelog, orjson.dumps({"n": 1}), b"lead-1", 0)
    assert dead.flush(30) == 0
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "LEADROUTER_STORE": "memory"}
    settings = load_config(env=env).settings
    committer = Committer(Clients(settings, unique("host")), "auto", changelog)
    try:
        assert committer.exactly_once, "a transaction left open was taken for unusable ones"
    finally:
        committer.producer.flush(10)
        dead.abort_transaction(30)


def test_the_audit_waits_for_a_transaction_left_open(kafka_bootstrap: str) -> None:
    """A member killed mid-batch leaves records on the internal topic in an open transaction:
    nothing behind them is read until the broker aborts it, so the pipeline looks idle while
    its work waits. `wait_settled` returned in that pause once, and the audit counted 1,938
    leads never assigned that were only not assigned yet."""
    prefix = unique("o") + "."
    group = unique("g")
    names = (*INPUTS, *ROUTED, cat.DEADLETTER, cat.INTERNAL, cat.CHANGELOG)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for done in admin.create_topics([NewTopic(prefix + n, 1, 1) for n in names]).values():
        done.result(30)
    dead = transactional(kafka_bootstrap)
    dead.begin_transaction()
    dead.produce(prefix + cat.INTERNAL, b"{}", b"lead-1", 0)
    assert dead.flush(30) == 0
    try:
        with pytest.raises(AssertionError, match="transactions open in") as held:
            wait_settled(kafka_bootstrap, prefix, group, timeout=6)
        assert prefix + cat.INTERNAL in str(held.value)
    finally:
        dead.abort_transaction(30)
    wait_settled(kafka_bootstrap, prefix, group, timeout=60)  # settles once it has ended
