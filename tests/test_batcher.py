"""Cross-stream batching through real onnxruntime calls, checked against local streams."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from _models import default_model_dir

import eddy.runtime as runtime
from eddy.runtime.core.errors import InvalidInput
from eddy.runtime.serving.batcher import Batcher
from eddy.runtime.serving.store import MemoryStore as SessionStore


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> runtime.Model:
    return runtime.load(default_model_dir(tmp_path_factory.mktemp("models")))


def _series(rng: np.random.Generator, n: int, f: int) -> np.ndarray:
    return (rng.normal(size=(n, f)) * 60 + 78).astype(np.float32)  # [n, F], raw units


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


async def _drive(batcher: Batcher, store: SessionStore, model: runtime.Model, series: list[np.ndarray],
                 seed: int) -> list[np.ndarray]:
    """One concurrent task per series, each pushing it in random chunks (1..5 samples)."""
    async def one(i: int, xs: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed + i)
        s = store.acquire(model, f"s{i}")
        outs, pos = [], 0
        while pos < len(xs):
            n = int(rng.choice([1, 1, 1, 2, 3, 5]))
            outs.append(await batcher.run(s, xs[pos:pos + n]))
            pos += n
        assert s.position == len(xs)
        store.release(s)
        return np.concatenate(outs)  # [N, O]

    return await asyncio.gather(*(one(i, xs) for i, xs in enumerate(series)))


@pytest.mark.parametrize("enabled", [True, False])
def test_64_sessions_random_chunking_match_local_streams(model, enabled):
    rng = np.random.default_rng(1)
    series = [_series(rng, int(rng.integers(40, 120)), model.n_features) for _ in range(64)]
    sizes: list[int] = []
    batcher = Batcher(enabled=enabled, on_batch=sizes.append)
    outs = asyncio.run(_drive(batcher, SessionStore(), model, series, seed=100))
    for xs, y in zip(series, outs):
        assert _rel(y, model.stream().push(xs)) <= 1e-5
    if enabled:
        assert max(sizes) > 1 and len(sizes) < sum(len(xs) for xs in series)
    else:
        assert set(sizes) == {1}
    assert list(batcher.recent_batch_sizes) == sizes[-len(batcher.recent_batch_sizes):]


def test_one_session_pipelined_keeps_order_and_never_batches_with_itself(model):
    rng = np.random.default_rng(2)
    xs = _series(rng, 30, model.n_features)
    chunks = [xs[0:1], xs[1:4], xs[4:5], xs[5:6], xs[6:17], xs[17:30]]
    sizes: list[int] = []

    async def main():
        batcher, store = Batcher(on_batch=sizes.append), SessionStore()
        s = store.acquire(model)
        return s, await asyncio.gather(*(batcher.run(s, c) for c in chunks))  # all pending at once

    s, outs = asyncio.run(main())
    assert sizes == [1] * len(chunks)  # a session never appears twice in one batch
    assert _rel(np.concatenate(outs), model.stream().push(xs)) <= 1e-5
    assert s.position == 30


def _snapshot(s):
    return {k: v.copy() for k, v in s.state.items()}, s.position


POISON = -12345.0  # a sample value the faulty model below fails on


class _Faulty(runtime.Model):
    """The real model, except that a call carrying POISON fails (as an onnxruntime error would)."""

    def _advance(self, x, state):
        if (x == POISON).any():
            raise RuntimeError("injected onnxruntime failure")
        return super()._advance(x, state)


@pytest.fixture(scope="module")
def faulty(model) -> runtime.Model:
    m = runtime.load(model.path)
    m.__class__ = _Faulty
    return m


def test_one_faulty_session_fails_alone_and_changes_nothing(faulty):
    rng = np.random.default_rng(3)
    xs = _series(rng, 8, faulty.n_features)
    poison = np.full((1, faulty.n_features), POISON, np.float32)

    async def main():
        batcher, store = Batcher(), SessionStore()
        sessions = [store.acquire(faulty) for _ in range(5)]
        for s in sessions:
            await batcher.run(s, xs[:3])
        good, bad = sessions[:4], sessions[4]
        before = [_snapshot(s) for s in good], _snapshot(bad)
        results = await asyncio.gather(*(batcher.run(s, xs[3:4]) for s in good), batcher.run(bad, poison),
                                       return_exceptions=True)
        return good, bad, before, results

    good, bad, (before_good, before_bad), results = asyncio.run(main())
    assert isinstance(results[-1], RuntimeError)
    ref = faulty.stream().push(xs[:4])[3:4]
    for s, y, (_, pos) in zip(good, results[:-1], before_good):
        assert _rel(y, ref) <= 1e-5 and s.position == pos + 1
    after_state, after_pos = _snapshot(bad)
    assert after_pos == before_bad[1] == 3
    assert all(np.array_equal(after_state[k], v) for k, v in before_bad[0].items())


@pytest.mark.parametrize("enabled", [True, False])  # False: the inline path (no queue, no task)
def test_onnxruntime_error_leaves_every_session_in_the_batch_unchanged(faulty, enabled):
    rng = np.random.default_rng(4)
    xs = _series(rng, 5, faulty.n_features)
    xs[1] = POISON
    sizes: list[int] = []

    async def main():
        batcher, store = Batcher(enabled=enabled, on_batch=sizes.append), SessionStore()
        sessions = [store.acquire(faulty) for _ in range(6)]
        for s in sessions:
            await batcher.run(s, xs[:1])
        sizes.clear()
        before = [_snapshot(s) for s in sessions]
        results = await asyncio.gather(*(batcher.run(s, xs[:2]) for s in sessions), return_exceptions=True)
        return sessions, before, results

    sessions, before, results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results)
    assert sizes == []  # no call succeeded
    for s, (state, pos) in zip(sessions, before):
        assert s.position == pos == 1
        assert all(np.array_equal(s.state[k], v) for k, v in state.items())


def test_cancelled_caller_leaves_session_unchanged(model):
    xs = _series(np.random.default_rng(5), 2, model.n_features)

    async def main():
        batcher, store = Batcher(max_delay_us=20_000), SessionStore()  # the round waits 20 ms for company
        a, b = store.acquire(model), store.acquire(model)
        before = _snapshot(a)
        task = asyncio.create_task(batcher.run(a, xs[:1]))
        await asyncio.sleep(0)  # a's request is queued, the round has not run
        task.cancel()
        y = await batcher.run(b, xs[:1])
        return a, before, task, y

    a, before, task, y = asyncio.run(main())
    assert task.cancelled() and a.position == before[1] == 0
    assert all(np.array_equal(a.state[k], v) for k, v in before[0].items())
    assert _rel(y, model.stream().push(xs[:1])) <= 1e-5


def test_large_batches_run_in_the_worker_thread_with_the_same_results(model):
    rng = np.random.default_rng(6)
    series = [_series(rng, 60, model.n_features) for _ in range(8)]
    batcher = Batcher(offload_values=0)  # every batch through the thread
    outs = asyncio.run(_drive(batcher, SessionStore(), model, series, seed=200))
    batcher.close()
    for xs, y in zip(series, outs):
        assert _rel(y, model.stream().push(xs)) <= 1e-5


def test_wrong_shape_is_invalid_input(model):
    async def main():
        s = SessionStore().acquire(model)
        with pytest.raises(InvalidInput, match="shaped"):
            await Batcher().run(s, np.zeros((2, model.n_features + 1), np.float32))
        with pytest.raises(InvalidInput):
            await Batcher().run(s, np.zeros((0, model.n_features), np.float32))
        assert s.position == 0

    asyncio.run(main())


def _waiting_round(model, *, busy: bool) -> tuple[bool, list[int], list[np.ndarray], list[np.ndarray]]:
    """Three sessions step together, then `a` steps first: does it wait for `b` and `c`?

    Returns whether `a` was still waiting after a few loop turns, the batch sizes, the answers, the inputs.
    """
    xs = [_series(np.random.default_rng(40 + i), 2, model.n_features) for i in range(3)]

    async def main():
        # busy: no loop turn counts as idle (the round waits for company); else every turn does
        batcher = Batcher(max_delay_us=60_000_000, active_window_ns=60_000_000_000,
                          idle_turn_ns=0 if busy else 60_000_000_000)
        store = SessionStore()
        a, b, c = (store.acquire(model) for _ in range(3))
        first = await asyncio.gather(*(batcher.run(s, x[:1]) for s, x in zip((a, b, c), xs)))  # all three active
        ta = asyncio.create_task(batcher.run(a, xs[0][1:]))
        for _ in range(10):  # a few loop turns: an idle loop is seen within IDLE_TURNS of them
            await asyncio.sleep(0)
        waiting = not ta.done()
        rest = await asyncio.gather(batcher.run(b, xs[1][1:]), batcher.run(c, xs[2][1:]))
        return waiting, list(batcher.recent_batch_sizes), [*first, await ta, *rest]

    waiting, sizes, ys = asyncio.run(main())
    return waiting, sizes, ys, xs


def test_a_busy_batcher_waits_for_the_other_active_sessions(model):
    """While the loop is busy and no time limit is in sight (60 s), the round runs as soon as every active session
    has its step queued."""
    waiting, sizes, ys, xs = _waiting_round(model, busy=True)
    assert waiting and sizes == [3, 3]
    for i, x in enumerate(xs):  # batching is bit-exact: each equals its own stream
        local = model.stream()
        assert np.array_equal(ys[i], local.push(x[:1])) and np.array_equal(ys[3 + i], local.push(x[1:]))


def test_an_idle_loop_runs_the_batch_at_once(model):
    waiting, sizes, _, _ = _waiting_round(model, busy=False)
    assert not waiting and sizes == [3, 1, 2]
