"""The `reference.accounts` table: read whole by every worker before any lead is scored,
then followed between batches. Every worker holds all of it (firmographics and owners are
small and read on every enrichment)."""

from __future__ import annotations

import logging

import orjson
from confluent_kafka import Message

from topics import contracts
from workers.core.enrich import AccountBook
from workers.runtime.clients import Clients
from workers.runtime.reference import ReferenceReader

log = logging.getLogger("leadrouter.worker")


class AccountsReader(ReferenceReader):
    purpose = "accounts"

    def __init__(self, clients: Clients, topic: str, book: AccountBook) -> None:
        super().__init__(clients, topic)
        self.book = book

    def load(self) -> None:
        super().load()
        log.info("accounts loaded: %d", len(self.book.by_domain))

    def _apply(self, msg: Message) -> None:
        key = msg.key()
        if not key:
            return
        domain = key.decode("utf-8", "replace")
        try:
            value = orjson.loads(msg.value()) if msg.value() is not None else None
        except orjson.JSONDecodeError:
            log.warning("reference.accounts offset %d: not JSON, ignored", msg.offset())
            return
        if value is not None:
            if not isinstance(value, dict):
                log.warning(
                    "reference.accounts offset %d (%s): not a JSON object, ignored",
                    msg.offset(),
                    domain,
                )
                return
            # Every worker reads the whole table, so nothing is dead-lettered here (each
            # would send its own copy); each takes the same fields, whenever it starts.
            value, wrong = contracts.account(value)
            for problem in wrong:
                log.warning(
                    "reference.accounts offset %d (%s): %s",
                    msg.offset(),
                    domain,
                    problem,
                    extra={"offset": msg.offset()},
                )
        self.book.put(domain, value)
