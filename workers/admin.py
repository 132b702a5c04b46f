"""Topics as code, and the accounts loader: kafka-python admin and producer.

`apply` makes the broker match the catalogue (creates topics, raises partition counts,
sets configs) and is safe to run again; `check` only reports the drift.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka import errors as KafkaErrors
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, MemberToRemove
from kafka.errors import (
    IncompatibleBrokerVersion,
    KafkaError,
    TopicAlreadyExistsError,
    UnsupportedVersionError,
)

from topics.catalogue import ACCOUNTS, TopicSpec, catalogue
from workers.connection import Unreachable, kafka_python_config
from workers.logs import broker_reachable
from workers.settings import Config

log = logging.getLogger("leadrouter.admin")


def specs_for(config: Config) -> list[TopicSpec]:
    k = config.settings.kafka
    return catalogue(
        config.routing.queues,
        prefix=k.topic_prefix,
        partitions=k.partitions,
        replication_factor=k.replication_factor,
    )


class Stopped(Exception):
    """Asked to stop while waiting for the broker."""


class BrokerUnreachable(KafkaError, Unreachable):
    """No answer from the broker within the admin deadline."""

    def __str__(self) -> str:  # the message alone (KafkaError puts its class name first)
        return str(self.args[0])


# How long an admin client waits for the broker to answer (it may still be starting).
ADMIN_DEADLINE = 60.0


def _admin(
    config: Config, deadline: float | None = None, stop: threading.Event | None = None
) -> KafkaAdminClient:
    """An admin client, retried until the broker answers (it may still be starting). Each
    attempt is short, so a worker asked to stop meanwhile stops within seconds."""
    deadline = ADMIN_DEADLINE if deadline is None else deadline
    end = time.monotonic() + deadline
    while True:
        if stop is not None and stop.is_set():
            raise Stopped()
        try:
            admin = KafkaAdminClient(
                **kafka_python_config(config.settings),
                request_timeout_ms=5000,
                bootstrap_timeout_ms=3000,
                reconnect_backoff_max_ms=1000,
            )
            broker_reachable()  # ends an outage kafka-python's logs announced (workers/logs.py)
            return admin
        except KafkaError as exc:
            if time.monotonic() > end:
                raise BrokerUnreachable(
                    f"no answer from the broker at {config.settings.kafka.bootstrap_servers} "
                    f"within {deadline:.0f} s ({exc})"
                ) from exc
            if stop is not None:
                stop.wait(0.5)
            else:
                time.sleep(0.5)


def _describe(admin: KafkaAdminClient, specs: list[TopicSpec]) -> dict[str, dict[str, Any]]:
    """Existing topics among `specs`: partition count, replication factor (the fewest replicas
    of any partition) and those of the catalogue's configs that the broker reports (a key it
    does not report is absent, not None).

    Every config of each topic is asked for, and the catalogue's keys are picked out here:
    Tansu (the embedded broker) cannot decode a DescribeConfigs that names keys, in any
    request version, and drops the connection (its log: KafkaProtocol(StringWithoutLength)).
    Tansu reports only the keys set on a topic (at creation or since), each as
    DEFAULT_CONFIG, hence the "all" filter."""
    existing = set(admin.list_topics())
    present = [s for s in specs if s.name in existing]
    if not present:
        return {}
    topics = admin.describe_topics([s.name for s in present])
    partitions = {t["name"]: len(t["partitions"]) for t in topics}
    # the fewest replicas any partition has: what the topic's durability rests on
    replication = {
        t["name"]: min((len(p.get("replica_nodes") or ()) for p in t["partitions"]), default=0)
        for t in topics
    }
    resources = [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in present]
    described = admin.describe_configs(resources, config_filter="all")
    configs: dict[str, dict[str, str | None]] = {}
    for by_name in described.values():
        for name, entries in by_name.items():
            configs[name] = {k: (v or {}).get("value") for k, v in entries.items()}
    return {
        s.name: {
            "partitions": partitions.get(s.name, 0),
            "replication": replication.get(s.name, 0),
            "config": {k: v for k, v in configs.get(s.name, {}).items() if k in s.config},
        }
        for s in present
    }


def _unreported(spec: TopicSpec, have: dict[str, Any]) -> list[str]:
    return [key for key in spec.config if key not in have["config"]]


def drift(config: Config) -> list[str]:
    """Every difference between the broker and the catalogue, one line each. A config the
    broker does not report is not a difference: it is logged as a warning (it cannot be
    checked here), since guessing the broker's default would report drift that is not."""
    specs = specs_for(config)
    admin = _admin(config)
    try:
        actual = _describe(admin, specs)
    finally:
        admin.close()
    problems = []
    for spec in specs:
        have = actual.get(spec.name)
        if have is None:
            problems.append(f"{spec.name}: missing")
            continue
        if have["partitions"] != spec.partitions:
            fixed = not spec.public and have["partitions"] < spec.partitions
            why = FIXED_PARTITIONS if fixed else None
            problems.append(_partitions_differ(spec, have["partitions"], why))
        replication = _replication_differs(spec, have)
        if replication:
            problems.append(replication)
        for key, want in spec.config.items():
            if key not in have["config"]:
                continue
            if have["config"][key] != want:
                problems.append(f"{spec.name}: {key}={have['config'][key]}, catalogue says {want}")
        for key in _unreported(spec, have):
            log.warning(
                "%s: %s not reported by this broker, so it cannot be checked (catalogue says "
                "%s; `leadrouter topics apply` sets it)",
                spec.name,
                key,
                spec.config[key],
                extra={"topic": spec.name, "config": key},
            )
    return problems


