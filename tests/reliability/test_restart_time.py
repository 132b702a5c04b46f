"""Issue 15, point 6: restart time. A worker is a static group member (group.instance.id,
its instance: host and data dir): SIGKILLed and started again, it takes its partitions back
as soon as it joins, without waiting out the dead process's session (10 s) and without a
rebalance; stopped for good (SIGTERM), it takes itself out of the group, so the workers
that remain take its partitions at once rather than after the session timeout."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest

from tests.reliability.conftest import Rig
from tests.support.faults import Mix
from tests.support.worker import wait_until

pytestmark = pytest.mark.integration
SESSION_TIMEOUT = 10.0  # workers/runtime/clients.py


def logged_at(log: str, pattern: str) -> list[float]:
    """The times of the log lines matching `pattern` (the worker's text format)."""
    out = []
    for line in log.splitlines():
        if re.search(pattern, line):
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            out.append(stamp.timestamp())
    return out


def test_a_killed_worker_is_back_in_seconds_and_a_stopped_one_hands_over_at_once(rig: Rig, figures):
    mix = Mix(15, rig.prefix.rstrip("."))
    w1 = rig.worker("w1").launch().wait_ready()
    traffic = rig.traffic(mix, 200).start()
    wait_until(lambda: mix.assigned_seen > 30, 60, "routing before the kill")
    w1.kill()
    killed = time.monotonic()
    w1.launch()
    wait_until(
        lambda: len(re.findall(r"assigned \d+ partitions", w1.log_text())) >= 2,
        60,
        "the restarted worker's assignment",
    )
    seen = mix.assigned_seen
    wait_until(lambda: mix.assigned_seen > seen + 10, 60, "routing after the restart")
    resumed = time.monotonic() - killed
    log = w1.log_text()
    consuming = logged_at(log, r"consuming \d+ topics")[-1]
    assigned = logged_at(log, r"assigned \d+ partitions")[-1]
    joined = assigned - consuming
    # Without static membership the join waits for the dead member's session to end.
    assert joined < SESSION_TIMEOUT * 0.3, f"took {joined:.1f} s from consuming to assigned"
    assert len(re.findall(r"assigned \d+ partitions", log)) == 2, "one assignment per start"

    w2 = rig.worker("w2").launch().wait_ready()
    wait_until(lambda: re.search(r"assigned \d+ partitions", w2.log_text()), 60, "w2 to join")
    stopping = time.time()  # w1 leaves before it has exited: w2 may take over meanwhile
    w1.stop()  # SIGTERM: for good
    wait_until(
        lambda: any(t > stopping for t in logged_at(w2.log_text(), r"assigned 36 partitions")),
        60,
        "w2 to take every partition",
    )
    handed = max(logged_at(w2.log_text(), r"assigned 36 partitions")) - stopping
    # without leaving, the session timeout (10 s) would run from the consumer closing
    assert handed < SESSION_TIMEOUT * 0.8, f"w2 took every partition {handed:.1f} s after SIGTERM"
    seen = mix.assigned_seen
    wait_until(lambda: mix.assigned_seen > seen + 10, 60, "routing by w2 alone")
    traffic.stop()
    assert "Traceback" not in w1.log_text() + w2.log_text()
    figures(
        {
            "killed_to_routing_s": round(resumed, 1),
            "consuming_to_assigned_s": round(joined, 2),
            "sigterm_to_handed_over_s": round(handed, 2),
        }
    )
