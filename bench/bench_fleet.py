"""The fleet step (many sessions per message) against the bare onnxruntime call, measured in the same run.

Not a test (pytest does not collect it). Run from the repository root::

    .venv/bin/python bench/bench_fleet.py                 # 3 interleaved rounds, ~3 min
    .venv/bin/python bench/bench_fleet.py --quick         # 1 round of 3 s, ~1 min
    .venv/bin/python bench/bench_fleet.py --sessions 1000 --samples 4 --models sunspots

Models (``--models``): ``lstm``, the LSTM 64->256 step graph of
``bench/bench_triton.py`` (a seeded, untrained Keras ``LSTM(256)`` over 64
features, ``Dense(1)``, exported with ``--norm-identity``; built once into
``--workdir``, which needs the train extra); ``sunspots``, the committed
default model (the seed's SimpleRNN(50) trained by ``eddy train``: state
``h0``, ``x_last``, ``x_seen``, raw units); ``seed``, the seed SimpleRNN(50)
level model kept as ``tests/data/legacy_sunspots/1`` (state ``h0`` only,
normalised units, the runtime normalises around it).

For each model, in every round, interleaved:

- **bare**: the step graph's ``InferenceSession.run`` at batch ``--sessions``
  on one thread (eddy's session options), inputs and state preallocated, in
  this process: the physical limit of one core. Steps/s by the wall clock (as
  the fleet is measured) and CPU per step (thread time, which the machine's
  other load does not inflate);
- **fleet**: ``eddy serve`` (one process, its defaults, memory store) driven by
  one client process holding one ``Fleet`` RPC (``AsyncClient.fleet``),
  ``--sessions`` sessions x ``--samples`` samples per message, ``--window``
  messages in flight (``pipeline``). Before measuring, the client checks that
  two sessions' first answers equal a local ``Stream``'s bit for bit;
- **ceiling**: a grpc.aio server that parses every Fleet message and answers
  it with constant bytes of the right shape (nothing computed), driven the
  same way: what any Python grpc.aio server could do with these messages here.

Reported: steps/s (session-samples answered per second), fleet / bare, fleet /
ceiling, p50 message round trip, server and client CPU in cores (from /proc
and the client's own ``os.times``), server CPU per step against the bare call's
CPU per step, and the rest of the machine's load (other jobs: the machine is
shared), with the load average before and after. Medians over the rounds;
ratios are per round (measured side by side), then the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from _models import copy_as  # noqa: E402  (a model directory under another name)
from bench_triton import _cpu_seconds, _machine_busy, _model  # noqa: E402  (the LSTM graph, /proc readers)

MODELS = ("lstm", "sunspots", "seed")
SEED = ROOT / "tests" / "data" / "legacy_sunspots" / "1"


# --------------------------------------------------------------------------- the client process

async def _drive(url: str, model: str, sessions: int, samples: int, warmup: float, duration: float,
                 check: Path | None, window: int) -> dict:
    """One fleet, ``window`` messages in flight: steps answered in ``duration`` s after ``warmup`` s."""
    from eddy.runtime.client import AsyncClient

    rng = np.random.default_rng(0)
    async with AsyncClient(url, max_message_bytes=64 * 1024 * 1024) as client:
        async with client.fleet(model) as fleet:
            f = fleet.n_features
            scale = 0.5 if model != "sunspots" and model != "seed" else 60.0
            xs = [(rng.normal(size=(sessions, samples, f)) * scale).astype(np.float32) for _ in range(8)]
            ids = [f"{os.getpid()}-{time.monotonic_ns()}-{i}" for i in range(sessions)]
            r = await fleet.push(ids, xs[0])
            if r.errors:
                raise SystemExit(f"bench_fleet: the first message failed: {list(r.errors.values())[:3]}")
            if check is not None:  # exactness: two sessions' first answers against local streams
                from eddy.runtime import load

                local = load(check)
                for i in (0, sessions - 1):
                    s = local.stream()
                    want = np.concatenate([s.push(xs[0][i, j:j + 1]) for j in range(samples)])
                    if not np.array_equal(want, r.y[i]):
                        raise SystemExit(f"bench_fleet: session {i}'s answer differs from a local stream")
            sent: list[float] = []
            stop = False

            def messages():  # the pipeline pulls one whenever fewer than `window` answers are outstanding
                n = 0
                while not stop:
                    sent.append(time.perf_counter())
                    yield ids, xs[n % 8]
                    n += 1

            c0, t0, lat = os.times(), time.perf_counter(), []
            counting, end, n = False, t0 + warmup, 0
            async for r in fleet.pipeline(messages(), window=window):
                m1 = time.perf_counter()
                if r.errors:
                    raise SystemExit(f"bench_fleet: entries failed: {list(r.errors.values())[:3]}")
                if counting:
                    lat.append(m1 - sent[n])
                    if m1 >= end:
                        stop = True
                elif m1 >= end:
                    counting, end, c0, t0 = True, m1 + duration, os.times(), m1
                n += 1
            c1, t1 = os.times(), time.perf_counter()
    cpu = (c1.user + c1.system) - (c0.user + c0.system)
    lat.sort()
    return {"steps_per_s": len(lat) * sessions * samples / (t1 - t0), "p50_ms": 1e3 * lat[len(lat) // 2],
            "client_cores": cpu / (t1 - t0), "messages_per_s": len(lat) / (t1 - t0)}


# --------------------------------------------------------------------------- the ceiling server process

async def _ceiling(features: int, targets: int, sessions: int, samples: int) -> None:
    """A grpc.aio server answering every Fleet message with constant bytes of the right shape."""
    import grpc

    from eddy.v1 import inference_pb2 as pb

    opened = pb.FleetResponse(opened=pb.FleetOpened(model="ceiling", version=1,
                                                    features=[f"f{i}" for i in range(features)],
                                                    targets=[f"t{i}" for i in range(targets)])).SerializeToString()
    answer = pb.FleetResponse(predictions=pb.FleetPredictions(
        offsets=bytes(8 * sessions),
        outputs=pb.Tensor(shape=[sessions, samples, targets], raw=bytes(4 * sessions * samples * targets)),
    )).SerializeToString()

    async def fleet(requests, context):
        async for r in requests:  # parsed, as any server must
            yield opened if r.WhichOneof("kind") == "open" else answer

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20),
                                      ("grpc.max_send_message_length", 64 << 20)])
    handler = grpc.stream_stream_rpc_method_handler(fleet, request_deserializer=pb.FleetRequest.FromString,
                                                    response_serializer=lambda b: b)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("eddy.v1.Inference", {"Fleet": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"eddy: serving 1 model(s) on 127.0.0.1:{port}", flush=True)  # the line eddy serve prints
    await server.wait_for_termination()


# --------------------------------------------------------------------------- the harness

def _bare(step_onnx: Path, batch: int, duration: float) -> tuple[float, float]:
    """(steps/s by the wall clock, CPU seconds per step) of the bare step-graph call at ``batch`` on one thread."""
    import onnxruntime as ort

    from eddy.runtime.core.model import session_options

    sess = ort.InferenceSession(str(step_onnx), session_options(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: (rng.normal(size=(batch, *i.shape[1:])) * 0.5).astype(np.float32) for i in sess.get_inputs()}
    outputs = [o.name for o in sess.get_outputs()]
    for _ in range(20):
        sess.run(outputs, feeds)
    calls, t0, c0 = 0, time.perf_counter(), time.thread_time()
    while (t := time.perf_counter()) - t0 < duration:
        for _ in range(10):
            sess.run(outputs, feeds)
        calls += 10
    return calls * batch / (t - t0), (time.thread_time() - c0) / (calls * batch)


class _Serve:
    """A server process printing ``eddy: serving N model(s) on HOST:PORT`` (its own process group)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self._log = open(log, "w")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     start_new_session=True)
        line = self.proc.stdout.readline()
        if " on " not in line:
            self.stop()
            raise SystemExit(f"bench_fleet: {argv[2:4]} did not start; see {log}")
        self.url = line.rsplit(" on ", 1)[1].strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        self._log.close()


