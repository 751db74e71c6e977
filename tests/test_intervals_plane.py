"""Served intervals without a wire: the data plane's sessions against local streams, bit for bit.

A session's intervals depend on its monitor row (online recalibration), which lives in the slab, in exported
state bytes and in the Redis/Valkey record; every path that advances a session (the batcher, the lane, a fleet)
runs the same monitor. Here a real :class:`DataPlane` (real onnxruntime; the memory store and a real Valkey) is
compared with ``Model.stream()`` across chunkings, batching, resume, export/import and a hand-off between two
planes sharing one store. Every test runs twice: on the committed default model (its calibration on normalised
scores) and on a copy whose calibration was made before them (its sessions track the half-width itself).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _serving import chunked
from _store import Valkey, valkey
from conftest import MODEL, MODELS

import eddy.runtime as runtime
from eddy.runtime.core.layout import resolve_version_dir
from eddy.runtime.core.monitor import MONITOR, Forecast
from eddy.runtime.serving.config import ServeConfig
from eddy.runtime.serving.dataplane import DataPlane
from eddy.runtime.serving.repository import ModelRepository
from eddy.runtime.serving.slab import Slab

CHUNKS = [1, 1, 3, 1, 20, 1, 7, 1, 1, 40, 1, 2, 1]  # 79 samples: steps, small chunks and chunks through the lane


@pytest.fixture(scope="module", params=["normalised", "half-width"])
def models_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed models, or a copy of the default one whose calibration has no normalised scores (as a model
    calibrated with an older eddy has)."""
    if request.param == "normalised":
        return MODELS
    out = tmp_path_factory.mktemp("half-width")
    shutil.copytree(MODELS / MODEL, out / MODEL)
    path = resolve_version_dir(out / MODEL) / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["calibration"]["normalised"]
    path.write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def model(models_dir: Path) -> runtime.Model:
    m = runtime.load(models_dir / MODEL)
    assert m.monitor.normalised == (models_dir == MODELS)
    return m


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[Valkey]:
    with valkey(tmp_path_factory.mktemp("valkey")) as v:
        yield v


def _same(a: Forecast, b: Forecast) -> bool:
    return (np.array_equal(a.y, b.y) and a.lower.keys() == b.lower.keys()
            and all(np.array_equal(a.lower[k], b.lower[k]) and np.array_equal(a.upper[k], b.upper[k]) for k in a.lower))


def _config(kind: str, store: Valkey, **extra: object) -> ServeConfig:
    if kind == "valkey":
        store.client().flushdb()
        return ServeConfig(session_store=store.url, **extra)  # type: ignore[arg-type]
    return ServeConfig(**extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["memory", "valkey"])
def test_served_intervals_equal_local_across_chunking_resume_and_replicas(models_dir, model, series, store, kind):
    """One session pushed in CHUNKS, released and resumed midway, then exported and imported on a second plane (and,
    with Valkey, resumed by id on that plane): every answer bit-identical to one local stream fed the same chunks."""
    pieces = chunked(series, CHUNKS + CHUNKS)
    local = model.stream()
    want = [local.push(p, intervals=True) for p in pieces]
    index = model._interval_index(True)
    config = _config(kind, store)

    async def main() -> list[Forecast]:
        a, b = DataPlane(ModelRepository(models_dir), config), DataPlane(ModelRepository(models_dir), config)
        a.start()
        b.start()
        got: list[Forecast] = []
        try:
            s, _ = await a.open_session(MODEL, "", "s1", owner=object())
            for p in pieces[:5]:
                got.append(await a.forecast(s, p, index))
            await a.release(s)
            s, existed = await a.open_session(MODEL, "", "s1", resume=True, owner=object())  # resume on a
            assert existed
            for p in pieces[5:len(CHUNKS)]:
                got.append(await a.forecast(s, p, index))
            blob = a.export_state(s)
            await a.release(s)
            if kind == "valkey":  # the other replica resumes the stored session by id
                s, _ = await b.open_session(MODEL, "", "s1", resume=True, owner=object())
            else:  # the other replica imports the exported bytes
                s, _ = await b.open_session(MODEL, "", "s2", blob, owner=object())
            for p in pieces[len(CHUNKS):]:
                got.append(await b.forecast(s, p, index))
            assert np.array_equal(s.state[MONITOR][0], local._monitor_state)
            await b.release(s)
        finally:
            await a.close()
            await b.close()
        return got

    got = asyncio.run(main())
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert _same(g, w), i


