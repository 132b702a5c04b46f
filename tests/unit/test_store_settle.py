"""A value encoded when its handler settles it (workers/store.py, PartitionState.settle) must
be what the batch's end would have encoded: the changelog and a restore depend on it."""

from __future__ import annotations

import orjson

from bench import core
from workers.store import MemoryBackend, PartitionState


def test_settle_encodes_the_handlers_key_and_a_later_change_is_encoded_again():
    state = PartitionState(0, MemoryBackend())
    state.put("lead-1", {"n": 1})
    state.put("q:smb", {"waiting": []})
    state.settle("lead-1")
    assert state.encoded == {"lead-1": b'{"n":1}'}  # the desk is left to the batch's end
    lead = state.get("lead-1")  # another handler reads it and changes it in place
    assert lead is not None
    lead["n"] = 2
    state.settle("v:visitor")  # ...and settles its own key, not this one
    assert "lead-1" not in state.encoded
    assert state.pending() == {b"lead-1": b'{"n":2}', b"q:smb": b'{"waiting":[]}'}


def test_a_value_touched_outside_any_handler_is_encoded_at_the_batch_end():
    state = PartitionState(0, MemoryBackend())
    state.put("lead-1", {"n": 1})
    state.settle("lead-1")
    state.get("lead-1")["n"] = 5  # type: ignore[index]  # e.g. a desk woken after a switch
    assert state.pending() == {b"lead-1": b'{"n":5}'}
    assert state.encoded == {} and state.touched == []


def test_every_settled_value_in_the_workload_matches_its_value_at_the_batch_end(monkeypatch):
    """The whole pipeline over the benchmark's workload: in every batch, each changelog
    value equals a fresh encoding of the value held when the batch ends. A handler that
    changed a value it did not read or write through the state would fail this."""
    checked = {"early": 0, "all": 0}
    pending = PartitionState.pending

    def checking(self: PartitionState) -> dict[bytes, bytes | None]:
        early = {k: v for k, v in self.encoded.items() if k not in self.touched}
        expected = {
            key.encode(): None if self.values[key] is None else orjson.dumps(self.values[key])
            for key in self.dirty
        }
        writes = pending(self)
        assert writes == expected
        checked["early"] += len(early)
        checked["all"] += len(writes)
        return writes

    monkeypatch.setattr(PartitionState, "pending", checking)
    rig = core.rig(events=6000, batch=500, seed=11)
    for batch in rig.work:
        rig.run_batch(batch)
    assert checked["all"] > 3000
    assert checked["early"] > checked["all"] / 3  # most values were settled by their handler