def apply(
    config: Config, *, only_missing: bool = False, stop: threading.Event | None = None
) -> list[str]:
    """Create what is missing and correct what drifted; returns what was done. Run again,
    it does nothing, on Apache Kafka as on Tansu."""
    specs = specs_for(config)
    admin = _admin(config, stop=stop)
    done: list[str] = []
    try:
        if only_missing:
            existing = set(admin.list_topics())
            actual: dict[str, dict[str, Any]] = {s.name: {} for s in specs if s.name in existing}
        else:
            actual = _describe(admin, specs)
        missing = [s for s in specs if s.name not in actual]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a peer was first
                admin.create_topics(
                    {
                        s.name: {
                            "num_partitions": s.partitions,
                            "replication_factor": s.replication_factor,
                            "configs": s.config,
                        }
                        for s in missing
                    },
                    wait_for_metadata=True,
                )
            done += [f"{s.name}: created ({s.partitions} partitions)" for s in missing]
        if only_missing:
            return done
        done += _grow(admin, specs, actual)
        done += _set_configs(admin, specs, actual)
        for s in specs:  # told, not changed (and not counted as a change)
            replication = _replication_differs(s, actual.get(s.name, {}))
            if replication:
                log.warning("%s", replication)
    finally:
        admin.close()
    return done


def _partitions_differ(spec: TopicSpec, have: int, why: str | None = None) -> str:
    line = f"{spec.name}: {have} partitions, catalogue says {spec.partitions}"
    return f"{line}; {why}" if why else line


def _replication_differs(spec: TopicSpec, have: dict[str, Any]) -> str | None:
    """The line for a replication factor the broker reports other than the catalogue's."""
    replicas = have.get("replication")
    if not replicas or replicas == spec.replication_factor:
        return None
    return (
        f"{spec.name}: replication factor {replicas}, catalogue says "
        f"{spec.replication_factor}; {REPLICATION_FIXED}"
    )


# Why `topics apply` leaves a replication factor as it is.
REPLICATION_FIXED = (
    "`topics apply` does not change it: move the replicas with the broker's partition "
    "reassignment (kafka-reassign-partitions.sh)"
)

# Why the state topics keep the partition count they were created with.
FIXED_PARTITIONS = (
    "state is partitioned by key over these partitions (crc32(key) % partitions), so more "
    "would part leads, visitors and queue desks from their state; left as is (docs/scaling.md)"
)


def _grow(
    admin: KafkaAdminClient, specs: list[TopicSpec], actual: dict[str, dict[str, Any]]
) -> list[str]:
    """Raise partition counts to the catalogue's; never lower them (Kafka cannot), and never
    raise those of the internal topic and the changelog (FIXED_PARTITIONS)."""
    done = []
    short = [s for s in specs if s.name in actual and actual[s.name]["partitions"] < s.partitions]
    for s in short:
        if not s.public:
            done.append(_partitions_differ(s, actual[s.name]["partitions"], FIXED_PARTITIONS))
            log.warning("%s", done[-1])
    grow = [s for s in short if s.public]
    if grow:
        try:
            admin.create_partitions({s.name: s.partitions for s in grow})
            done += [f"{s.name}: partitions raised to {s.partitions}" for s in grow]
        except (IncompatibleBrokerVersion, UnsupportedVersionError):
            # Tansu 0.6 does not offer CreatePartitions at all.
            for s in grow:
                why = "this broker cannot add partitions (no CreatePartitions), left as is"
                done.append(_partitions_differ(s, actual[s.name]["partitions"], why))
                log.warning("%s", done[-1])
    for s in specs:
        if s.name in actual and actual[s.name]["partitions"] > s.partitions:
            done.append(f"{s.name}: has more partitions than the catalogue; left as is")
    return done


