"""The asyncio client (eddy.runtime.client.AsyncClient) against a real server on a free loopback port.

Exact answers (np.array_equal with the in-process stream of the same chunks),
the server's refusals as the matching error class with the stream still
usable, cancellation leaving the session resumable, controls and Predict.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from _serving import reference, served
from conftest import MODEL

from eddy.runtime.client import AsyncClient, Client
from eddy.runtime.core.errors import FailedPrecondition, InvalidInput, NotFound, ResourceExhausted


def test_pushes_equal_the_local_stream_bit_for_bit(server, model, series):
    rng = np.random.default_rng(7)
    cuts = np.sort(rng.choice(np.arange(1, len(series)), size=30, replace=False))
    chunks = [*series[:50], *np.split(series[50:], cuts[cuts > 50] - 50)]  # single samples, then chunks

    async def run() -> list[np.ndarray]:
        async with AsyncClient(server.address) as client:
            assert await client.list_models() == {MODEL: [1]}
            async with client.stream(MODEL) as s:
                assert (s.features, s.targets, s.position) == (model.features, model.targets, 0)
                out = [await s.push(c) for c in chunks]
                assert s.position == len(series)
                return out

    for got, want in zip(asyncio.run(run()), reference(model, chunks), strict=True):
        assert got.dtype == np.float32 and np.array_equal(got, want)


def test_refusals_keep_the_stream_and_state(models_dir, model, series):
    async def run(address: str) -> list[np.ndarray]:
        async with AsyncClient(address) as client:
            with pytest.raises(NotFound):
                await client.stream("no-such-model")
            async with client.stream(MODEL) as s:
                out = [await s.push(series[:2])]
                with pytest.raises(ResourceExhausted, match="limit is 4"):  # the server's verdict, in-band
                    await s.push(series[2:7])
                with pytest.raises(InvalidInput):  # checked locally, like a local stream
                    await s.push([float("nan")])
                assert s.position == 2 and not s.closed
                out.append(await s.push(series[2:4]))
                return out

    with served(models_dir, max_samples_per_message=4) as srv:
        got = asyncio.run(run(srv.address))
    for g, w in zip(got, reference(model, [series[:2], series[2:4]]), strict=True):
        assert np.array_equal(g, w)


def test_cancelled_stream_leaves_the_session_resumable(server, model, series):
    async def first() -> str:
        async with AsyncClient(server.address) as client:
            s = await client.stream(MODEL)
            await s.push(series[:10])
            await s.close(cancel=True)
            assert s.closed
            with pytest.raises(FailedPrecondition):
                await s.push(series[10])
            return s.session_id

    sid = asyncio.run(first())
    server.until_idle(sid)

    async def resume() -> np.ndarray:
        async with AsyncClient(server.address) as client:
            async with client.stream(MODEL, session_id=sid, resume=True) as s:
                assert s.resumed and s.position == 10
                y = await s.push(series[10:20])
                await s.close_session()
                return y

    assert np.array_equal(asyncio.run(resume()), reference(model, [series[:10], series[10:20]])[1])
    assert server.call(lambda: sid not in server.server.plane.sessions)


def test_controls_and_predict_match_the_sync_client(server, series):
    async def run() -> tuple[np.ndarray, bytes, np.ndarray, np.ndarray]:
        async with AsyncClient(server.address) as client:
            async with client.stream(MODEL) as s:
                await s.push(series[:5])
                state = await s.export_state()
                await s.reset()
                assert s.position == 0
                again = await s.push(series[:5])
            y, _ = await client.predict(MODEL, series[None, :20])
            async with client.stream(MODEL, state=state) as t:
                assert t.position == 5
                after = await t.push(series[5:8])
            return again, state, y, after

    again, state, y, after = asyncio.run(run())
    with Client(server.address) as sync:
        with sync.stream(MODEL) as s:
            assert np.array_equal(s.push(series[:5]), again)
        with sync.stream(MODEL, state=state) as t:
            assert np.array_equal(t.push(series[5:8]), after)
        assert np.array_equal(sync.predict(MODEL, series[None, :20])[0], y)
