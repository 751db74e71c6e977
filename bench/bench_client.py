"""Client CPU per one-sample stream message: the sync Client/RemoteStream vs the asyncio AsyncClient.

Starts ``eddy serve`` (the committed default model, 127.0.0.1, port 0) in its
own process, then in this process pushes one sample at a time through one
stream with each client, ``--repeats`` times interleaved, and prints medians
of this process's CPU time (all its threads: grpc's included) and wall time
per message, with the ratio to the asyncio client.

Run: ``.venv/bin/python bench/bench_client.py [--n 3000] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from eddy.runtime.client import AsyncClient, Client

ROOT = Path(__file__).resolve().parents[1]
MODEL = "sunspots"


def _sync(address: str, xs: np.ndarray) -> tuple[float, float]:
    with Client(address) as client, client.stream(MODEL) as s:
        s.push(xs[0])  # connected and warm
        c0, w0 = time.process_time(), time.perf_counter()
        for x in xs:
            s.push(x)
        return time.process_time() - c0, time.perf_counter() - w0


def _async(address: str, xs: np.ndarray) -> tuple[float, float]:
    async def run() -> tuple[float, float]:
        async with AsyncClient(address) as client, client.stream(MODEL) as s:
            await s.push(xs[0])
            c0, w0 = time.process_time(), time.perf_counter()
            for x in xs:
                await s.push(x)
            return time.process_time() - c0, time.perf_counter() - w0

    return asyncio.run(run())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=3000, help="messages per repeat (default 3000)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default 5)")
    a = p.parse_args()
    argv = [sys.executable, "-m", "eddy.cli", "serve", "--models", str(ROOT / "models"), "--host", "127.0.0.1",
            "--port", "0", "--log-level", "WARNING"]
    server = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        m = re.search(r"serving \d+ model\(s\) on (\S+)\s*$", line)
        if not m:
            sys.exit(f"bench_client: eddy serve did not report its address (got {line!r})")
        xs = np.random.default_rng(0).standard_normal((a.n, 1)).astype(np.float32)
        cases = {"sync Client": _sync, "AsyncClient": _async}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        wall: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(a.repeats):
            for k, fn in cases.items():
                c, w = fn(m.group(1), xs)
                cpu[k].append(c / a.n * 1e6)
                wall[k].append(w / a.n * 1e6)
        base = statistics.median(cpu["AsyncClient"])
        print(f"one stream, {a.n} one-sample messages x {a.repeats} repeats; medians per message")
        print(f"  {'client':<12} {'CPU us':>8} {'wall us':>8} {'CPU vs async':>13}")
        for k in cases:
            c = statistics.median(cpu[k])
            print(f"  {k:<12} {c:8.0f} {statistics.median(wall[k]):8.0f} {c / base:12.2f}x")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
