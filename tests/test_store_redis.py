"""RedisStore against a real Valkey server: resume across stores, leases, fencing, TTL, store outages.

Driven without gRPC (store + batcher), so each test takes a fraction of a second;
the served paths (kill -9, Envoy) are in test_durable.py.
"""

from __future__ import annotations

import asyncio
import time
import warnings

import numpy as np
import pytest
from _models import copy_as, default_model_dir
from _store import Valkey, valkey

import eddy.runtime as runtime
from eddy.runtime.core.errors import AlreadyExists, FailedPrecondition, NotFound, ResourceExhausted, Unavailable
from eddy.runtime.core.statecodec import decode_state
from eddy.runtime.serving.batcher import Batcher
from eddy.runtime.serving.store.redis import LIVE, RedisStore, key_of


@pytest.fixture(scope="module")
def store_server(tmp_path_factory) -> Valkey:
    with valkey(tmp_path_factory.mktemp("valkey")) as server:
        yield server


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[tuple[str, int], runtime.Model]:
    root = tmp_path_factory.mktemp("models")
    base = default_model_dir(root)
    v2 = copy_as(base, root / "copy" / "2", version=2)
    m1, m2 = runtime.load(base), runtime.load(v2)
    return {(m1.name, 1): m1, (m2.name, 2): m2}


@pytest.fixture(scope="module")
def model(models) -> runtime.Model:
    return models[next(iter(models))]


@pytest.fixture(scope="module")
def series(model) -> np.ndarray:
    return (np.random.default_rng(0).normal(size=(200, model.n_features)) * 60 + 78).astype(np.float32)  # [N, F]


def _store(server: Valkey, models, **kw) -> RedisStore:
    def lookup(name: str, version: int) -> runtime.Model:
        if (name, version) not in models:
            raise NotFound(f"model {name!r} has no version {version}")
        return models[(name, version)]

    return RedisStore(server.url, lookup, **kw)


async def _push_all(batcher: Batcher, session, xs: np.ndarray) -> np.ndarray:
    return np.concatenate([await batcher.run(session, xs[i:i + 1]) for i in range(len(xs))])  # [n, O]


def test_the_store_client_starts_without_a_warning(store_server, models):
    async def main():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # redis warns when handed its synchronous Retry
            store = _store(store_server, models)
            await store.check()
            await store.shutdown()

    asyncio.run(main())


def test_a_session_continues_bit_for_bit_on_another_store(store_server, models, model, series):
    local = model.stream()  # the reference: sample by sample, as pushed below
    ref = np.concatenate([local.push(x) for x in series])

    async def main():
        here, there = _store(store_server, models), _store(store_server, models)
        a, existed = await here.open(model, "hand-off", owner="A")
        assert not existed and a.position == 0
        y1 = await _push_all(Batcher(commit=here.commit), a, series[:50])
        await here.end(a)
        b, existed = await there.open(model, "hand-off", resume=True, owner="B")  # another replica
        assert existed and b.position == 50
        y2 = await _push_all(Batcher(commit=there.commit), b, series[50:80])
        info_busy = None
        try:
            await here.info("hand-off")
        except FailedPrecondition as e:
            info_busy = e
        await there.end(b)
        record = await here.info("hand-off")
        await here.delete("hand-off")
        with pytest.raises(NotFound):
            await there.open(model, "hand-off", resume=True)
        await here.shutdown()
        await there.shutdown()
        return y1, y2, info_busy, record

    y1, y2, busy, record = asyncio.run(main())
    assert np.array_equal(np.concatenate([y1, y2]), ref[:80])
    assert busy is not None and "in use" in busy.message
    exported = decode_state(record.state)
    assert record.position == exported.position == 80 and (record.model, record.version) == (model.name, model.version)


def test_a_unix_socket_url_reaches_the_same_store(store_server, models, model, series):
    async def main():
        tcp, unix = _store(store_server, models), RedisStore(store_server.unix_url, lambda n, v: model)
        s, _ = await unix.open(model, "over-unix")
        y = await Batcher(commit=unix.commit).run(s, series[:1])
        await unix.end(s)
        again, existed = await tcp.open(model, "over-unix", resume=True)
        position = again.position
        await tcp.delete(again)
        await unix.shutdown()
        await tcp.shutdown()
        return y, existed, position

    y, existed, position = asyncio.run(main())
    assert existed and position == 1 and np.array_equal(y, model.stream().push(series[:1]))


