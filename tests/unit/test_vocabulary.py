"""The contract's vocabularies are defined once (topics/vocabulary.py, topics/catalogue.py);
the few places that must write one out again (the benchmark's baselines import nothing of
leadrouter) are held to it here."""

from __future__ import annotations

from bench import contenders
from topics import catalogue as cat
from topics import vocabulary
from topics.contracts import ACTIVITY_TYPES, AD_PLATFORMS, EMAIL_TYPES, REASONS
from workers.core.feedback import ACTIVITY_RANK
from workers.metrics import CHANNEL_TOPIC


def test_baselines_use_the_catalogue_names():
    marketing = [t for t, kind in cat.INPUT_KINDS.items() if kind != vocabulary.SALES_ACTIVITY]
    assert list(contenders.INPUT_TOPICS) == marketing
    assert contenders.DEADLETTER == cat.DEADLETTER


def test_validation_metrics_and_core_share_the_vocabularies():
    assert REASONS == vocabulary.INVALID_REASONS
    assert set(vocabulary.ACTIVITY_TYPES) == ACTIVITY_TYPES
    assert set(vocabulary.EMAIL_TYPES) == EMAIL_TYPES
    assert set(vocabulary.AD_PLATFORMS) == AD_PLATFORMS
    assert set(ACTIVITY_RANK) == set(vocabulary.ACTIVITY_TYPES)
    assert all(ACTIVITY_RANK[k] == ACTIVITY_RANK["won"] for k in vocabulary.CLOSING)
    assert set(vocabulary.EMAIL_FLAGS) <= EMAIL_TYPES
    assert set(vocabulary.RECYCLING) <= set(vocabulary.CLOSING)
    assert set(CHANNEL_TOPIC.values()) == {cat.FORM_FILLS, cat.EMAIL_EVENTS, cat.AD_CLICKS}
