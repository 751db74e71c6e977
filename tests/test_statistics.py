"""Per-version statistics (OIP ModelStatistics) follow the model's name and version, not one loaded object."""

from __future__ import annotations

import gc
import weakref

from conftest import MODEL

from eddy import runtime
from eddy.runtime.serving.stats import Statistics


def test_a_reloaded_version_keeps_counting_and_the_old_load_is_freed(models_dir):
    stats = Statistics()
    first = runtime.load(models_dir / MODEL / "1")
    stats.of(first).executed(2, 3, 1_000, queue_ns=40)
    stats.of(first).finished(True, 2_000)
    gone = weakref.ref(first)
    del first
    gc.collect()
    assert gone() is None  # the counters hold no loaded model (nor its onnxruntime sessions)
    again = runtime.load(models_dir / MODEL / "1")  # e.g. a live reload of the same version
    stats.of(again).executed(1, 1, 500)
    s = stats.get(MODEL, again.version)
    assert (s.inference_count, s.execution_count, s.success_count, s.queue_ns) == (4, 2, 1, 40)
    assert s.compute_ns == 2 * 1_000 + 500 and s.batches == {2: [1, 1_000], 1: [1, 500]}
    assert stats.get(MODEL, again.version + 1).execution_count == 0  # a version that never ran