def test_batches_write_once_and_match_local_streams(store_server, models, model, series):
    rng = np.random.default_rng(7)
    xs = [(rng.normal(size=(30, model.n_features)) * 60 + 78).astype(np.float32) for _ in range(24)]
    sizes: list[int] = []

    async def main():
        store = _store(store_server, models)
        batcher = Batcher(commit=store.commit, on_batch=sizes.append)
        sessions = [(await store.open(model, f"b{i}"))[0] for i in range(len(xs))]
        outs = await asyncio.gather(*(_push_all(batcher, s, x) for s, x in zip(sessions, xs)))
        positions = [s.position for s in sessions]
        for s in sessions:
            await store.end(s)
        again = [(await store.open(model, f"b{i}", resume=True))[0] for i in range(len(xs))]
        stored = [a.state for a in again]
        await store.shutdown()
        return outs, positions, stored

    outs, positions, stored = asyncio.run(main())
    assert max(sizes) > 1  # batched across sessions
    for x, y, pos, state in zip(xs, outs, positions, stored):
        s = model.stream()
        assert np.array_equal(y, np.concatenate([s.push(v) for v in x])) and pos == 30
        assert all(np.array_equal(state[k], v[None]) for k, v in s.state.items())


def test_open_refusals_match_the_memory_store(store_server, models, model):
    v2 = models[(model.name, 2)]

    async def main():
        store, other = _store(store_server, models), _store(store_server, models)
        s, _ = await store.open(model, "r1")
        for where in (store, other):  # held here / on another replica: a known id, never an attach
            with pytest.raises(AlreadyExists, match="already exists"):
                await where.open(model, "r1")
        with pytest.raises(FailedPrecondition, match="in use"):
            await store.open(model, "r1", resume=True)  # same process
        with pytest.raises(FailedPrecondition, match="in use by another stream"):
            await other.open(model, "r1", resume=True)  # another replica: the lease
        await store.end(s)
        with pytest.raises(FailedPrecondition, match=rf"runs on {model.name}/1; the request pinned version 2"):
            await other.open(v2, "r1", pinned=True, resume=True)
        with pytest.raises(AlreadyExists, match="already exists"):
            await other.open(model, "r1")  # a known id without resume: never a silent attach
        resumed, existed = await other.open(v2, "r1", resume=True)  # unpinned: stays on its own version
        assert existed and resumed.model is model
        await other.end(resumed)
        blob = store.export_state(resumed)
        with pytest.raises(AlreadyExists, match="already exists"):
            await store.open(model, "r1", decode_state(blob))
        with pytest.raises(NotFound):
            await store.open(model, "never-made", resume=True)
        fresh, existed = await store.open(model)
        assert not existed and len(fresh.id) == 32
        await store.end(fresh)
        await store.shutdown()
        await other.shutdown()

    asyncio.run(main())


@pytest.mark.parametrize("resume", [False, True])
def test_lease_race_exactly_one_wins(store_server, models, model, resume):
    async def main():
        stores = [_store(store_server, models) for _ in range(4)]
        if resume:  # an idle session four replicas try to resume; else a new id four try to create
            s, _ = await stores[0].open(model, "race-resume")
            await stores[0].end(s)
        sid = "race-resume" if resume else "race-new"
        results = await asyncio.gather(*(s.open(model, sid, resume=resume) for s in stores), return_exceptions=True)
        for st in stores:
            await st.shutdown()  # ends what each holds
        return results

    results = asyncio.run(main())
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 3
    assert all(isinstance(e, FailedPrecondition if resume else AlreadyExists) for e in lost), lost


def test_replicas_racing_for_the_last_places_never_pass_a_limit(store_server, models, model):
    tenant = "race-tenant"

    async def main():
        store_server.client().flushdb()
        stores = [_store(store_server, models, max_sessions=5, max_per_tenant=3) for _ in range(6)]
        mine = await asyncio.gather(*(s.open(model, f"t{i}", tenant=tenant) for i, s in enumerate(stores)),
                                    return_exceptions=True)
        others = await asyncio.gather(*(s.open(model, f"o{i}", tenant="other") for i, s in enumerate(stores)),
                                      return_exceptions=True)
        counts = [await stores[0]._redis.zcard(LIVE), await stores[0]._redis.zcard(f"{LIVE}:{len(tenant)}:{tenant}")]
        for st in stores:
            await st.shutdown()
        return mine, others, counts

    mine, others, counts = asyncio.run(main())
    for results, won, limit in ((mine, 3, "--max-sessions-per-tenant"), (others, 2, "--max-sessions)")):
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(results) - len(lost) == won and all(isinstance(e, ResourceExhausted) and limit in e.message
                                                       for e in lost), results
    assert counts == [5, 3]


