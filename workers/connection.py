"""Broker connection settings for both Kafka clients leadrouter uses: librdkafka
(confluent-kafka, the stream hot path) and kafka-python (admin: topics and accounts)."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from workers.settings import Settings


class NoBroker(Exception):
    """No bootstrap servers configured where one is needed."""


class Unreachable(Exception):
    """The configured broker did not answer in time: a command says so in one line (the
    admin client's error is a `BrokerUnreachable`, a Kafka error the worker retries)."""


def bootstrap(settings: Settings) -> str:
    servers = settings.kafka.bootstrap_servers
    if not servers:
        raise NoBroker(
            "no Kafka broker configured: set KAFKA_BOOTSTRAP_SERVERS or kafka.bootstrap_servers "
            "in settings.yaml (`leadrouter demo` starts an embedded broker by itself)"
        )
    return servers


def librdkafka_config(settings: Settings) -> dict[str, Any]:
    k = settings.kafka
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap(settings),
        "security.protocol": k.security_protocol,
        "client.id": "leadrouter",
    }
    if k.sasl_mechanism:
        conf["sasl.mechanism"] = k.sasl_mechanism
    if k.sasl_username:
        conf["sasl.username"] = k.sasl_username
    if k.sasl_password:
        conf["sasl.password"] = k.sasl_password.get_secret_value()
    if k.ssl_cafile:
        conf["ssl.ca.location"] = k.ssl_cafile
    if k.ssl_certfile:
        conf["ssl.certificate.location"] = k.ssl_certfile
    if k.ssl_keyfile:
        conf["ssl.key.location"] = k.ssl_keyfile
    return conf


def kafka_python_config(settings: Settings) -> dict[str, Any]:
    k = settings.kafka
    conf: dict[str, Any] = {
        "bootstrap_servers": bootstrap(settings).split(","),
        "security_protocol": k.security_protocol,
        "client_id": "leadrouter-admin",
    }
    if k.sasl_mechanism:
        conf["sasl_mechanism"] = k.sasl_mechanism
        conf["sasl_plain_username"] = k.sasl_username
        conf["sasl_plain_password"] = (
            k.sasl_password.get_secret_value() if k.sasl_password else None
        )
    if k.ssl_cafile:
        conf["ssl_cafile"] = k.ssl_cafile
    if k.ssl_certfile:
        conf["ssl_certfile"] = k.ssl_certfile
    if k.ssl_keyfile:
        conf["ssl_keyfile"] = k.ssl_keyfile
    return conf


def instance_id(settings: Settings) -> str:
    """Stable across restarts of one worker (host and data dir), distinct between workers,
    so a restarted worker fences its own unfinished transaction at once."""
    if settings.instance_id:
        return settings.instance_id
    data_dir = str(Path(settings.store.data_dir).resolve())
    suffix = hashlib.blake2b(data_dir.encode(), digest_size=4).hexdigest()
    return f"{socket.gethostname()}-{suffix}"


def data_dir(settings: Settings) -> Path:
    return Path(os.path.expanduser(settings.store.data_dir))


def faust_broker(settings: Settings) -> dict[str, Any]:
    """`faust.App` keyword arguments for the configured broker and its security settings
    (Faust reaches Kafka through aiokafka: an SSL context instead of file names)."""
    import ssl

    import faust

    k = settings.kafka
    conf: dict[str, Any] = {
        "broker": [f"kafka://{server.strip()}" for server in bootstrap(settings).split(",")]
    }
    context = None
    if k.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=k.ssl_cafile)
        if k.ssl_certfile:
            context.load_cert_chain(k.ssl_certfile, k.ssl_keyfile)
    if k.security_protocol.startswith("SASL_"):
        conf["broker_credentials"] = faust.SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value() if k.sasl_password else None,
            mechanism=k.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    elif context is not None:
        conf["broker_credentials"] = faust.SSLCredentials(context)
    return conf


T = TypeVar("T")
# Answers that mean "not yet" on a topic created a moment ago: its partitions' leaders are
# still being elected. librdkafka does not always mark them retriable.
NOT_YET = frozenset({"NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "UNKNOWN_TOPIC_OR_PART"})


def answered(ask: Callable[[], T], timeout: float) -> T:
    """A metadata answer, asked again while the broker says "not yet" or "retry", with a
    growing pause, up to `timeout` seconds."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    pause = 0.1
    while True:
        try:
            return ask()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            again = getattr(error, "retriable", lambda: False)() or (
                getattr(error, "name", lambda: "")() in NOT_YET
            )
            if not again or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 2.0)