@pytest.mark.parametrize("kind", ["memory", "valkey"])
def test_batched_sessions_each_equal_their_local_stream(models_dir, model, series, store, kind):
    """Eight sessions stepping together (one onnxruntime call and one monitor pass per batch): each session's
    predictions and intervals are what its own local stream gives."""
    index = model._interval_index(True)
    offsets = [7 * i for i in range(8)]

    async def main() -> list[list[Forecast]]:
        plane = DataPlane(ModelRepository(models_dir), _config(kind, store))
        plane.start()
        try:
            sessions = [(await plane.open_session(MODEL, "", f"b{i}", owner=object()))[0] for i in range(8)]

            async def run(i: int) -> list[Forecast]:
                s, out = sessions[i], []
                for t in range(60):
                    x = series[offsets[i] + t: offsets[i] + t + 1]
                    out.append(await plane.forecast(s, x, index, alone=False))
                return out

            results = await asyncio.gather(*(run(i) for i in range(8)))
            assert max(plane.batcher.recent_batch_sizes) > 1  # the steps did batch
            return results
        finally:
            await plane.close()

    for i, got in enumerate(asyncio.run(main())):
        local = model.stream()
        for t, g in enumerate(got):
            assert _same(g, local.push(series[offsets[i] + t: offsets[i] + t + 1], intervals=True)), (i, t)


def test_a_fleet_carries_each_sessions_bounds(models_dir, model, series):
    """A fleet's k samples per session: the bounds it returns are the session's own stream's, one sample per push."""
    x = np.stack([series[9 * i:9 * i + 6] for i in range(4)])  # [4, 6, 1]

    async def main():
        plane = DataPlane(ModelRepository(models_dir), ServeConfig())
        plane.start()
        try:
            fleet = plane.open_fleet(MODEL)
            first = await fleet.step([f"f{i}" for i in range(4)], x[:, :2])
            second = await fleet.step(None, x[:, 2:])
            await fleet.release()
            return first, second
        finally:
            await plane.close()

    first, second = asyncio.run(main())
    bounds = np.concatenate([first.bounds, second.bounds], axis=1)  # [4, 6, 2L * O]
    o = model.n_targets
    for i in range(4):
        local = model.stream()
        for t in range(6):
            f = local.push(x[i, t:t + 1], intervals=True)
            answer = np.concatenate([f.y, *(np.concatenate([f.lower[lv], f.upper[lv]], axis=1)
                                            for lv in model.interval_levels)], axis=1)[0]
            assert np.array_equal(bounds[i, t], answer[o:]), (i, t)


def test_a_record_of_graph_state_only_resumes_with_a_fresh_monitor(model, series):
    """Store records written before monitor rows existed hold the graph state alone: they load, monitor fresh."""
    slab = Slab(model)
    stream = model.stream()
    stream.push(series[:30])
    row = slab.alloc({k: v[None] for k, v in stream.state.items()} | {MONITOR: stream._monitor_state[None]}, 30)
    full = slab.row_to_bytes(row)
    assert len(full) == slab.row_bytes == slab.graph_bytes + 8 * model.monitor.width
    other = slab.alloc()
    slab.load_bytes(other, full)
    assert np.array_equal(slab.state[MONITOR][other], stream._monitor_state)
    slab.load_bytes(other, full[:slab.graph_bytes])
    assert np.array_equal(slab.state[MONITOR][other], model.monitor.fresh(1)[0])
    assert all(np.array_equal(slab.state[n][other], slab.state[n][row]) for n in slab.names)
    with pytest.raises(ValueError, match="needs"):
        slab.load_bytes(other, full[:-8])


def test_large_chunks_and_predict_blobs_carry_the_monitor(models_dir, model, series):
    """A chunk past the lane's threshold runs in the lane's thread, and Predict's final-state blobs carry the
    monitor rows its sequences reached: both continue exactly as a local stream that took the same samples."""
    long = np.tile(series, (20, 1))[:5000]  # [5000, 1]: 5000 values, past OFFLOAD_VALUES (4096)
    index = model._interval_index(True)
    local = model.stream()
    want = [local.push(long, intervals=True), local.push(series[:3], intervals=True)]

    async def main():
        plane = DataPlane(ModelRepository(models_dir), ServeConfig())
        plane.start()
        try:
            s, _ = await plane.open_session(MODEL, "", "lane", owner=object())
            got = [await plane.forecast(s, long, index), await plane.forecast(s, series[:3], index)]
            assert plane.lane.terminated == 0
            p = await plane.predict(model, series[None, :50])
            t, _ = await plane.open_session(MODEL, "", "from-predict", p.states[0], owner=object())
            after = await plane.forecast(t, series[50:53], index)
            return got, p, after
        finally:
            await plane.close()

    got, p, after = asyncio.run(main())
    assert all(_same(g, w) for g, w in zip(got, want))
    np.testing.assert_array_equal(p.y[0], model.predict(series[None, :50])[0])  # Predict answers predictions only
    reference = model.stream()
    reference.push(series[None, :50][0])  # one chunk of 50: the sequence graph, as Predict runs it
    assert _same(after, reference.push(series[50:53], intervals=True))
