"""Background traffic for integration tests: form fills at a steady pace from a thread, so
that what a test does (publish a version, erase a person) happens under traffic."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from topics import catalogue as cat


class SteadyForms:
    """`form_of(n)` sent every `every` seconds until the with-block ends; `sent` counts."""

    def __init__(self, lane: Any, form_of: Callable[[int], dict], every: float = 0.1) -> None:
        self.lane, self.form_of, self.every = lane, form_of, every
        self.sent = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(self.every):
            self.lane.topics.send(cat.FORM_FILLS, self.form_of(self.sent))
            self.sent += 1
            if self.sent % 10 == 0:
                self.lane.topics.flush()

    def __enter__(self) -> SteadyForms:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.lane.topics.flush()
