"""Fair sharing: honest streams' latency with and without a client sending max-size messages in a loop.

Not a test. Run from the repository root::

    .venv/bin/python bench/bench_fairness.py                 # ~1.5 min on 2 cores
    .venv/bin/python bench/bench_fairness.py --quick         # smoke run

It starts the real ``eddy serve`` CLI (127.0.0.1, port 0) on the committed
model and drives 16 honest streams from this process (grpc.aio, closed loop:
one sample, await its prediction, repeat). Each configuration runs for
``--duration`` seconds after ``--warmup``, ``--repeat`` times, interleaved:

- ``alone``: the 16 honest streams only;
- ``attacked``: the same, while another process pushes messages of
  ``--max-samples`` samples (the server's --max-samples-per-message) into
  its own stream as fast as the server answers them.

Prints honest messages/s, p50 and p99 latency (medians over the repeats),
the attacker's samples/s, and the ratio of the honest p99 attacked vs alone.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = "sunspots"


def _attacker(address: str, samples: int, seconds: float) -> int:
    """Child process: push max-size messages in a loop; print samples answered per second."""
    from eddy.runtime.client import Client

    x = np.random.default_rng(0).uniform(0, 200, (samples, 1)).astype(np.float32)
    with Client(address) as c, c.stream(MODEL) as rs:
        end, n = time.monotonic() + seconds, 0
        t0 = time.monotonic()
        while time.monotonic() < end:
            rs.push(x)
            n += samples
    print(f"{n / (time.monotonic() - t0):.0f}", flush=True)
    return 0


async def _honest(address: str, streams: int, warmup: float, duration: float) -> list[float]:
    import grpc

    from eddy.runtime.grpc.tensors import array_to_tensor
    from eddy.v1 import inference_pb2 as pb
    from eddy.v1 import inference_pb2_grpc as pb_grpc

    channels = [grpc.aio.insecure_channel(address) for _ in range(4)]
    latencies: list[float] = []
    t_start = time.monotonic()
    t_from, t_to = t_start + warmup, t_start + warmup + duration

    async def one(i: int) -> None:
        stub = pb_grpc.InferenceStub(channels[i % len(channels)])
        call = stub.Stream()
        await call.write(pb.StreamRequest(open=pb.OpenStream(model=MODEL)))
        await call.read()
        sample = pb.StreamRequest(samples=array_to_tensor(np.array([[float(i)]], np.float32)))
        while (now := time.monotonic()) < t_to:
            await call.write(sample)
            await call.read()
            if now >= t_from:
                latencies.append(time.monotonic() - now)
        await call.done_writing()

    await asyncio.gather(*(one(i) for i in range(streams)))
    for ch in channels:
        await ch.close()
    return latencies


def _serve(max_samples: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "eddy.cli", "serve", "--models", str(ROOT / "models"), "--port", "0",
                             "--max-samples-per-message", str(max_samples), "--log-level", "WARNING"],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    return proc, line.split()[-1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--max-samples", type=int, default=65_536)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 repeat of 3 s")
    p.add_argument("--attacker", metavar="ADDRESS", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.attacker:
        return _attacker(args.attacker, args.max_samples, args.seconds)
    if args.quick:
        args.repeat, args.duration, args.warmup = 1, 3.0, 1.0
    server, address = _serve(args.max_samples)
    rows: dict[str, list[tuple[float, float, float, float]]] = {"alone": [], "attacked": []}
    try:
        for _ in range(args.repeat):
            for mode in ("alone", "attacked"):
                attacker = None
                if mode == "attacked":
                    attacker = subprocess.Popen([sys.executable, __file__, "--attacker", address, "--max-samples",
                                                 str(args.max_samples), "--seconds",
                                                 str(args.warmup + args.duration + 1)],
                                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
                lat = asyncio.run(_honest(address, args.streams, args.warmup, args.duration))
                rate = float(attacker.communicate(timeout=120)[0] or 0) if attacker is not None else 0.0
                a = np.array(lat) * 1e3
                rows[mode].append((len(a) / args.duration, float(np.percentile(a, 50)), float(np.percentile(a, 99)),
                                   rate))
    finally:
        server.terminate()
        server.wait(timeout=30)
    med = {m: [statistics.median(r[i] for r in rs) for i in range(4)] for m, rs in rows.items()}
    print(f"{args.streams} honest per-sample streams, attacker: {args.max_samples}-sample messages in a loop; "
          f"medians of {args.repeat} run(s) of {args.duration:g} s")
    print(f"{'':10} {'honest msg/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'attacker samples/s':>19}")
    for m, (rate, p50, p99, arate) in med.items():
        print(f"{m:10} {rate:12.0f} {p50:8.2f} {p99:8.2f} {arate:19.0f}")
    print(f"honest p99 attacked / alone: {med['attacked'][2] / med['alone'][2]:.1f}x; "
          f"throughput {med['attacked'][0] / med['alone'][0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
