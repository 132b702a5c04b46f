"""A short run of the benchmark harness (issue 5), so that it cannot rot: a tiny workload
through every contender on the session's reference broker. The figures mean nothing here;
the full run is `make bench`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from bench import procs
from bench import run as bench_run

pytestmark = pytest.mark.integration


def test_bench_smoke(kafka_broker, tmp_path, capsys):
    checkout_before = set(procs.REPO_ROOT.iterdir())
    results = bench_run.main(
        [
            "--events", "2000",
            "--rate", "200",
            "--latency-seconds", "2",
            "--warmup", "0.5",
            "--settle", "1",
            "--scale", "2",  # make bench also runs four workers
            "--million",
            "--million-leads", "1500",
            "--expiry-seconds", "3",
            "--quix-commit-interval", "0.5",  # (d)'s default 5 s would mostly be waiting
            "--results-dir", str(tmp_path),
        ],
        broker=kafka_broker,
    )  # fmt: skip
    printed = capsys.readouterr().out
    # the contenders run in the checkout: none leaves a folder there (faust's data directory)
    assert unignored(set(procs.REPO_ROOT.iterdir()) - checkout_before) == set()

    contenders = results["contenders"]
    assert set(contenders) == {
        "raw_aiokafka",
        "faust_naive",
        "quix_streams",
        "leadrouter",
        "leadrouter_alo",
    }
    alo = contenders.pop("leadrouter_alo")  # latency only: what the transactions cost
    assert "error" not in alo, alo.get("error")
    assert alo["latency"]["samples"] > 0 and alo["latency"]["p99_ms"] > 0
    assert alo["guarantee"] == "at_least_once" and alo["label"] in printed
    # where its latency run's time went, as for exactly_once: the batch cycle's two halves
    for r in (alo, contenders["leadrouter"]):
        lat = r["latency"]
        assert lat["batches"] > 0 and lat["avg_batch_records"] > 0, r["label"]
        assert lat["avg_batch_process_ms"] > 0 and lat["avg_batch_commit_ms"] > 0, r["label"]
        assert f"{r['label']}, latency run: {lat['batches']:,} batches" in printed
    for name, r in contenders.items():
        assert "error" not in r, f"{name}: {r.get('error')}"
        t = r["throughput"]
        assert t["events_per_s"] > 0 and t["elapsed_s"] > 0, name
        assert t["cpu_seconds"] >= 0 and t["peak_rss_mib"] > 0, name
        assert r["latency"]["samples"] > 0 and r["latency"]["p99_ms"] > 0, name
        assert r["latency"]["offered_rate"] > 150, name
        assert r["label"] in printed
    for name in ("raw_aiokafka", "faust_naive", "quix_streams"):  # one output per input
        assert contenders[name]["throughput"]["outputs"] == 2000
    quix = contenders["quix_streams"]
    # its own venv, exactly-once: every latency event came out once (no duplicate, none lost)
    assert quix["latency"]["outputs"] == quix["latency"]["sent"]
    # what it counted itself: the malformed share to the dead-letter topic, the rest through
    # the state, in which returning leads were seen more than once
    counted = quix["counted"]
    assert counted["outputs"] + counted["deadletter"] == 2000 + quix["latency"]["sent"]
    assert 0 < counted["deadletter"] < 100
    assert counted["max_touches"] > 1
    lr = contenders["leadrouter"]["throughput"]
    assert lr["events_counted"] == 2000
    assert lr["outputs"] > 0  # routed outputs were consumed and counted
    assert lr["leads_routed"] > 0
    assert set(results["scale"]) == {"2"}
    scale = results["scale"]["2"]
    assert "error" not in scale, scale.get("error")
    assert scale["processes"] == 2 and scale["throughput"]["events_per_s"] > 0
    assert scale["throughput"]["outputs"] > 0
    # one worker owns every partition, so nothing crosses the internal topic; two do not
    assert lr["internal_records"] == 0
    assert scale["throughput"]["internal_records"] > 0
    assert results["ratios"]["leadrouter 2 procs / 1 proc (events/CPU-s)"] > 0
    assert "events per worker CPU-s, 2 workers / 1" in results["targets"]
    assert "scaling: one group, same workload" in printed
    million = results["million"]
    assert "error" not in million, million.get("error")
    assert million["leads_generated"] == 1500
    assert million["peak_rss_mib"] > 0 and million["data_dir_mib_running"] > 0
    grown = million["rss_mib_by_leads"]  # RSS when a quarter, half and all were counted
    assert [leads for leads, _ in grown] == [375, 750, 1500] and all(r > 0 for _, r in grown)
    assert "RSS as the leads grow: 375 leads" in printed
    assert million["expiry"]["leads_expired"] == 1500  # every lead, by its timer
    assert "leads removed by their timers" in printed
    for name in ("raw_aiokafka", "faust_naive", "quix_streams"):
        assert results["ratios"][f"leadrouter / {name} (events/s)"] > 0
    assert results["workload"]["events"] == 2000 and results["machine"]["nproc"]
    assert results["broker"]["version"]

    stored = orjson.loads(Path(results["json_path"]).read_bytes())
    assert set(stored["contenders"]) == {*contenders, "leadrouter_alo"}
    assert stored["ratios"] == results["ratios"]
    assert "events/s" in printed and "p99 ms" in printed


def unignored(paths: set[Path]) -> set[Path]:
    """Those of `paths` that git does not ignore: the Quix contender's virtualenv
    (`.venv-quix`, made on a first run) is meant to stay; anything else is litter."""
    if not paths:
        return set()
    done = subprocess.run(
        ["git", "check-ignore", "--stdin"],
        input="\n".join(str(p) for p in paths),
        cwd=procs.REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: none of them is ignored
    ignored = set(done.stdout.split())
    return {p for p in paths if str(p) not in ignored}
