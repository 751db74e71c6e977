"""What cross-stream batching buys: eddy serve against a bare gRPC echo ceiling.

Not a test (pytest does not collect it). Run from the repository root::

    .venv/bin/python bench/bench_serving.py            # full run, ~4 min on 2 cores (`make bench`)
    .venv/bin/python bench/bench_serving.py --quick    # smoke run, ~45 s

For each configuration -- a bare grpc.aio echo server with eddy's message
shapes (bench/echo_server.py, the transport ceiling), then the seed model
and a larger one (2-layer LSTM of 256 units) with cross-stream batching off
and on -- it starts the server in its own process (the real ``eddy serve``
CLI on 127.0.0.1, port 0, bound port read from its stdout), drives it from
separate load-generator processes and stops it before the next one:

- N concurrent bidi streams (default 1, 16, 256, 1024), spread over a few
  channels; each is closed-loop: send one sample (a ``[1, F]`` raw float32
  tensor), await its prediction, repeat.
- After ``--warmup`` seconds, for ``--duration`` seconds, it records every
  answered message's round-trip latency. steps/s is the median over 0.5 s
  slices of samples answered per second; p50 and p99 latency cover the whole
  window. The whole matrix runs ``--repeat`` times (configurations
  interleaved) and the table shows the median of the repeats: the machines
  are shared and noisy.
- It samples CPU time of the server process, of the load generators and of
  the rest of the machine over the window (1.00 = one core busy), so a
  client-bound row, or one squeezed by other jobs, shows as such; when
  ``eddy serve`` has ``--metrics-port`` it also reads the mean batch size and
  the server's own time per message from its Prometheus endpoint.

Prints a plain-text table with each row's throughput relative to the echo
ceiling at the same stream count, then the ratios docs/benchmarks.md quotes, and
writes everything as JSON (``--json FILE``, default a file in the temp dir).
Models: ``--models DIR`` serves an existing repository holding both models;
by default the committed ``models/sunspots`` (or one trained with
``eddy train --seed 0``) and a 2-layer LSTM(256) trained for one epoch on
synthetic data, both cached in ``$TMPDIR/eddy-bench-models``; nothing is
written into the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ECHO_SERVER = Path(__file__).resolve().parent / "echo_server.py"
CACHE = Path(tempfile.gettempdir()) / "eddy-bench-models"  # trained models, reused across runs
SEED_MODEL = "sunspots"  # the committed default model: SimpleRNN(50)
LARGE_MODEL = "lstm2x256"  # built here if missing
LARGE_TRAIN = ["--synthetic", "--cell", "lstm", "--layers", "2", "--units", "256",
               "--epochs", "1", "--seed", "0", "--quiet"]
SLICE = 0.5  # seconds per throughput slice; steps/s is the median slice
START_TIMEOUT = 60.0  # seconds a server or a load generator gets to come up
MAX_STEPS_PER_STREAM = 2_000_000  # hard bound on any one stream's loop


# --------------------------------------------------------------------------- load generator (child process)

async def _drive(spec: dict) -> dict:
    """Open ``spec['streams']`` streams, wait for the go line on stdin, run closed loops, return raw records."""
    import grpc

    from eddy.v1 import inference_pb2 as pb
    from eddy.v1 import inference_pb2_grpc as pb_grpc

    n_streams, n_channels = spec["streams"], max(1, min(spec["channels"], spec["streams"]))
    channels = [grpc.aio.insecure_channel(spec["address"], options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(n_channels)]
    stubs = [pb_grpc.InferenceStub(ch) for ch in channels]
    gate = asyncio.Semaphore(64)  # opens in flight at once
    errors: list[str] = []

    async def open_stream(i: int):
        async with gate:
            call = stubs[i % n_channels].Stream()
            await call.write(pb.StreamRequest(open=pb.OpenStream(model=spec["model"])))
            opened = await call.read()
            if opened is grpc.aio.EOF or opened.WhichOneof("kind") != "opened":
                raise RuntimeError(f"stream {i}: expected `opened`, got {opened}")
            n_features = len(opened.opened.features)
            value = 42.0 + i % 100  # any finite raw value; the cost does not depend on it
            x = struct.pack(f"<{n_features}f", *([value] * n_features))  # [1, F] raw float32
            request = pb.StreamRequest(samples=pb.Tensor(shape=[1, n_features], raw=x))
            return call, request, len(opened.opened.targets)

    opened = await asyncio.wait_for(asyncio.gather(*(open_stream(i) for i in range(n_streams))), START_TIMEOUT)
    print(f"ready {len(opened)}", flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    t_start = float(line.split()[1])  # time.monotonic() of the coordinator: system-wide on Linux
    t_meas = t_start + spec["warmup"]
    t_end = t_meas + spec["duration"]
    recv_t: list[float] = []  # receive time of each answered message in the window
    lat: list[float] = []  # its round-trip latency, seconds
    async def loop(i: int, call, request, n_outputs: int) -> int:
        await asyncio.sleep(max(0.0, t_start - time.monotonic()))
        steps = 0
        try:
            while steps < MAX_STEPS_PER_STREAM:
                t0 = time.monotonic()
                if t0 >= t_end:
                    break
                await call.write(request)
                response = await call.read()
                t1 = time.monotonic()
                if response is grpc.aio.EOF or response.WhichOneof("kind") != "predictions":
                    raise RuntimeError(f"stream {i}: expected `predictions`, got {response}")
                if steps == 0 and list(response.predictions.outputs.shape) != [1, n_outputs]:
                    raise RuntimeError(f"stream {i}: outputs shape {list(response.predictions.outputs.shape)}")
                steps += 1
                if t_meas <= t1 < t_end:
                    recv_t.append(t1)
                    lat.append(t1 - t0)
            await call.done_writing()
            while await call.read() is not grpc.aio.EOF:
                pass
        except (grpc.RpcError, RuntimeError) as e:
            errors.append(f"stream {i}: {e}"[:300])
            call.cancel()
        return steps

    total_time = spec["warmup"] + spec["duration"] + START_TIMEOUT
    steps = await asyncio.wait_for(asyncio.gather(*(loop(i, *o) for i, o in enumerate(opened))), total_time)
    for ch in channels:
        await ch.close()
    return {"recv_t": recv_t, "lat": lat, "steps_total": sum(steps), "errors": errors[:20],
            "n_errors": len(errors), "channels": n_channels}


def _worker_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    result = asyncio.run(_drive(spec))
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------- servers

class _Process:
    """A server subprocess that prints its bound address on stdout; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, argv: list[str], pattern: str, log: Path, metrics: bool = False) -> None:
        self.argv, self.log = argv, log
        self.metrics_url: str | None = None
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._log_file, text=True)
        line = _readline(self.proc, START_TIMEOUT)
        m = re.search(pattern, line or "")
        if not m:
            self.stop()
            raise RuntimeError(f"{' '.join(argv)} did not report its address (got {line!r}); see {log}")
        self.address = m.group(1)
        if metrics:  # `eddy: metrics on http://HOST:PORT/metrics` follows the address line
            m = re.search(r"metrics on (http://\S+)", _readline(self.proc, START_TIMEOUT) or "")
            self.metrics_url = m.group(1) if m else None
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def scrape(self) -> dict[str, float]:
        """Batch-size and per-message server-time sums/counts from the Prometheus endpoint ({} if none)."""
        if self.metrics_url is None:
            return {}
        import urllib.request
        try:
            text = urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()
        except OSError:
            return {}
        wanted = {"eddy_batch_size_sum": "batch_sum", "eddy_batch_size_count": "batch_count",
                  'eddy_request_latency_seconds_sum{method="Stream"}': "stream_s_sum",
                  'eddy_request_latency_seconds_count{method="Stream"}': "stream_s_count"}
        out = {}
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name in wanted:
                out[wanted[name]] = float(value)
        return out

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> tuple[float, float]:
    """Machine-wide (busy, steal) CPU seconds since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _readline(proc: subprocess.Popen, timeout: float) -> str | None:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else None


@dataclass
class Config:
    name: str  # table label
    kind: str  # "echo" or "eddy"
    model: str = ""  # served model name (eddy only)
    batching: str = "n/a"  # "on", "off", or "n/a" (echo, or a server without a switch)
    serve_args: list[str] = field(default_factory=list)


def _serve_help() -> str:
    out = subprocess.run([sys.executable, "-m", "eddy.cli", "serve", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    return out.stdout


def _batching_args(help_text: str) -> dict[str, list[str]] | None:
    """``{"on": [...], "off": [...]}`` serve flags for this server, or None if it has no switch."""
    if re.search(r"(?<![\w-])--batching\b", help_text):
        return {"on": ["--batching", "on"], "off": ["--batching", "off"]}
    if re.search(r"--no-batching\b", help_text):
        return {"on": [], "off": ["--no-batching"]}
    return None


def _start(config: Config, repo: Path, n_outputs: int, logdir: Path, metrics: bool) -> _Process:
    log = logdir / f"{re.sub(r'[^a-z0-9]+', '-', config.name.lower())}.log"
    if config.kind == "echo":
        argv = [sys.executable, str(ECHO_SERVER), "--port", "0", "--outputs", str(n_outputs)]
        return _Process(argv, r"serving on (\S+)\s*$", log)
    argv = [sys.executable, "-m", "eddy.cli", "serve", "--models", str(repo), "--host", "127.0.0.1",
            "--port", "0", "--log-level", "WARNING", *config.serve_args]
    if metrics:  # batch sizes and server time per message; the series are kept whether or not it is served
        argv += ["--metrics-port", "0"]
    return _Process(argv, r"serving \d+ model\(s\) on (\S+)\s*$", log, metrics)


# --------------------------------------------------------------------------- one measurement

def _measure(server: _Process, config: Config, streams: int, args: argparse.Namespace, tmp: Path) -> dict:
    per_client = [streams // args.clients + (1 if i < streams % args.clients else 0) for i in range(args.clients)]
    per_client = [n for n in per_client if n > 0]
    workers = []
    for i, n in enumerate(per_client):
        spec = {"address": server.address, "model": config.model or "echo", "streams": n,
                "channels": args.channels, "warmup": args.warmup, "duration": args.duration,
                "out": str(tmp / f"worker-{i}.json")}
        p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(spec)],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        workers.append((p, spec))
    try:
        for p, _ in workers:
            line = _readline(p, START_TIMEOUT)
            if not line or not line.startswith("ready"):
                raise RuntimeError(f"load generator did not open its streams (got {line!r}); server log tail:\n"
                                   f"{server.log_tail()}")
        t_start = time.monotonic() + 0.2
        for p, _ in workers:
            p.stdin.write(f"go {t_start!r}\n")
            p.stdin.flush()
        t_meas, t_end = t_start + args.warmup, t_start + args.warmup + args.duration
        pids = [p.pid for p, _ in workers]
        time.sleep(max(0.0, t_meas - time.monotonic()))
        k0 = server.scrape()
        s0, c0, m0, w0 = server.cpu_seconds(), [_cpu_seconds(p) for p in pids], _machine_cpu(), time.monotonic()
        load0 = os.getloadavg()[0]
        time.sleep(max(0.0, t_end - time.monotonic()))
        s1, c1, m1, w1 = server.cpu_seconds(), [_cpu_seconds(p) for p in pids], _machine_cpu(), time.monotonic()
        k1 = server.scrape()
        for p, _ in workers:
            if p.wait(args.warmup + args.duration + START_TIMEOUT) != 0:
                raise RuntimeError(f"load generator exited with status {p.returncode}; server log tail:\n"
                                   f"{server.log_tail()}")
    finally:
        for p, _ in workers:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = [json.loads(Path(spec["out"]).read_text()) for _, spec in workers]

    recv = sorted(t for r in results for t in r["recv_t"])
    lat = sorted(x for r in results for x in r["lat"])
    n_slices = max(1, round(args.duration / SLICE))
    width = args.duration / n_slices
    counts = [0] * n_slices
    for t in recv:
        counts[min(n_slices - 1, int((t - t_meas) / width))] += 1
    rates = [c / width for c in counts]
    errors = [e for r in results for e in r["errors"]]
    wall = w1 - w0
    server_cpu = (s1 - s0) / wall
    client_cpu = [(b - a) / wall for a, b in zip(c0, c1)]
    busy, steal = (m1[0] - m0[0]) / wall, (m1[1] - m0[1]) / wall

    def per(key: str, count: str, scale: float = 1.0) -> float:
        n = k1.get(count, 0.0) - k0.get(count, 0.0)
        return scale * (k1.get(key, 0.0) - k0.get(key, 0.0)) / n if n > 0 else float("nan")
    return {
        "config": config.name, "kind": config.kind, "model": config.model, "batching": config.batching,
        "streams": streams, "clients": len(workers), "channels": sum(r["channels"] for r in results),
        "steps_per_s": statistics.median(rates), "steps_per_s_mean": len(recv) / args.duration,
        "slice_rates": rates, "answered": len(recv),
        "p50_ms": 1e3 * _percentile(lat, 50), "p99_ms": 1e3 * _percentile(lat, 99),
        "mean_ms": 1e3 * statistics.fmean(lat) if lat else float("nan"),
        "server_cpu": server_cpu, "client_cpu": client_cpu,
        "other_cpu": max(0.0, busy - server_cpu - sum(client_cpu)),  # everything else on the machine
        "steal_cpu": steal, "loadavg_1m": load0,
        "server_us_per_step": 1e6 * server_cpu / (len(recv) / args.duration) if recv else float("nan"),
        "mean_batch": per("batch_sum", "batch_count"),  # sessions per onnxruntime call (server metrics)
        "server_ms": per("stream_s_sum", "stream_s_count", 1e3),  # server time to answer one message
        "n_errors": sum(r["n_errors"] for r in results), "errors": errors[:5],
    }


def _combine(runs: list[dict], configs: list[Config], stream_counts: list[int]) -> list[dict]:
    """One row per (configuration, streams): the median of its repeats for every figure."""
    rows = []
    for c in configs:
        for n in stream_counts:
            reps = [r for r in runs if r["config"] == c.name and r["streams"] == n]
            if not reps:
                continue
            row = dict(reps[0])
            for key in ("steps_per_s", "steps_per_s_mean", "p50_ms", "p99_ms", "mean_ms", "server_cpu",
                        "other_cpu", "steal_cpu", "loadavg_1m", "mean_batch", "server_ms", "server_us_per_step"):
                row[key] = statistics.median(r[key] for r in reps)
            row["client_cpu"] = [statistics.median(r["client_cpu"][i] for r in reps)
                                 for i in range(len(reps[0]["client_cpu"]))]
            row["steps_per_s_repeats"] = [r["steps_per_s"] for r in reps]
            row["n_errors"] = sum(r["n_errors"] for r in reps)
            row["answered"] = sum(r["answered"] for r in reps)
            for key in ("slice_rates", "repeat"):
                row.pop(key, None)
            rows.append(row)
    return rows


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


# --------------------------------------------------------------------------- models

def _latest(model_dir: Path) -> Path | None:
    from eddy.runtime.core.errors import NotFound
    from eddy.runtime.core.layout import resolve_version_dir  # the one version rule

    try:
        return resolve_version_dir(model_dir)
    except NotFound:
        return None


def _train(out: Path, extra: list[str]) -> None:
    print(f"bench: training {out.name} into {out} (once; cached) ...", flush=True)
    subprocess.run([sys.executable, "-m", "eddy.cli", "train", "--out", str(out), *extra],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=900)


def _prepare_models(args: argparse.Namespace, tmp: Path) -> Path:
    """A repository holding the seed and the large model; trains what is missing into the cache."""
    if args.models is not None:
        for name in (args.seed_model, args.large_model):
            if _latest(args.models / name) is None:
                sys.exit(f"bench: no model {name!r} under {args.models}")
        return args.models
    repo = tmp / "models"
    repo.mkdir()
    seed = ROOT / "models" / SEED_MODEL
    if _latest(seed) is None:
        seed = CACHE / SEED_MODEL
        if _latest(seed) is None:
            _train(seed, ["--seed", "0", "--quiet"])
    large = CACHE / LARGE_MODEL
    if _latest(large) is None:
        _train(large, LARGE_TRAIN)
    # Copies, not symlinks: the server refuses version directories that resolve outside its repository.
    shutil.copytree(seed.resolve(), repo / args.seed_model)
    shutil.copytree(large.resolve(), repo / args.large_model)
    return repo


def _describe(repo: Path, name: str) -> dict:
    version = _latest(repo / name)
    m = json.loads((version / "manifest.json").read_text())
    return {"name": name, "version": int(version.name), "path": str(version.resolve()),
            "cell": m.get("cell"), "layers": m.get("layers"), "units": m.get("units"),
            "features": len(m.get("features", [])), "outputs": len(m.get("targets", []))}


# --------------------------------------------------------------------------- report

def _machine() -> dict:
    def version(mod: str) -> str:
        try:
            from importlib.metadata import version as v
            return v(mod)
        except Exception:
            return "?"
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "grpcio": version("grpcio"), "onnxruntime": version("onnxruntime"), "protobuf": version("protobuf"),
            "commit": commit.strip(), "platform": platform.platform()}


def _table(rows: list[dict]) -> str:
    echo = {r["streams"]: r["steps_per_s"] for r in rows if r["kind"] == "echo"}
    head = (f"{'configuration':<18} {'streams':>7} {'steps/s':>9} {'x echo':>7} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'batch':>6} {'srv ms':>7} {'us/step':>7} {'server':>7} {'client':>10} {'other':>6}")
    lines = [head, "-" * len(head)]
    last = None
    for r in rows:
        if last is not None and r["config"] != last:
            lines.append("")
        last = r["config"]
        ratio = r["steps_per_s"] / echo[r["streams"]] if echo.get(r["streams"]) else float("nan")
        cli = "+".join(f"{c:.2f}" for c in r["client_cpu"]) + ("*" if any(c >= 0.9 for c in r["client_cpu"]) else " ")
        err = f"  ({r['n_errors']} stream errors)" if r["n_errors"] else ""
        lines.append(f"{r['config']:<18} {r['streams']:>7} {r['steps_per_s']:>9,.0f} {ratio:>7.2f} "
                     f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {_num(r['mean_batch'], 1):>6} "
                     f"{_num(r['server_ms'], 2):>7} {_num(r['server_us_per_step'], 0):>7} "
                     f"{r['server_cpu']:>7.2f} {cli:>10} "
                     f"{r['other_cpu']:>6.2f}{err}")
    return "\n".join(lines)


_LEGEND = """
steps/s: samples answered per second, median of 0.5 s slices (of repeats: median); x echo: over the
  echo server's steps/s at the same stream count; p50/p99: round-trip latency of one message.