def test_live_counts_follow_expiry_and_deletion(store_server, models, model):
    async def main():
        store_server.client().flushdb()
        store = _store(store_server, models, ttl_s=0.2, max_sessions=2)
        for sid in ("e1", "e2"):
            s, _ = await store.open(model, sid)
            await store.end(s)
        with pytest.raises(ResourceExhausted, match="2 live sessions"):
            await store.open(model, "e3")
        r = store_server.client()
        assert r.zcard(LIVE) == 2
        deadline = time.monotonic() + 10
        while r.exists(key_of("", "e1"), key_of("", "e2")) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # the store expires them (its own clock)
        s, _ = await store.open(model, "e3")  # settled: the two expired entries are gone, e3 counted
        assert r.zrange(LIVE, 0, -1) == [key_of("", "e3").encode()]
        await store.delete(s)
        assert r.zcard(LIVE) == 0 and r.zcard(f"{LIVE}:0:") == 0
        await store.shutdown()

    asyncio.run(main())


def test_a_stalled_holder_whose_lease_expired_cannot_overwrite(store_server, models, model, series):
    async def main():
        a_store, b_store = _store(store_server, models, lease_s=60), _store(store_server, models)
        a, _ = await a_store.open(model, "stall")
        ya = await _push_all(Batcher(commit=a_store.commit), a, series[:5])
        store_server.client().delete(key_of("", "stall") + ":lease")  # A stalls; its lease runs out
        b, existed = await b_store.open(model, "stall", resume=True)
        assert existed and b.position == 5
        yb = await _push_all(Batcher(commit=b_store.commit), b, series[5:9])
        with pytest.raises(FailedPrecondition, match="taken over"):
            await Batcher(commit=a_store.commit).run(a, series[5:6])  # A wakes up: fenced
        assert a.position == 5  # A's memory unchanged
        await b_store.end(b)
        c, _ = await b_store.open(model, "stall", resume=True)
        assert c.position == 9
        await b_store.end(c)
        await a_store.shutdown()
        await b_store.shutdown()
        return ya, yb

    ya, yb = asyncio.run(main())
    s = model.stream()
    assert np.array_equal(np.concatenate([ya, yb]), np.concatenate([s.push(x) for x in series[:9]]))


def test_ttl_maps_to_store_expiry(store_server, models, model):
    async def main():
        store = _store(store_server, models, ttl_s=0.2)
        s, _ = await store.open(model, "short-lived")
        await store.end(s)
        r = store_server.client()
        assert 0 < r.pttl(key_of("", "short-lived")) <= 200
        deadline = time.monotonic() + 10
        while r.exists(key_of("", "short-lived")) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        with pytest.raises(NotFound):
            await store.open(model, "short-lived", resume=True)
        await store.shutdown()

    asyncio.run(main())


def test_store_down_is_unavailable_nothing_answered_unwritten_and_recovers(tmp_path, models, model, series):
    ref_stream = model.stream()
    ref = np.concatenate([ref_stream.push(x) for x in series[:12]])

    async def main(server: Valkey):
        store = _store(server, models, timeout_s=1)
        batcher = Batcher(commit=store.commit)
        s, _ = await store.open(model, "outage")
        y = [await _push_all(batcher, s, series[:6])]
        server.kill()
        for _ in range(2):
            with pytest.raises(Unavailable, match="session store .* unavailable"):
                await batcher.run(s, series[6:7])
            assert s.position == 6  # nothing answered, nothing changed
        with pytest.raises(Unavailable):
            await store.open(model, "another")
        server.start()  # same port and data (append-only file)
        y.append(await _push_all(batcher, s, series[6:12]))
        await store.end(s)
        again, _ = await store.open(model, "outage", resume=True)
        position = again.position
        await store.shutdown()
        return np.concatenate(y), position

    with valkey(tmp_path) as server:
        y, position = asyncio.run(main(server))
    assert position == 12 and np.array_equal(y, ref)


def test_held_leases_are_renewed_in_one_call(store_server, models, model):
    async def main():
        store, other = _store(store_server, models, lease_s=30), _store(store_server, models)
        mine = [(await store.open(model, f"renew-{i}"))[0] for i in range(3)]
        r = store_server.client()
        lease = key_of("", "renew-0") + ":lease"
        r.pexpire(lease, 50)  # about to run out
        assert await store.renew() == []
        assert r.pttl(lease) > 20_000  # back to ~30 s
        r.delete(key_of("", "renew-1") + ":lease")  # ran out meanwhile ...
        taken, _ = await other.open(model, "renew-1", resume=True)  # ... and another replica took the session
        assert await store.renew() == ["renew-1"]
        await other.end(taken)
        for s in mine:
            await store.end(s)
        await store.shutdown()
        await other.shutdown()

    asyncio.run(main())