def _set_configs(
    admin: KafkaAdminClient, specs: list[TopicSpec], actual: dict[str, dict[str, Any]]
) -> list[str]:
    """Set every config that differs from the catalogue or that the broker does not report
    (setting it is harmless, and a broker that stores what it is given, like Tansu, reports
    it from then on). Incremental only: Tansu has no legacy AlterConfigs, and a legacy
    AlterConfigs would reset every key not named. Keys are not validated against a describe
    first (raise_on_unknown): Tansu describes only keys already set; the broker itself
    rejects a key it does not know, and that answer is checked here."""
    done = []
    for s in specs:
        have = actual.get(s.name)
        if have is None:
            continue
        changed = {k: v for k, v in s.config.items() if have["config"].get(k) != v}
        if not changed:
            continue
        result = admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    s.name,
                    configs={k: ("SET", v) for k, v in changed.items()},
                )
            ],
            incremental=True,
            raise_on_unknown=False,
        )
        outcome = result.get("topic", {}).get(s.name, "OK")
        if outcome != "OK":
            raise KafkaError(f"{s.name}: setting {', '.join(changed)} failed: {outcome}")
        unreported = set(_unreported(s, have))
        done.append(
            f"{s.name}: set "
            + ", ".join(
                f"{k}={v}" + (" (was not reported by this broker)" if k in unreported else "")
                for k, v in changed.items()
            )
        )
    return done


def ensure_topics(config: Config, stop: threading.Event | None = None) -> None:
    """At worker start: create any missing topic, change nothing else."""
    for line in apply(config, only_missing=True, stop=stop):
        log.info("topic %s", line)


ACCOUNT_FIELDS = ("domain", "name", "employees", "industry", "country", "owner")


def leave_group(config: Config, instance: str, deadline: float = 5.0) -> bool:
    """Take a static member (group.instance.id) out of the worker's group now: a closing
    static member does not leave by itself (KIP-345), so without this its partitions would
    wait out the session timeout before moving to the workers that remain. Bounded; False
    (logged) when the broker did not take it, and then the session timeout still ends it."""
    group = config.settings.kafka.group_id
    try:
        admin = _admin(config, deadline=deadline)
    except KafkaError as exc:
        log.warning("could not leave group %s as %s: %s", group, instance, exc)
        return False
    try:
        answers = admin.remove_group_members(group, [MemberToRemove(group_instance_id=instance)])
        # Not a member (any more): a broker that keeps no static members (the embedded demo
        # broker) has nothing to take out.
        done = (KafkaErrors.NoError, KafkaErrors.UnknownMemberIdError)
        failed = [str(err) for err in answers.values() if err not in done]
        if failed:
            log.warning("could not leave group %s as %s: %s", group, instance, failed[0])
            return False
        return True
    except KafkaError as exc:
        log.warning("could not leave group %s as %s: %s", group, instance, exc)
        return False
    finally:
        admin.close()


class AccountFileError(Exception):
    pass


def read_accounts(path: Path) -> list[dict[str, Any]]:
    """Accounts from a CSV with a header row; `domain` and `name` are required per row."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise AccountFileError(f"{path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if "domain" not in header or "name" not in header:
            raise AccountFileError(f"{path}: header must include domain and name, got {header}")
        rows = []
        for line, row in enumerate(reader, start=2):
            domain = (row.get("domain") or "").strip().lower()
            if not domain or "." not in domain:
                raise AccountFileError(f"{path}: line {line}: domain {domain!r} is not a domain")
            account: dict[str, Any] = {
                k: (row.get(k) or "").strip() or None for k in ACCOUNT_FIELDS
            }
            account["domain"] = domain
            if account["employees"] is not None:
                try:
                    account["employees"] = int(account["employees"])
                except ValueError:
                    raise AccountFileError(
                        f"{path}: line {line}: employees {account['employees']!r} is not a number"
                    ) from None
            if account["country"]:
                account["country"] = account["country"].upper()
            rows.append(account)
    return rows


def load_accounts(config: Config, accounts: Iterable[dict[str, Any]]) -> int:
    """Publish accounts to the compacted `reference.accounts` topic, keyed by domain."""
    producer = KafkaProducer(**kafka_python_config(config.settings), acks="all", linger_ms=5)
    topic = config.settings.kafka.topic_prefix + ACCOUNTS
    count = 0
    try:
        for account in accounts:
            producer.send(topic, key=account["domain"].encode(), value=orjson.dumps(account))
            count += 1
        producer.flush(60)
    finally:
        producer.close()
    return count
