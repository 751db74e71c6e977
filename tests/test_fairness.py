"""Fair sharing: large work runs in its own lane, stops when its caller goes away, and never keeps
honest streams from being answered."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from _serving import reference, served
from conftest import MODEL

from eddy.runtime.client import Client
from eddy.runtime.serving.lane import Lane
from eddy.runtime.serving.store import MemoryStore


def test_a_cancelled_large_push_stops_and_commits_nothing(model, series):
    store = MemoryStore()
    s = store.acquire(model, "big")
    before = {k: v.copy() for k, v in s.state.items()}
    lane = Lane()
    x = np.tile(series, (700, 1))[:200_000]  # seconds of work if it ran to the end

    async def scenario() -> np.ndarray:
        task = asyncio.ensure_future(lane.advance(s, x))
        await asyncio.sleep(0)  # it is queued or running in the lane's thread now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await lane.advance(s, series[:5])  # the lane is free again and the session untouched

    try:
        y = asyncio.run(scenario())
    finally:
        lane.close()
    assert lane.terminated == 1
    assert np.array_equal(y, reference(model, [series[:5]])[0]) and s.position == 5
    assert not all(np.array_equal(s.state[k], before[k]) for k in before)  # the 5 samples did land


def test_honest_streams_keep_being_answered_next_to_max_size_messages(models_dir, series, model):
    big = np.tile(series, (30, 1))  # 9,270 samples a message, in a loop
    stop = threading.Event()
    with served(models_dir, max_samples_per_message=10_000) as s:
        def attacker() -> None:
            with Client(s.address) as c, c.stream(MODEL) as rs:
                while not stop.is_set():
                    rs.push(big)

        t = threading.Thread(target=attacker)
        t.start()
        try:
            with Client(s.address) as c:
                streams = [c.stream(MODEL) for _ in range(4)]
                got = [[rs.push(series[i:i + 1]) for rs in streams] for i in range(30)]
                for rs in streams:
                    rs.close()
        finally:
            stop.set()
            t.join(timeout=60)
    want = reference(model, [series[i:i + 1] for i in range(30)])
    assert all(np.array_equal(got[i][j], want[i]) for i in range(30) for j in range(4))