def _fleet(server: _Serve, model: str, check: Path | None, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--client", server.url, "--model", model, "--sessions", str(args.sessions),
           "--samples", str(args.samples), "--warmup", str(args.warmup), "--duration", str(args.duration),
           "--window", str(args.window)] + (["--check", str(check)] if check is not None else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(args.warmup + 1.5)  # client start-up (imports, the check) and warm-up
    s0, m0, t0 = _cpu_seconds(server.proc.pid), _machine_busy(), time.perf_counter()
    time.sleep(args.duration * 0.8)  # inside the client's counting window
    s1, m1, t1 = _cpu_seconds(server.proc.pid), _machine_busy(), time.perf_counter()
    out, err = proc.communicate(timeout=args.warmup + args.duration + 120)
    if proc.returncode != 0:
        raise SystemExit(f"bench_fleet: the client failed:\n{err[-2000:]}")
    r = json.loads(out)
    r["server_cores"] = (s1 - s0) / (t1 - t0)
    r["server_us_per_step"] = 1e6 * r["server_cores"] / r["steps_per_s"]
    r["other_cores"] = max(0.0, (m1 - m0) / (t1 - t0) - r["server_cores"] - r["client_cores"])
    return r


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


_KEYS = ("bare", "bare_us_per_step", "steps_per_s", "ratio", "ceiling", "of_ceiling", "p50_ms", "server_cores",
         "server_us_per_step", "client_cores", "other_cores", "ceiling_server_cores", "ceiling_us_per_step")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=256, help="sessions per message, and the bare batch (default: 256)")
    p.add_argument("--samples", type=int, default=1, help="samples per session per message (default: 1)")
    p.add_argument("--window", type=int, default=2,
                   help="messages in flight (RemoteFleet.pipeline); 1: one message at a time (default: 2)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians reported (default: 3)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds counted per measurement (default: 5)")
    p.add_argument("--warmup", type=float, default=1.5, help="seconds before counting (default: 1.5)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)} (default: all)")
    p.add_argument("--no-ceiling", action="store_true", help="skip the grpc.aio ceiling rows (default: measured)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "eddy-bench-triton",
                   help="where the LSTM model is built and cached (shared with bench_triton.py)")
    p.add_argument("--json", type=Path, help="also write every round's figures here (default: none)")
    p.add_argument("--quick", action="store_true", help="1 round of 3 s")
    p.add_argument("--client", help=argparse.SUPPRESS)  # internal: run as the client process against this URL
    p.add_argument("--ceiling-server", nargs=2, type=int, metavar=("F", "O"), help=argparse.SUPPRESS)  # internal
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--check", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        print(json.dumps(asyncio.run(_drive(args.client, args.model, args.sessions, args.samples, args.warmup,
                                            args.duration, args.check, args.window))))
        return 0
    if args.ceiling_server:
        asyncio.run(_ceiling(*args.ceiling_server, args.sessions, args.samples))
        return 0
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3.0, 1.0
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; pick from {', '.join(MODELS)}")
    repo = Path(tempfile.mkdtemp(prefix="eddy-bench-fleet-"))
    servers: list[_Serve] = []
    try:
        if "lstm" in names:
            args.workdir.mkdir(parents=True, exist_ok=True)
            shutil.copytree(_model(args.workdir) / "lstm", repo / "lstm")
        if "sunspots" in names:
            shutil.copytree(ROOT / "models" / "sunspots", repo / "sunspots")
        if "seed" in names:
            copy_as(SEED, repo / "seed" / "1", name="seed")
        load_before = _loadavg()
        eddy = _Serve([sys.executable, "-m", "eddy.cli", "serve", "--models", str(repo), "--port", "0",
                       "--log-level", "WARNING"], repo / "serve.log")
        servers.append(eddy)
        from eddy.runtime import load

        ceilings = {}
        for m in names if not args.no_ceiling else ():
            model = load(repo / m / "1", lazy_sequence=True)
            ceilings[m] = _Serve([sys.executable, __file__, "--ceiling-server", str(model.n_features),
                                  str(model.n_targets), "--sessions", str(args.sessions), "--samples",
                                  str(args.samples)], repo / f"ceiling-{m}.log")
            servers.append(ceilings[m])
        rows: dict[str, list[dict]] = {m: [] for m in names}
        for rnd in range(args.rounds):
            for m in names:
                version = repo / m / "1"
                bare, bare_cpu = _bare(version / "step.onnx", args.sessions, args.duration)
                r = _fleet(eddy, m, version, args)
                r.update(bare=bare, bare_us_per_step=1e6 * bare_cpu, ratio=r["steps_per_s"] / bare, round=rnd)
                if m in ceilings:
                    c = _fleet(ceilings[m], "ceiling", None, args)
                    r.update(ceiling=c["steps_per_s"], of_ceiling=r["steps_per_s"] / c["steps_per_s"],
                             ceiling_server_cores=c["server_cores"], ceiling_us_per_step=c["server_us_per_step"])
                rows[m].append(r)
                print(f"round {rnd + 1}/{args.rounds} {m}: bare {bare:,.0f} steps/s, fleet {r['steps_per_s']:,.0f} "
                      f"({r['ratio']:.2f}x), ceiling {r.get('ceiling', float('nan')):,.0f}; server "
                      f"{r['server_cores']:.2f} cores, client {r['client_cores']:.2f}, other {r['other_cores']:.2f}",
                      file=sys.stderr)
        load_after = _loadavg()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(repo, ignore_errors=True)
    med = {m: {k: statistics.median(r[k] for r in rs) for k in _KEYS if k in rs[0]} for m, rs in rows.items()}
    print(f"fleet: {args.sessions} sessions x {args.samples} sample(s) per message, {args.window} in flight, "
          f"{args.rounds} interleaved round(s) of {args.duration:g} s, medians; load average {load_before} before, "
          f"{load_after} after")
    print("| model | bare onnxruntime, 1 thread | fleet | fleet / bare | grpc.aio ceiling | fleet / ceiling "
          "| p50 per message | server CPU | CPU per step: fleet server / ceiling server / bare call | client CPU "
          "| other load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m, v in med.items():
        ceiling = (f"{v['ceiling']:,.0f} steps/s | {v['of_ceiling']:.2f}x" if "ceiling" in v else "- | -")
        ceiling_cpu = f"{v['ceiling_us_per_step']:.2f}" if "ceiling" in v else "-"
        print(f"| {m} | {v['bare']:,.0f} steps/s | {v['steps_per_s']:,.0f} steps/s | {v['ratio']:.2f}x | {ceiling} "
              f"| {v['p50_ms']:.2f} ms | {v['server_cores']:.2f} cores | {v['server_us_per_step']:.2f} / "
              f"{ceiling_cpu} / {v['bare_us_per_step']:.2f} us | {v['client_cores']:.2f} cores "
              f"| {v['other_cores']:.2f} cores |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rounds": rows,
                                         "medians": med, "load": [load_before, load_after]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
