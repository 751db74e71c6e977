"""Per-version statistics (OIP ModelStatistics): keyed by name and version, every call timed in three phases."""

from __future__ import annotations

import asyncio
import gc
import weakref

import numpy as np
from conftest import MODEL

from eddy import runtime
from eddy.runtime.serving.batcher import OFFLOAD_VALUES
from eddy.runtime.serving.dataplane import DataPlane
from eddy.runtime.serving.repository import ModelRepository
from eddy.runtime.serving.stats import ModelStats, Statistics


def test_a_reloaded_version_keeps_counting_and_the_old_load_is_freed(models_dir):
    stats = Statistics()
    first = runtime.load(models_dir / MODEL / "1")
    stats.of(first).executed(2, 3, input_ns=10, infer_ns=1_000, output_ns=20, queue_ns=40)
    stats.of(first).finished(True, 2_000)
    gone = weakref.ref(first)
    del first
    gc.collect()
    assert gone() is None  # the counters hold no loaded model (nor its onnxruntime sessions)
    again = runtime.load(models_dir / MODEL / "1")  # e.g. a live reload of the same version
    stats.of(again).executed(1, 1, infer_ns=500)
    s = stats.get(MODEL, again.version)
    assert (s.inference_count, s.execution_count, s.success_count, s.queue_ns) == (4, 2, 1, 40)
    assert (s.compute_count, s.input_ns, s.infer_ns, s.output_ns) == (3, 2 * 10, 2 * 1_000 + 500, 2 * 20)
    assert s.batches == {2: [1, 10, 1_000, 20], 1: [1, 0, 500, 0]}
    assert stats.get(MODEL, again.version + 1).execution_count == 0  # a version that never ran


def test_every_path_times_the_three_phases_of_its_calls(models_dir, series):
    """Inline steps, a batch, a large chunk (the lane) and a Predict: equal counts (perf_analyzer requires it)."""
    async def run() -> ModelStats:
        plane = DataPlane(ModelRepository(models_dir))
        a, _ = await plane.open_session(MODEL)
        b, _ = await plane.open_session(MODEL)
        await plane.push(a, series[:1], alone=True)  # inline, no task
        await asyncio.gather(plane.push(a, series[1:2], alone=False), plane.push(b, series[:1], alone=False))  # queued
        big = np.resize(series, (OFFLOAD_VALUES + 1, series.shape[1]))
        await plane.push(b, big)  # the lane's thread
        await plane.predict(plane.model(MODEL), series[None, :10])
        await plane.close()
        return plane.stats.get(MODEL, a.model.version)

    s = asyncio.run(run())
    assert s.success_count == s.compute_count == s.queue_count == 5 and s.execution_count == 4  # a, b: one call
    assert s.input_ns > 0 and s.infer_ns > 0 and s.output_ns > 0
    assert {size: calls for size, (calls, *_) in s.batches.items()} == {1: 3, 2: 1}
