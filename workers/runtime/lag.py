"""Consumer lag per input topic from librdkafka's periodic statistics: no extra broker round
trips on the processing thread."""

from __future__ import annotations

import orjson

from workers.metrics import Metrics


class LagGauge:
    def __init__(self, metrics: Metrics, prefix: str) -> None:
        self.metrics = metrics
        self.prefix = prefix
        self.read_committed = False
        self.reported: set[str] = set()

    def __call__(self, raw: str) -> None:
        """librdkafka's `stats_cb`."""
        try:
            stats = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        topics = stats.get("topics")
        if not topics:  # no metadata yet: nothing known, nothing to change
            return
        prefix = self.prefix
        lag: dict[str, int] = {}
        for topic, info in topics.items():
            name = topic[len(prefix) :] if topic.startswith(prefix) else topic
            for pid, part in (info.get("partitions") or {}).items():
                if pid == "-1" or part.get("fetch_state") not in ("active", "offset-query"):
                    continue
                end = part.get("ls_offset" if self.read_committed else "hi_offset", -1)
                position = part.get("app_offset", -1)
                if position < 0:
                    position = part.get("committed_offset", -1)
                if end >= 0 and position >= 0:
                    lag[name] = lag.get(name, 0) + max(0, end - position)
        for name in self.reported - lag.keys():  # nothing of it fetched here any more
            self.metrics.consumer_lag.labels(name).set(0)
        for name, value in lag.items():
            self.metrics.consumer_lag.labels(name).set(value)
        self.reported = set(lag)
