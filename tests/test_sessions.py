"""SessionStore and state export/import, with real models and an injected clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _models import copy_as, default_model_dir

import eddy.runtime as runtime
from eddy.runtime.core.errors import FailedPrecondition, InvalidInput, NotFound, ResourceExhausted, Unauthenticated
from eddy.runtime.core.monitor import MONITOR
from eddy.runtime.core.statecodec import ExportedState, decode_state
from eddy.runtime.serving.batcher import Batcher
from eddy.runtime.serving.store import MemoryStore as SessionStore


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    base = default_model_dir(root)
    return {"base": base, "v2": copy_as(base, root / "copy" / "2", version=2),
            "other": copy_as(base, root / "other" / "1", name="other", version=1)}


@pytest.fixture(scope="module")
def model(model_dirs) -> runtime.Model:
    return runtime.load(model_dirs["base"])


@pytest.fixture(scope="module")
def series(model) -> np.ndarray:
    return (np.random.default_rng(0).normal(size=(120, model.n_features)) * 60 + 78).astype(np.float32)  # [N, F]


def _push(session, x):
    return asyncio.run(Batcher(enabled=False).run(session, x))


def _same(a, b) -> bool:
    return a.position == b.position and all(np.array_equal(a.state[k], b.state[k]) for k in a.state)


def _frozen(s) -> SimpleNamespace:
    return SimpleNamespace(position=s.position, state={k: v.copy() for k, v in s.state.items()})


def test_new_resume_and_unknown_id(model, series):
    store = SessionStore()
    a = store.acquire(model)
    assert len(a.id) == 32 and a.busy and a.position == 0 and len(store) == 1
    assert all(not v.any() and v.shape == (1, *s.shape) for s, v in zip(model.state_spec, a.state.values()))
    _push(a, series[:10])
    store.release(a)
    assert not a.busy
    again = store.acquire(model, a.id)
    assert again.id == a.id and again.position == 10 and store.stats.resumed == 1  # a handle on the same row
    fresh = store.acquire(model, "device-42")
    assert fresh.id == "device-42" and fresh.position == 0 and len(store) == 2
    with pytest.raises(InvalidInput):
        store.acquire(model, "x" * 500)


def test_busy_session_is_refused_and_the_holder_is_unaffected(model, series):
    store = SessionStore()
    holder = store.acquire(model, "s1", owner="stream-A")
    _push(holder, series[:5])
    before = _frozen(holder)
    with pytest.raises(FailedPrecondition, match="session s1 is in use by another stream"):
        store.acquire(model, "s1", owner="stream-B")
    with pytest.raises(FailedPrecondition, match="in use"):
        store.close("s1")
    assert holder.owner == "stream-A" and _same(holder, before) and store.stats.rejected_busy == 1
    _push(holder, series[5:6])  # the holder carries on
    assert holder.position == 6
    assert store.busy_count == 1  # the refused acquire did not count as a holder


def test_busy_count_follows_acquire_release_close_and_eviction(model):
    clock = [0.0]
    store = SessionStore(ttl_s=10, clock=lambda: clock[0])

    def recount() -> int:
        return sum(1 for sid in ("a", "b", "c") if (s := store.get(sid)) is not None and s.busy)

    a, b = store.acquire(model, "a"), store.acquire(model, "b")
    assert store.busy_count == recount() == 2
    store.release(a)
    store.release(a)  # twice is harmless
    assert store.busy_count == recount() == 1
    store.close(b)  # the holder closes its own session
    store.release(b)  # release after close
    assert store.busy_count == recount() == 0
    store.acquire(model, "a")
    c = store.acquire(model, "c")
    store.release(c)
    clock[0] = 100.0
    assert store.evict_expired() == 1  # c: idle and expired; a: held, kept
    assert store.busy_count == recount() == 1


def test_model_and_version_checks_on_resume(model_dirs, model):
    v2, other = runtime.load(model_dirs["v2"]), runtime.load(model_dirs["other"])
    store = SessionStore()
    store.release(store.acquire(model, "s"))
    with pytest.raises(FailedPrecondition, match=f"belongs to model {model.name}, not other"):
        store.acquire(other, "s")
    with pytest.raises(FailedPrecondition, match=rf"{model.name}/{model.version}.*pinned version 2"):
        store.acquire(v2, "s", pinned=True)
    s = store.acquire(v2, "s")  # unpinned: stays on the version it started with
    assert s.model is model


def test_ttl_eviction_never_touches_held_sessions(model):
    clock, evicted = FakeClock(), []
    store = SessionStore(ttl_s=300, clock=clock, on_evict=evicted.append)
    old, held = store.acquire(model, "old"), store.acquire(model, "held")
    store.release(old)
    clock.t += 200
    recent = store.acquire(model, "recent")
    store.release(recent)
    clock.t += 100.5  # old idle 300.5 s, recent 100.5 s
    assert store.evict_expired() == 1 and "old" not in store and evicted == [1]
    clock.t += 10_000
    assert store.evict_expired() == 1 and "held" in store and "recent" not in store
    assert store.stats.evicted == 2 and held.busy
    store.release(held)  # released: the TTL starts now
    assert store.evict_expired() == 0


def test_run_evictor_sweeps(model):
    clock = FakeClock()
    store = SessionStore(ttl_s=1, clock=clock)
    store.release(store.acquire(model))
    clock.t += 2

    async def main():
        task = asyncio.create_task(store.run_evictor(interval_s=0))
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(main())
    assert len(store) == 0


def test_max_sessions_is_resource_exhausted_and_evicts_only_expired_idle(model):
    clock = FakeClock()
    store = SessionStore(ttl_s=60, max_sessions=3, clock=clock)
    held = [store.acquire(model, f"h{i}") for i in range(2)]
    store.release(store.acquire(model, "idle"))
    with pytest.raises(ResourceExhausted, match=r"session limit reached: 3 live sessions \(max 3, --max-sessions\)"):
        store.acquire(model)
    assert len(store) == 3 and store.stats.rejected_full == 1
    clock.t += 30
    with pytest.raises(ResourceExhausted):  # nothing has expired yet
        store.acquire(model)
    store.release(store.acquire(model, "idle"))  # resuming is not creating: allowed at the cap
    clock.t += 61  # the held ones are as old as "idle", but live
    assert store.acquire(model, "new").position == 0  # "idle" expired and made room
    assert all(h.id in store for h in held) and "idle" not in store


def test_close_and_reset(model, series):
    store = SessionStore()
    s = store.acquire(model, "s")
    _push(s, series[:7])
    store.reset(s)
    assert s.position == 0 and not any(s.state[k].any() for k in s.slab.names)  # zero graph state
    assert np.array_equal(s.state[MONITOR], model.monitor.fresh(1))  # and a fresh monitor row
    _push(s, series[:3])
    store.close(s)  # the holder closes its own session
    store.release(s)  # harmless after close: not re-inserted
    assert "s" not in store and store.stats.closed == 1
    with pytest.raises(NotFound, match="session s does not exist"):
        store.close("s")
    assert store.acquire(model, "s").position == 0  # the id starts afresh
    store.release(store.get("s"))
    store.close("s")
    assert len(store) == 0


def test_export_import_on_a_replica_continues_bit_for_bit(model_dirs, model, series):
    here = SessionStore()
    a = here.acquire(model, "dev")
    _push(a, series[:37])
    data = here.export_state(a)
    replica_model = runtime.load(model_dirs["base"])  # another process serving the same version
    there = SessionStore()
    b = there.acquire(replica_model, None, data)
    assert b.id != "dev" and _same(a, b) and there.stats.imported == 1
    for lo, hi in [(37, 38), (38, 50), (50, 51), (51, 120)]:
        np.testing.assert_array_equal(_push(a, series[lo:hi]), _push(b, series[lo:hi]))
    assert _same(a, b) and b.position == 120
    c = there.acquire(replica_model, "dev", data)  # under a chosen id
    assert c.id == "dev" and c.position == 37


def test_rejected_state_bytes_change_nothing(model_dirs, model, series):
    store = SessionStore()
    s = store.acquire(model, "s")
    _push(s, series[:9])
    data = store.export_state(s)
    before, n = _frozen(s), len(store)

    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    with pytest.raises(Unauthenticated, match=r"state bytes are not signed by this server's state key"):
        store.acquire(model, None, bytes(flipped))
    for bad in (data[:20], b"PKL" + data[3:], b""):
        with pytest.raises(InvalidInput):
            store.acquire(model, None, bad)
    for key in ("other", "v2"):
        served = runtime.load(model_dirs[key])
        with pytest.raises(FailedPrecondition, match=rf"for model {model.name}/{model.version}, "
                                                     rf"but this session uses {served.name}/{served.version}"):
            store.acquire(served, None, data)
    store.release(s)
    with pytest.raises(FailedPrecondition, match="already exists"):
        store.acquire(model, "s", data)
    assert len(store) == n and _same(s, before) and not s.busy


def test_state_names_and_shapes_must_match_the_manifest(model):
    spec = model.state_spec[0]
    right = {s.name: np.zeros(s.shape, np.float32) for s in model.state_spec}  # every tensor the manifest names
    wrong = ExportedState(model.name, model.version, 0,
                          {**right, spec.name: np.zeros([d + 1 for d in spec.shape], np.float32)})
    with pytest.raises(InvalidInput, match="must have shape"):
        wrong.for_model(model)
    renamed = ExportedState(model.name, model.version, 0, {"zz": np.zeros(spec.shape, np.float32)})
    with pytest.raises(InvalidInput, match="exactly the tensors"):
        renamed.for_model(model)


def test_decode_reads_the_header_without_a_model(model, series):
    store = SessionStore()
    s = store.acquire(model)
    _push(s, series[:4])
    info = decode_state(store.export_state(s))
    assert (info.model, info.version, info.position) == (model.name, model.version, 4)
    assert info.state.keys() == set(s.slab.names) and np.array_equal(info.monitor, s.state[MONITOR][0])