batch: mean sessions per onnxruntime call; srv ms: mean server time to answer one message (both from
  eddy's Prometheus metrics); us/step: server CPU time per answered sample.
server/client/other: CPU in cores over the window (1.00 = one core busy; other = everything else on
  the machine); * a load generator at >= 0.90 of a core, i.e. likely client-bound."""


def _num(x: float, digits: int) -> str:
    return "-" if x != x else f"{x:.{digits}f}"  # NaN: not measured


def _summary(rows: list[dict], configs: list[Config]) -> list[str]:
    by = {(r["config"], r["streams"]): r["steps_per_s"] for r in rows}
    streams = sorted({r["streams"] for r in rows})
    out = []
    for c in configs:
        if c.kind == "echo":
            continue
        parts = [f"{n}: {by[(c.name, n)] / by[('echo', n)]:.2f}" for n in streams
                 if by.get(("echo", n)) and (c.name, n) in by]
        out.append(f"served / echo, {c.name}: " + ", ".join(parts))
    for model in sorted({c.model for c in configs if c.kind == "eddy"}):
        on = next((c.name for c in configs if c.model == model and c.batching == "on"), None)
        off = next((c.name for c in configs if c.model == model and c.batching == "off"), None)
        if on and off:
            parts = [f"{n}: {by[(on, n)] / by[(off, n)]:.2f}x" for n in streams if (on, n) in by and (off, n) in by]
            out.append(f"batching gain (on / off), {model}: " + ", ".join(parts))
    return out


# --------------------------------------------------------------------------- main

def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Loopback only; every server and load generator is stopped at the end.")
    p.add_argument("--streams", default=None,
                   help="concurrent stream counts (default: 1,16,256,1024; with --quick 1,16,256)")
    p.add_argument("--duration", type=float, default=1.5, help="measured seconds per row (default: 1.5)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each row (default: 1)")
    p.add_argument("--repeat", type=int, default=3,
                   help="run the whole matrix this many times; the table shows medians (default: 3)")
    p.add_argument("--clients", type=int, default=1, help="load-generator processes (default: 1)")
    p.add_argument("--channels", type=int, default=8,
                   help="gRPC channels (TCP connections) per load generator; streams are spread over them (default: 8)")
    p.add_argument("--models", type=Path, default=None,
                   help=f"model repository holding the seed and the large model (default: models/{SEED_MODEL} and a "
                        f"LSTM 2x256 trained once into {CACHE})")
    p.add_argument("--seed-model", default=SEED_MODEL, help=f"seed model name (default: {SEED_MODEL})")
    p.add_argument("--large-model", default=LARGE_MODEL, help=f"large model name (default: {LARGE_MODEL})")
    p.add_argument("--only", default="", help="comma-separated configurations to run: echo,seed,large "
                                              "(default: all)")
    p.add_argument("--max-batch", type=int, default=None, help="passed to `eddy serve` with batching on (default: "
                                                              "the server's)")
    p.add_argument("--max-delay-us", type=int, default=None, help="passed to `eddy serve` with batching on "
                                                                  "(default: the server's)")
    p.add_argument("--json", type=Path, default=None, help="write results here (default: a file in the temp dir)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 s rows, 0.5 s warm-up, streams 1,16,256 "
                                                        "unless --streams is given")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.repeat = 1.0, 0.5, 1
    if args.streams is None:
        args.streams = "1,16,256" if args.quick else "1,16,256,1024"
    try:
        args.stream_counts = [int(s) for s in args.streams.split(",") if s.strip()]
    except ValueError:
        p.error(f"--streams: not a list of integers: {args.streams!r}")
    if not args.stream_counts or min(args.stream_counts) < 1 or max(args.stream_counts) > 4096:
        p.error("--streams: counts must be between 1 and 4096")
    if not (0.5 <= args.duration <= 60 and 0 <= args.warmup <= 30 and 1 <= args.clients <= 8
            and 1 <= args.repeat <= 10):
        p.error("--duration 0.5..60, --warmup 0..30, --clients 1..8, --repeat 1..10")
    return args


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--_worker":
        return _worker_main(sys.argv[2])
    args = _parse(argv)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="eddy-bench-"))
    try:
        repo = _prepare_models(args, tmp)
        models = {"seed": _describe(repo, args.seed_model), "large": _describe(repo, args.large_model)}
        n_outputs = models["seed"]["outputs"]
        help_text = _serve_help()
        switch = _batching_args(help_text)
        tuning = []
        for flag, value in (("--max-batch", args.max_batch), ("--max-delay-us", args.max_delay_us)):
            if value is not None:
                if flag not in help_text:
                    sys.exit(f"bench: this `eddy serve` has no {flag}")
                tuning += [flag, str(value)]
        only = {s.strip() for s in args.only.split(",") if s.strip()} or {"echo", "seed", "large"}
        configs = [Config("echo", "echo")] if "echo" in only else []
        for key in ("seed", "large"):
            if key not in only:
                continue
            m = models[key]
            if switch is None:
                configs.append(Config(f"{key} (as served)", "eddy", m["name"]))
            else:
                configs.append(Config(f"{key}, batching off", "eddy", m["name"], "off", switch["off"]))
                configs.append(Config(f"{key}, batching on", "eddy", m["name"], "on", switch["on"] + tuning))
        machine = _machine()
        print(f"bench: {machine['cores']} cores ({machine['cpu'] or 'unknown CPU'}), Python {machine['python']}, "
              f"grpcio {machine['grpcio']}, onnxruntime {machine['onnxruntime']}, commit {machine['commit']}")
        print(f"bench: server, and {args.clients} load-generator process(es) x {args.channels} channel(s), "
              f"all on these {machine['cores']} cores over 127.0.0.1; rows: {args.warmup:g} s warm-up + "
              f"{args.duration:g} s measured")
        for key, m in models.items():
            print(f"bench: {key} model = {m['name']} v{m['version']}: {m['cell']}, {m['layers']} layer(s) x "
                  f"{m['units']} units, {m['features']} feature(s) -> {m['outputs']} output(s)")
        if switch is None:
            print("bench: this `eddy serve` has no batching switch; each model runs once, as served")
        runs = []  # every measurement, all repeats
        for rep in range(args.repeat):
            for config in configs:
                server = _start(config, repo, n_outputs, tmp, "--metrics-port" in help_text)
                try:
                    for n in args.stream_counts:
                        row = _measure(server, config, n, args, tmp)
                        row["repeat"] = rep
                        runs.append(row)
                        print(f"  {config.name:<18} {n:>5} streams: {row['steps_per_s']:>8,.0f} steps/s, "
                              f"p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, CPU server "
                              f"{row['server_cpu']:.2f} client {'+'.join(f'{c:.2f}' for c in row['client_cpu'])} "
                              f"other {row['other_cpu']:.2f}"
                              + (f", {row['n_errors']} stream errors: {row['errors'][:1]}" if row["n_errors"] else ""),
                              flush=True)
                        if server.proc.poll() is not None:
                            raise RuntimeError(f"{config.name}: server exited ({server.proc.returncode}); "
                                               f"log tail:\n{server.log_tail()}")
                finally:
                    server.stop()
        rows = _combine(runs, configs, args.stream_counts)
        table = _table(rows)
        summary = _summary(rows, configs)
        print()
        print(table)
        print(_LEGEND)
        for line in summary:
            print(line)
        result = {"machine": machine, "runs": runs, "models": models, "batching_switch": switch, "serve_tuning": tuning,
                  "settings": {"streams": args.stream_counts, "duration_s": args.duration, "warmup_s": args.warmup,
                               "clients": args.clients, "channels_per_client": args.channels, "slice_s": SLICE,
                               "repeat": args.repeat},
                  "configs": [asdict(c) for c in configs], "rows": rows, "table": table, "summary": summary,
                  "elapsed_s": time.monotonic() - started}
        out = args.json or Path(tempfile.gettempdir()) / f"eddy-bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=1))
        print(f"\nbench: wrote {out} ({time.monotonic() - started:.0f} s)")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
