"""The replay benchmark (bench/replay.py) in seconds, so it cannot rot: both stores over a
small simulated stretch, each in a child process. The figures mean nothing here; the full
run is `python -m bench.replay` (and `make bench`)."""

from __future__ import annotations

from bench import replay as replay_bench


def test_replay_bench_runs_both_stores(capsys) -> None:
    result = replay_bench.main(["--events", "2000", "--store", "memory,disk"])
    printed = capsys.readouterr().out
    assert result is not None
    runs = result["runs"]
    assert [(r["source"], r["store"]) for r in runs] == [("sim", "memory"), ("sim", "disk")]
    for r in runs:
        assert "error" not in r, r.get("error")
        assert r["events"] == 2000 and r["leads"] > 0
        for side in ("baseline", "candidate"):
            assert r["per_configuration"][side]["events_per_s"] > 0
        assert r["ingest_events_per_s"] > 0  # the shared ingest is measured apart
        # the candidate's higher MQL threshold routes fewer leads
        per = r["per_configuration"]
        assert per["candidate"]["routed"] < per["baseline"]["routed"]
        assert r["changed_count"] > 0
        assert r["peak_rss_mib"] >= r["rss_before_mib"] > 0
    assert runs[0]["changed_count"] == runs[1]["changed_count"]  # disk decides as memory
    assert "sim, memory" in printed and "sim, disk" in printed and "peak RSS" in printed
    assert "ingest/s" in printed
