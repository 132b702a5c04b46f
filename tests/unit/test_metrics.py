"""Metrics counted per batch expose exactly what per-event counting would."""

from __future__ import annotations

from prometheus_client import generate_latest

from workers.metrics import Metrics


def exposed(metrics: Metrics) -> list[str]:
    text = generate_latest(metrics.registry).decode()
    return [
        line for line in text.splitlines() if not line.startswith("#") and "_created" not in line
    ]


def test_batched_counts_and_scores_equal_per_event_updates():
    batched, direct = Metrics(sources=["google"]), Metrics(sources=["google"])
    scores = [0, 5, 10, 10.5, 42, 99.99, 100]
    for value in scores:
        batched.scored(value)
        direct.lead_score.observe(value)
    for source in ("google", "GOOGLE", "tiktok", None):
        batched.generated("form", source)
        direct.generated_c.labels("form", direct.source(source)).inc()
    batched.flush()
    assert exposed(batched) == exposed(direct)
    assert 'leadrouter_leads_generated_total{channel="form",source="google"} 2.0' in exposed(
        batched
    )
    assert 'leadrouter_leads_generated_total{channel="form",source="other"} 1.0' in exposed(batched)


def test_known_label_sets_exist_at_zero():
    metrics = Metrics()
    metrics.declare(["fast-lane"], [])
    lines = exposed(metrics)
    assert 'leadrouter_sla_breaches_total{queue="fast-lane"} 0.0' in lines
    assert 'leadrouter_deadletters_total{reason="invalid_json"} 0.0' in lines
    assert 'leadrouter_events_total{outcome="duplicate",topic="marketing.form-fills"} 0.0' in lines
