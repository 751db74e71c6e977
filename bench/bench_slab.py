"""The slab state store against the bare onnxruntime call, and what an idle session costs.

Not a test. Run from the repository root (part of ``make bench``)::

    .venv/bin/python bench/bench_slab.py [--sessions 256] [--repeat 7]

1. Batch path at B sessions (default 256), seed model, one sample each, the
   step graph: the bare ``InferenceSession.run`` on preallocated arrays (the
   anchor); the slab's own work around that same call (one gather per state
   tensor, one scatter back); the batcher's whole path (joining the B
   requests' inputs, normalisation in and out as well); and, for reference,
   the path before the slab (a dict of small arrays per session: concatenate
   B of them, run, copy each row back). Medians of ``--repeat`` runs of
   ``--calls`` calls, interleaved.
2. Idle session bytes: tracemalloc around opening and releasing N sessions
   with 32-character ids in a MemoryStore (the id strings, the id map, the
   slab rows, its slack after doubling), at N = a full slab and N = just past
   a doubling, so both ends of the growth cycle show.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _batch_path(model, b: int, calls: int, repeat: int) -> dict[str, float]:
    from eddy.runtime.serving.batcher import _run
    from eddy.runtime.serving.slab import Slab

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(b, 1, model.n_features)) * 60 + 78).astype(np.float32)  # [B, 1, F]
    xs = list(x)  # B requests of [1, F]
    sess = model._step  # the bare onnxruntime session of the step graph
    names = [s.name for s in model.state_spec]
    outputs = model._outputs  # y, then the state outputs in manifest order
    feeds = {"x": x[:, 0], **model.zero_state(b)}  # preallocated, as an anchor would keep them

    slab = Slab(model, capacity=4 * b)
    for _ in range(3 * b):  # a slab in use: the batch's rows are scattered over it
        slab.alloc()
    rows = sorted(rng.choice(3 * b, size=b, replace=False).tolist())
    old_states = [model.zero_state(1) for _ in range(b)]  # the dict-of-arrays layout it replaces

    def bare() -> None:
        sess.run(outputs, feeds)

    def slab_only() -> None:  # the state store's own work around the same call: one gather, one scatter
        state = slab.gather(rows)
        y, *out = sess.run(outputs, {"x": x[:, 0], **state})
        slab.scatter(rows, dict(zip(names, out)), 1)

    def eddy() -> None:  # the batcher's whole path: B inputs joined, gather, normalise, run, de-normalise, scatter
        _, new = _run(slab, rows, xs)
        slab.scatter(rows, new, 1)

    def old() -> None:
        stacked = {k: np.concatenate([s[k] for s in old_states]) for k in names}
        _, new = model._advance(x, stacked)
        for i, s in enumerate(old_states):
            for k in names:
                s[k] = new[k][i:i + 1].copy()

    fns = {"bare": bare, "slab": slab_only, "eddy": eddy, "old": old}
    timings: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            timings[name].append((time.perf_counter() - t0) / calls * 1e6)
    return {k: statistics.median(v) for k, v in timings.items()}


def _idle_bytes(model, n: int) -> float:
    from eddy.runtime.serving.store import MemoryStore

    store = MemoryStore(max_sessions=10 * n)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(n):
        sid = uuid.uuid4().hex  # as a client sends it: the server keeps the string
        store.release(store.acquire(model, sid))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(store) == n
    return (after - before) / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "sunspots", help="model directory")
    p.add_argument("--sessions", type=int, default=256, help="batch size B (default: 256)")
    p.add_argument("--calls", type=int, default=200, help="calls per timing (default: 200)")
    p.add_argument("--repeat", type=int, default=7, help="interleaved repeats; medians reported (default: 7)")
    p.add_argument("--quick", action="store_true", help="fewer calls and repeats")
    args = p.parse_args(argv)
    if args.quick:
        args.calls, args.repeat = 50, 3
    import eddy.runtime as runtime

    model = runtime.load(args.model)
    t = _batch_path(model, args.sessions, args.calls, args.repeat)
    print(f"batch path, {model.name}/{model.version} {model.manifest.cell}({model.manifest.units}), "
          f"B={args.sessions}, 1 sample each, median of {args.repeat}x{args.calls} calls")
    print(f"  bare onnxruntime run (state and x preallocated)   {t['bare']:8.1f} us   1.00x")
    print(f"  slab gather + the same run + slab scatter         {t['slab']:8.1f} us   {t['slab'] / t['bare']:.2f}x"
          "   (goal <= 3x)")
    print(f"  batcher path: join B inputs, gather, normalise,   {t['eddy']:8.1f} us   {t['eddy'] / t['bare']:.2f}x")
    print("    run, de-normalise, scatter")
    print(f"  a dict of arrays per session (no slab)            {t['old']:8.1f} us   {t['old'] / t['bare']:.2f}x")
    print("    (concatenate B, run, copy each row back)")
    state_bytes = sum(int(np.prod(s.shape)) * 4 for s in model.state_spec)
    print(f"idle session bytes (tracemalloc; state {state_bytes} B, 32-char ids included; goal <= 400 B)")
    for n in (16384, 16385, 10000):
        print(f"  {n:6d} sessions: {_idle_bytes(model, n):6.0f} B per session")
    return 0


if __name__ == "__main__":
    sys.exit(main())
