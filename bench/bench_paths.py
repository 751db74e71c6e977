"""Which path to use when: eddy's unary requests, per-sample streams and chunks, side by side, driven by perf_analyzer.

Not a test. Run from the repository root (after ``make bench-triton`` built
perf_analyzer and the model, or it builds them)::

    .venv/bin/python bench/bench_paths.py               # 3 interleaved rounds, ~8 min
    .venv/bin/python bench/bench_paths.py --quick       # 1 round, 1 s windows

Serves the LSTM 64->256 step graph of ``bench/bench_triton.py`` from ``eddy
serve`` (defaults), for 1 and 32 concurrent sequences: over the Open
Inference Protocol with perf_analyzer in sequence mode
(``--serial-sequences``, sequences of 200 requests, three ``--window-ms``
windows per row), unary ``ModelInfer`` and ``--streaming``, one sample per
request (perf_analyzer sends no more than one per request of a sequence
model); and chunks of 10 and 100 samples per message on eddy.v1 streams,
from eddy's ``AsyncClient`` in a process of its own (one stream per
sequence, closed loop, one ``--window-ms`` x 3 window after a 1 s warm-up).
A fresh server per round; rows interleaved; medians. Reports samples/s,
p50/p99 per message, server CPU per sample, and samples per onnxruntime call. The
fleet path (many sessions per message) is measured by its own benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_triton as bt  # noqa: E402  (its setup, servers and perf_analyzer rows)

PATHS = [("unary", "infer", 1), ("stream", "stream", 1), ("chunks of 10", "chunks", 10),
         ("chunks of 100", "chunks", 100)]

# The chunk load: N eddy.v1 streams from one AsyncClient, closed loop, k samples per message; prints JSON.
_CHUNKS = """
import asyncio, json, sys, time
import numpy as np
from eddy.runtime.client import AsyncClient
url, n, k, warm, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
xs = np.random.default_rng(0).standard_normal((200 * k, 64)).astype(np.float32)
lat, t_start = [], time.time() + warm
async def one(client, t_end):
    async with client.stream("lstm") as s:
        i = 0
        while (t0 := time.time()) < t_end:
            await s.push(xs[(i % 200) * k:(i % 200 + 1) * k])
            if t0 >= t_start:
                lat.append(time.time() - t0)
            i += 1
async def main():
    async with AsyncClient(url) as client:
        await asyncio.gather(*(one(client, t_start + secs) for _ in range(n)))
asyncio.run(main())
print(json.dumps({"t0": t_start, "t1": t_start + secs, "latencies": lat}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sequences", default="1,32", help="concurrent sequence counts (default 1,32)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians (default 3)")
    p.add_argument("--window-ms", type=int, default=3000, help="perf_analyzer window, three per row (default 3000)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "eddy-bench-triton",
                   help="the model and perf_analyzer input, shared with bench_triton.py (default $TMPDIR/eddy-bench-triton)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here (default: the workdir)")
    p.add_argument("--quick", action="store_true", help="1 round, 1 s windows")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.window_ms = 1, 1000
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    models, pa = bt._model(work), bt.perf_analyzer()
    python, steps = pa.binary.parent / "python", bt._steps_file(work, models)
    seqs = [int(s) for s in args.sequences.split(",")]
    rows: list[dict] = []
    start, load_before = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), os.getloadavg()
    for rnd in range(args.rounds):
        server = bt._eddy(work, models, python, [])
        try:
            bt._perf_analyzer_row(pa, server, "infer", max(seqs), 500, steps, work, check=False)  # warm-up
            for name, mode, samples in PATHS:
                for n in seqs:
                    if mode == "chunks":
                        r = _chunks_row(server, n, samples, args.window_ms * 3 / 1000)
                    else:
                        r = bt._perf_analyzer_row(pa, server, mode, n, args.window_ms, steps, work)
                    r.update(server="eddy", mode=name, sequences=n, round=rnd)
                    rows.append(r)
                    print(_line(r), flush=True)
        finally:
            server.stop()
    medians = bt._medians(rows)
    print()
    print(_HEAD)
    print("-" * len(_HEAD))
    print("\n".join(map(_line, medians)))
    end = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    print(f"\n{start} - {end} UTC; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores); /call: samples per onnxruntime call; srv us: server CPU per sample; "
          "other: cores used by the rest of the machine")
    out = args.json or work / "bench_paths.json"
    out.write_text(json.dumps({"start_utc": start, "end_utc": end, "rows": medians, "all_rows": rows}, indent=1))
    print(f"figures: {out}")
    return 0


def _chunks_row(server: bt._Server, n: int, k: int, seconds: float) -> dict:
    """``n`` eddy.v1 streams pushing ``k`` samples per message for ``seconds`` (after 1 s); the row's figures."""
    proc = subprocess.Popen([sys.executable, "-c", _CHUNKS, server.url, str(n), str(k), "1", str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = bt._Sampler(server.pids(), proc.pid)
    out, err = proc.communicate(timeout=seconds + 120)
    sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"bench_paths: the chunk load failed:\n{err[-2000:]}")
    r = json.loads(out)
    lat = sorted(r["latencies"])
    server_s, client_s, machine_s = sampler.between(int(r["t0"] * 1e9), int(r["t1"] * 1e9))
    samples = len(lat) * k
    return {"steps_per_s": samples / seconds, "p50_ms": bt._pct(lat, 50) * 1e3, "p99_ms": bt._pct(lat, 99) * 1e3,
            "mean_batch": float(k),  # a chunk runs alone, at batch 1, through the sequence graph (exactness)
            "server_us": server_s / max(samples, 1) * 1e6,
            "client_us": client_s / max(samples, 1) * 1e6, "server_cores": server_s / seconds,
            "client_cores": client_s / seconds,
            "other_cores": max(0.0, (machine_s - server_s - client_s) / seconds), "exact": "-", "seconds": seconds}


_HEAD = f"{'path':<15}{'seqs':>5}{'samples/s':>11}{'p50 ms':>8}{'p99 ms':>8}{'/call':>7}{'srv us':>8}{'other':>7}  exact"


def _line(r: dict) -> str:
    if r.get("crashed"):
        return f"{r['mode']:<15}{r['sequences']:>5}  CRASHED: {r['crashed']}"
    return (f"{r['mode']:<15}{r['sequences']:>5}{r['steps_per_s']:>11,.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}"
            f"{r['mean_batch']:>7.1f}{r['server_us']:>8.1f}{r['other_cores']:>7.2f}  {r['exact']}")


if __name__ == "__main__":
    sys.exit(main())
