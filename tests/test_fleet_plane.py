"""The data plane's fleet step without a wire: many sessions per call, each exactly its own one-sample stream.

Runs :class:`~eddy.runtime.serving.fleet.Fleet` on a real :class:`DataPlane`
(real onnxruntime, the memory store and a real Valkey store) in one event
loop; the Fleet RPC's own tests go through a server (tests/test_fleet.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from _store import Valkey, valkey
from conftest import MODEL

from eddy.runtime.core.errors import EddyError
from eddy.runtime.serving.config import ServeConfig
from eddy.runtime.serving.dataplane import DataPlane
from eddy.runtime.serving.repository import ModelRepository
from eddy.runtime.serving.slab import POSITION, Slab, as_rows


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[Valkey]:
    with valkey(tmp_path_factory.mktemp("valkey")) as v:
        yield v


def _run(models_dir, config: ServeConfig, work) -> object:
    async def main() -> object:
        plane = DataPlane(ModelRepository(models_dir), config)
        plane.start()
        try:
            return await work(plane)
        finally:
            await plane.close()

    return asyncio.run(main())


def _local(model, xs: np.ndarray) -> np.ndarray:
    s = model.stream()
    return np.concatenate([s.push(x[None]) for x in xs])  # one sample per push


@pytest.mark.parametrize("kind", ["memory", "valkey"])
def test_fleet_steps_are_exact_and_resumable_by_a_stream(models_dir, model, series, store, kind):
    config = ServeConfig()
    if kind == "valkey":
        store.client().flushdb()
        config = ServeConfig(session_store=store.url)
    x = np.stack([series[5 * i:5 * i + 10] for i in range(5)])  # [5, 10, 1]
    ids = [f"p{i}" for i in range(5)]

    async def work(plane: DataPlane) -> tuple[list[np.ndarray], np.ndarray]:
        fleet = plane.open_fleet(MODEL)
        a = await fleet.step(ids, x[:, :3])
        b = await fleet.step(None, x[:, 3:4])  # the same roster, no ids
        c = await fleet.step(ids[::-1], x[::-1, 4:6])  # reordered
        assert not (a.errors or b.errors or c.errors)
        assert b.offsets.tolist() == [3] * 5 and c.offsets.tolist() == [4] * 5
        busy = await plane.open_session(MODEL, None, "p0", resume=True, owner=object())
        await plane.release(busy[0])  # not reached: the fleet holds p0
        return [a.y, b.y, c.y[::-1]], np.zeros(0)

    async def handover(plane: DataPlane) -> np.ndarray:
        fleet = plane.open_fleet(MODEL)
        await fleet.step(ids, x[:, :3])
        await fleet.release()
        session, existed = await plane.open_session(MODEL, None, "p2", resume=True, owner=object())
        try:
            assert existed and session.position == 3
            return await plane.push(session, x[2, 3:5])  # a stream continues where the fleet left it
        finally:
            await plane.release(session)

    with pytest.raises(EddyError) as e:
        _run(models_dir, config, work)
    assert e.value.code == "FAILED_PRECONDITION" and "in use" in e.value.message
    if kind == "valkey":
        store.client().flushdb()
    y = _run(models_dir, config, handover)
    s = model.stream()
    for j in range(3):
        s.push(x[2, j:j + 1])  # the fleet's three samples, one step each
    np.testing.assert_array_equal(y, s.push(x[2, 3:5]))  # then the stream's chunk of two

    async def exact(plane: DataPlane) -> list[np.ndarray]:
        fleet = plane.open_fleet(MODEL)
        out = [(await fleet.step(["q0", "q1"], x[:2, :3])).y, (await fleet.step(None, x[:2, 3:4])).y,
               (await fleet.step(["q1", "q0"], x[1::-1, 4:6])).y[::-1]]
        await fleet.release()
        return out

    if kind == "valkey":
        store.client().flushdb()
    got = np.concatenate(_run(models_dir, config, exact), axis=1)
    for i in range(2):
        np.testing.assert_array_equal(got[i], _local(model, x[i, :6]))


def test_bad_rows_fail_alone_and_the_roster_is_forgotten_after_a_refusal(models_dir, model, series):
    x = np.stack([series[3 * i:3 * i + 6] for i in range(3)])  # [3, 6, 1]

    async def work(plane: DataPlane) -> None:
        fleet = plane.open_fleet(MODEL)
        bad = x[:, :2].copy()
        bad[1, 0, 0] = np.nan
        r = await fleet.step(["b0", "b1", "b2"], bad)
        assert list(r.errors) == [1] and r.errors[1].code == "INVALID_ARGUMENT" and np.isnan(r.y[1]).all()
        assert plane.sessions.get("b1") is None  # a session whose first row is refused is not even opened
        r2 = await fleet.step(None, x[:, 2:4])
        assert not r2.errors and r2.offsets.tolist() == [2, 0, 2]
        with pytest.raises(EddyError, match="named twice"):
            await fleet.step(["b0", "b0"], x[:2, :1])
        with pytest.raises(EddyError, match="must carry session_ids"):
            await fleet.step(None, x[:, 4:5])  # the refusal forgot the roster
        with pytest.raises(EddyError, match=r"shaped \[N=3"):
            await fleet.step(["b0", "b1", "b2"], x[:2, 4:5])
        r3 = await fleet.step(["b0", "b1", "b2"], x[:, 4:6])
        assert not r3.errors
        for i, ys in ((0, [r.y[0], r2.y[0], r3.y[0]]), (2, [r.y[2], r2.y[2], r3.y[2]])):
            np.testing.assert_array_equal(np.concatenate(ys), _local(model, x[i]))
        np.testing.assert_array_equal(np.concatenate([r2.y[1], r3.y[1]]), _local(model, x[1, 2:6]))
        await fleet.release()

    _run(models_dir, ServeConfig(), work)


def test_more_sessions_than_max_batch_run_in_several_calls(models_dir, model, series):
    x = np.stack([series[i:i + 3] for i in range(20)])  # [20, 3, 1]

    async def work(plane: DataPlane) -> np.ndarray:
        fleet = plane.open_fleet(MODEL)
        calls = plane.stats.of(plane.model(MODEL)).execution_count
        y = (await fleet.step([f"m{i}" for i in range(20)], x)).y
        assert plane.stats.of(plane.model(MODEL)).execution_count - calls == 3 * 3  # 3 samples x ceil(20 / 8)
        await fleet.release()
        return y

    y = _run(models_dir, ServeConfig(max_batch=8), work)
    for i in range(20):
        np.testing.assert_array_equal(y[i], _local(model, x[i]))


def test_consecutive_rows_gather_as_views(model):
    slab = Slab(model, capacity=8)
    rows = [slab.alloc() for _ in range(6)]
    assert as_rows(rows[1:5]) == slice(1, 5) and isinstance(as_rows([4, 2]), np.ndarray)
    view = slab.gather(slice(1, 5))
    assert all(np.shares_memory(view[k], a) for k, a in slab.state.items())  # graph state and monitor rows
    assert view[POSITION].tolist() == [0] * 4  # the positions, a copy
    new = {k: np.full_like(view[k], 2.0) for k in slab.state}
    slab.scatter(slice(1, 5), new, 3)
    assert slab.position.tolist()[:6] == [0, 3, 3, 3, 3, 0]
    assert all((slab.state[k][1:5] == 2.0).all() and (slab.state[k][0] == 0).all() for k in slab.names)
