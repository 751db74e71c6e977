"""eddy against a real NVIDIA Triton 2.51 on the same LSTM step graph, both driven by tritonclient.

Not a test (pytest does not collect it). Run from the repository root::

    .venv/bin/python bench/bench_triton.py            # `make bench-triton`, ~5 min on 2 cores
    .venv/bin/python bench/bench_triton.py --quick    # smoke run, ~2.5 min
    .venv/bin/python bench/bench_triton.py --quick --servers eddy,ceiling   # without Triton
    .venv/bin/python bench/bench_triton.py --rounds 3  # every server 3 times, interleaved: medians

What it sets up (cached in ``--workdir``, default ``$TMPDIR/eddy-bench-triton``;
nothing is written into the repository):

- the model: a seeded, untrained Keras ``LSTM(256)`` over 64 features with a
  ``Dense(1)`` head, exported by ``eddy export --norm-identity`` (raw values in,
  raw out) to ``models/lstm/1`` (step.onnx is what both servers run);
- Triton: ``tritonserver`` 2.51 and its python backend from the
  ``nvidia-pytriton==0.7.0`` wheel (``pip download``, unpacked; see
  ``shared/anchors/triton.md``), a venv with numpy < 2 and onnxruntime for the
  backend, and a model repository whose python model (``bench/triton_model.py``)
  runs the same step.onnx with onnxruntime (1 thread, like eddy) on each batch the
  sequence batcher (``oldest``, ``--triton-delay-us``) forms, h/c kept per
  correlation id. The backend stub starts in isolated mode with the system
  interpreter's site-packages, which may hold numpy 2 (its pybind11 then writes
  empty outputs): the server runs from a directory holding links to the backend
  venv's numpy, which the stub's ``''`` path entry finds first;
- the client: ``tritonclient[grpc]`` 2.73 in ``.venv-compat`` (tests/_compat_venv.py).

Then, for each server in turn (``--servers``: eddy serve with its defaults,
the ceiling, then Triton), one process each on 127.0.0.1: ``bench/oip_load.py`` drives it from ``--client-procs``
processes, ``N`` concurrent sequences (one thread, one client and one
sequence id each), closed loop, one step ``x[1, 64]`` per request, with unary
``infer`` (sequence parameters), with ``start_stream`` + ``async_stream_infer``
(a stream per sequence), and ``mux``: one client process whose single stream
carries every sequence. After ``--warmup`` s it counts ``--duration`` s: steps/s,
p50 and p99 round-trip latency; CPU of the server (its process tree, i.e.
Triton's backend stub too), of the clients and of everything else on the
machine (other jobs: the machines are shared). Before measuring it checks
that both servers give sequence 0's first 32 outputs identical to eddy's
local ``Stream``. Prints a table and the eddy/Triton ratios, and writes JSON
(``--json``).

The ceiling (``bench/oip_ceiling.py``, not part of eddy) is a minimal grpc.aio
server answering every ModelInfer / ModelStreamInfer request with a constant
``y`` of the right shape: requests parsed, answers pre-serialized, nothing
computed. Driven by the same load generator on the same machine, its steps/s
bound what any Python grpc.aio server can answer here; the report prints each
server's steps/s as a fraction of it (Triton's C++ front end is not bound by it).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tritonclient venv builder, shared with the tests
from _compat_venv import compat_python  # noqa: E402

PYTRITON = "nvidia-pytriton==0.7.0"  # bundles tritonserver 2.51.0 and the python backend
FEATURES, UNITS = 64, 256
LOAD = ROOT / "bench" / "oip_load.py"
CHECK_STEPS = 32


# --------------------------------------------------------------------------- setup

def _run(argv: list[str], **kw) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"bench_triton: {' '.join(map(str, argv))} failed:\n{r.stderr[-3000:]}")


def _model(work: Path) -> Path:
    """models/lstm/1: Keras LSTM(256) over 64 features + Dense(1), seeded, exported with --norm-identity."""
    repo = work / "models"
    if (repo / "lstm" / "1" / "step.onnx").exists():
        return repo
    keras_file = work / "lstm.keras"
    code = ("import os, sys; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; import keras; keras.utils.set_random_seed(0);"
            f"keras.Sequential([keras.Input((10, {FEATURES})), keras.layers.LSTM({UNITS}), keras.layers.Dense(1)])"
            ".save(sys.argv[1])")
    _run([sys.executable, "-c", code, str(keras_file)])
    shutil.rmtree(repo / "lstm", ignore_errors=True)
    _run([sys.executable, "-m", "eddy.cli", "export", str(keras_file), "--out", str(repo / "lstm"),
          "--norm-identity"], cwd=ROOT)
    return repo


def _triton(work: Path) -> Path:
    """The unpacked tritonserver, its python backend with stub, and a backend venv; returns the tritonserver dir."""
    home = work / "triton"
    server = home / "pytriton" / "tritonserver"
    if (server / "bin" / "tritonserver").exists() and (home / "backend-venv" / ".ready").exists():
        return server
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PYTRITON, "-d", str(home)])
    wheel = next(home.glob("nvidia_pytriton-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(home, [n for n in z.namelist()
                            if n.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/"))])
    wheel.unlink()
    (server / "bin" / "tritonserver").chmod(0o755)
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server / "backends" / "python" / "triton_python_backend_stub"
    shutil.copy(server / "python_backend_stubs" / py / "triton_python_backend_stub", stub)
    stub.chmod(0o755)
    venv_dir = home / "backend-venv"
    _run([sys.executable, "-m", "venv", str(venv_dir)])
    _run([str(venv_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "numpy<2", "onnxruntime"])
    site = next((venv_dir / "lib").glob("python3*/site-packages"))
    cwd = home / "stub-cwd"  # the stub's '' path entry: numpy < 2 before the system interpreter's
    cwd.mkdir()
    for name in ("numpy", "numpy.libs"):
        if (site / name).exists():
            (cwd / name).symlink_to(site / name)
    (venv_dir / ".ready").write_text(str(site))
    return server


def _triton_repo(work: Path, models: Path, delay_us: int) -> Path:
    site = (work / "triton" / "backend-venv" / ".ready").read_text()
    repo = work / f"triton-repo-{delay_us}"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "lstm" / "1").mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "triton_model.py", repo / "lstm" / "1" / "model.py")
    (repo / "lstm" / "config.pbtxt").write_text(f"""name: "lstm"
backend: "python"
max_batch_size: 64
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ {FEATURES} ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ 1 ] }} ]
sequence_batching {{
  max_sequence_idle_microseconds: 60000000
  oldest {{ max_candidate_sequences: 1024 max_queue_delay_microseconds: {delay_us} }}
  control_input [
    {{ name: "START" control [ {{ kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "END" control [ {{ kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "CORRID" control [ {{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }} ] }}
  ]
}}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters [
  {{ key: "site_packages" value: {{ string_value: "{site}" }} }},
  {{ key: "step_onnx" value: {{ string_value: "{models / 'lstm' / '1' / 'step.onnx'}" }} }}
]
""")
    return repo


# --------------------------------------------------------------------------- servers

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """A server process started with setsid (its own process group), stopped by its pid's group."""

    def __init__(self, name: str, argv: list[str], url: str, log: Path, *, cwd: Path, env: dict | None = None,
                 client: Path, metrics_url: str, counters: tuple[str, str]) -> None:
        self.name, self.url, self.log = name, url, log
        self.metrics_url, self.counters = metrics_url, counters  # Prometheus: (steps, model calls) counters
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        r = subprocess.run([str(client), str(LOAD), "--url", url, "--wait-ready", "120"], capture_output=True,
                           text=True)
        if r.returncode != 0 or self.proc.poll() is not None:
            self.stop()
            raise SystemExit(f"bench_triton: {name} did not become ready; see {log}\n{r.stderr[-500:]}")

    def cpu_seconds(self) -> float:
        """utime + stime of the server and its direct children (Triton's backend stub), seconds."""
        pids = [self.proc.pid] + _children(self.proc.pid)
        return sum(_cpu_seconds(p) for p in pids)

    def batch_counts(self) -> tuple[float, float]:
        """(steps run, model calls) so far, from the server's own Prometheus metrics (none for the ceiling)."""
        import urllib.request
        if not self.metrics_url:
            return 0.0, 0.0
        text = urllib.request.urlopen(self.metrics_url, timeout=10).read().decode()
        found = [0.0, 0.0]
        for line in text.splitlines():
            for k, prefix in enumerate(self.counters):
                if line.startswith(prefix):
                    found[k] += float(line.rsplit(" ", 1)[1])
        return found[0], found[1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = v[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _eddy(work: Path, models: Path, client: Path) -> _Server:
    port, metrics = _free_port(), _free_port()
    argv = [sys.executable, "-m", "eddy.cli", "serve", "--models", str(models), "--port", str(port),
            "--metrics-port", str(metrics)]
    return _Server("eddy", argv, f"127.0.0.1:{port}", work / "eddy.log", cwd=ROOT, client=client,
                   metrics_url=f"http://127.0.0.1:{metrics}/metrics",
                   counters=("eddy_batch_size_sum", "eddy_batch_size_count"))


def _ceiling(work: Path, client: Path) -> _Server:
    """bench/oip_ceiling.py: grpc.aio answering constants, the bound for any Python grpc.aio server here."""
    port = _free_port()
    argv = [sys.executable, str(ROOT / "bench" / "oip_ceiling.py"), "--port", str(port)]
    return _Server("ceiling", argv, f"127.0.0.1:{port}", work / "ceiling.log", cwd=ROOT, client=client,
                   metrics_url="", counters=("", ""))


def _tritonserver(work: Path, server_dir: Path, repo: Path, client: Path, delay_us: int) -> _Server:
    port, metrics = _free_port(), _free_port()
    libdir = Path(sys.base_prefix) / "lib"  # libpython3.X.so for the stub
    env = {**os.environ, "LD_LIBRARY_PATH": f"{libdir}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    cache = work / "triton-cache"
    cache.mkdir(exist_ok=True)
    argv = [str(server_dir / "bin" / "tritonserver"), f"--model-repository={repo}",
            f"--backend-directory={server_dir / 'backends'}", f"--cache-directory={cache}",
            "--allow-http=false", "--grpc-address=127.0.0.1", f"--grpc-port={port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={metrics}", "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=false", "--pinned-memory-pool-byte-size=0"]
    return _Server(f"triton (delay {delay_us} us)", argv, f"127.0.0.1:{port}", work / f"triton-{delay_us}.log",
                   cwd=work / "triton" / "stub-cwd", env=env, client=client,
                   metrics_url=f"http://127.0.0.1:{metrics}/metrics",
                   counters=("nv_inference_count{", "nv_inference_exec_count{"))


# --------------------------------------------------------------------------- measuring

def _load(client: Path, server: _Server, mode: str, sequences: int, args: argparse.Namespace,
          record: int = 0) -> dict:
    """Run the load from ``--client-procs`` processes at once; merged figures and CPU shares."""
    procs_n = 1 if mode == "mux" else max(1, min(args.client_procs, sequences))  # mux: one stream for all
    per = [sequences // procs_n + (1 if k < sequences % procs_n else 0) for k in range(procs_n)]
    start_at = time.time() + 1.0
    cmds, first = [], 0
    id_base = int(time.time() * 1000) % 1_000_000_000  # fresh sequence ids for every run
    for n in per:
        cmds.append([str(client), str(LOAD), "--url", server.url, "--mode", mode, "--sequences", str(n),
                     "--first", str(first), "--id-base", str(id_base), "--features", str(FEATURES),
                     "--warmup", str(args.warmup), "--duration", str(args.duration), "--start-at", str(start_at),
                     "--record", str(record if first == 0 else 0)])
        first += n
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    time.sleep(max(0.0, start_at + args.warmup - time.time()))
    s0, m0, b0 = server.cpu_seconds(), _machine_busy(), server.batch_counts()
    time.sleep(args.duration)
    s1, m1, b1 = server.cpu_seconds(), _machine_busy(), server.batch_counts()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=args.warmup + args.duration + 120)
        if p.returncode != 0:
            raise SystemExit(f"bench_triton: load against {server.name} failed:\n{err[-2000:]}")
        results.append(json.loads(out))
    lat = sorted(v for r in results for v in r["latencies_ms"])
    client_cores = sum(r["client_cpu_s"] for r in results) / (args.warmup + args.duration)
    server_cores = (s1 - s0) / args.duration
    return {"steps_per_s": len(lat) / args.duration, "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
            "server_cores": server_cores, "client_cores": client_cores,
            "mean_batch": (b1[0] - b0[0]) / (b1[1] - b0[1]) if b1[1] > b0[1] else float("nan"),
            "other_cores": max(0.0, (m1 - m0) / args.duration - server_cores - client_cores),
            "recorded": next((r["recorded"] for r in results if r["recorded"]), [])}


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def _check(recorded: list[str], models: Path) -> bool:
    """Sequence 0's first outputs equal eddy's local Stream fed the same steps, bit for bit."""
    import eddy.runtime as runtime
    xs = np.random.default_rng(0).standard_normal((256, 1, FEATURES)).astype(np.float32)  # oip_load's sequence 0
    stream = runtime.load(models / "lstm").stream()
    want = [stream.push(x) for x in xs[:len(recorded)]]
    got = [np.frombuffer(base64.b64decode(r), "<f4").reshape(1, 1) for r in recorded]
    return len(got) > 0 and all(np.array_equal(a, b) for a, b in zip(got, want))


# --------------------------------------------------------------------------- report

def _table(rows: list[dict]) -> str:
    head = (f"{'server':<22}{'mode':<8}{'seqs':>5}{'steps/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'batch':>7}"
            f"{'server':>8}{'client':>8}{'other':>7}  exact")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['server']:<22}{r['mode']:<8}{r['sequences']:>5}{r['steps_per_s']:>10,.0f}"
                     f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['mean_batch']:>7.1f}"
                     f"{r['server_cores']:>8.2f}{r['client_cores']:>8.2f}"
                     f"{r['other_cores']:>7.2f}  {r.get('exact', '-')}")
    return "\n".join(lines)


def _ratios(rows: list[dict], triton_name: str) -> list[str]:
    out = []
    eddy = {(r["mode"], r["sequences"]): r for r in rows if r["server"] == "eddy"}
    for r in rows:
        if r["server"] != triton_name:
            continue
        e = eddy.get((r["mode"], r["sequences"]))
        if e:
            out.append(f"{r['mode']:<7} {r['sequences']:>3} seqs: eddy/{triton_name} steps/s "
                       f"{e['steps_per_s'] / r['steps_per_s']:.2f}x, p50 {e['p50_ms'] / r['p50_ms']:.2f}x, "
                       f"p99 {e['p99_ms'] / r['p99_ms']:.2f}x")
    return out


def _medians(rows: list[dict]) -> list[dict]:
    """One row per (server, mode, sequences): the median of each figure over the rounds; exact only if every
    round was."""
    import statistics
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["server"], r["mode"], r["sequences"]), []).append(r)
    out = []
    for (server, mode, n), rs in groups.items():
        m = {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], float)}
        exacts = {r["exact"] for r in rs}
        out.append({**m, "server": server, "mode": mode, "sequences": n, "rounds": len(rs),
                    "exact": exacts.pop() if len(exacts) == 1 else "NO"})
    return out


def _ceiling_fractions(rows: list[dict]) -> list[str]:
    """Each server's steps/s as a fraction of the ceiling's, same mode and sequences."""
    ceiling = {(r["mode"], r["sequences"]): r for r in rows if r["server"] == "ceiling"}
    out = []
    for (mode, n), c in ceiling.items():
        others = [r for r in rows if r["server"] != "ceiling" and (r["mode"], r["sequences"]) == (mode, n)]
        parts = [f"{r['server']} {r['steps_per_s'] / c['steps_per_s']:.2f}" for r in others]
        out.append(f"{mode:<7} {n:>3} seqs: ceiling {c['steps_per_s']:,.0f} steps/s; fraction of it: "
                   + (", ".join(parts) or "-"))
    return out


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sequences", default="1,32", help="concurrent sequence counts (default 1,32)")
    p.add_argument("--modes", default="infer,stream,mux",
                   help="tritonclient call styles: infer (unary), stream (one stream per sequence), mux (one stream "
                        "for all sequences; skipped at 1) (default infer,stream,mux)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (default 2)")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per row (default 8)")
    p.add_argument("--client-procs", type=int, default=2, help="load-generator processes (default 2)")
    p.add_argument("--servers", default="eddy,ceiling,triton",
                   help="which servers to measure, in order: eddy, ceiling (bench/oip_ceiling.py: grpc.aio answering "
                        "constants, the bound for a Python grpc.aio server here), triton (one per --triton-delay-us) "
                        "(default eddy,ceiling,triton)")
    p.add_argument("--triton-delay-us", default="0,200", help="Triton oldest-strategy max_queue_delay_microseconds, "
                   "one server per value (default 0,200: no wait, and the anchor's 200 us)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "eddy-bench-triton",
                   help="cache for the model, Triton and its venv (default $TMPDIR/eddy-bench-triton)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here (default: the workdir)")
    p.add_argument("--rounds", type=int, default=1, help="measure every server this many times, interleaved; the "
                   "table and ratios show medians, the JSON every round too (default 1)")
    p.add_argument("--quick", action="store_true", help="short smoke run (1 s warm-up, 3 s per row)")
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.duration = 1.0, 3.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    print(f"bench_triton: setting up in {work} (first run downloads Triton and builds two venvs)", flush=True)
    servers = args.servers.split(",")
    models, client = _model(work), compat_python()
    server_dir = _triton(work) if "triton" in servers else None
    seqs = [int(s) for s in args.sequences.split(",")]
    modes = args.modes.split(",")
    configs: list[tuple[str, int]] = []
    for kind in servers:
        configs += [("triton", int(d)) for d in args.triton_delay_us.split(",")] if kind == "triton" else [(kind, 0)]
    rows: list[dict] = []
    crashes: list[str] = []
    crashed: set[str] = set()  # by server name (a substring test matched 'eddy' in the crash log's path)
    load_before = os.getloadavg()
    for rnd in range(args.rounds):  # every server once per round: the machine's load drifts over all of them alike
        for kind, delay in configs:
            name = f"triton d={delay}us" if kind == "triton" else kind
            if name in crashed:  # not restarted: its later rounds would measure a fresh process, not this one
                continue
            if kind == "eddy":
                server = _eddy(work, models, client)
            elif kind == "ceiling":
                server = _ceiling(work, client)
            else:
                server = _tritonserver(work, server_dir, _triton_repo(work, models, delay), client, delay)
            try:
                for mode, n in [(m, n) for m in modes for n in seqs if not (m == "mux" and n == 1)]:  # mux@1=stream@1
                    try:
                        r = _load(client, server, mode, n, args, record=CHECK_STEPS)
                    except (SystemExit, OSError):  # OSError: its metrics endpoint is gone with it
                        if server.proc.poll() is None:
                            raise
                        crash = f"{name} died during {mode} x{n} (exit {server.proc.returncode}); see {server.log}"
                        print(f"bench_triton: {crash}", flush=True)
                        crashes.append(crash)
                        crashed.add(name)
                        break
                    recorded = r.pop("recorded")
                    r.update(server=name, mode=mode, sequences=n, round=rnd,
                             exact="-" if kind == "ceiling" else "yes" if _check(recorded, models) else "NO")
                    rows.append(r)
                    print(_table([r]).splitlines()[-1] + (f"  (round {rnd + 1})" if args.rounds > 1 else ""),
                          flush=True)
            finally:
                server.stop()
    all_rows, rows = rows, _medians(rows)
    print()
    print(_table(rows))
    print()
    for kind, delay in configs:
        if kind == "triton":
            print("\n".join(_ratios(rows, f"triton d={delay}us")))
    print("\n".join(_ceiling_fractions(rows)))
    for crash in crashes:
        print(f"CRASHED: {crash}")
    meta = {"crashes": crashes, "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "args": {k: str(v) for k, v in vars(args).items()}}
    print(f"\nload average before {load_before[0]:.2f}, after {meta['load_avg_after'][0]:.2f} ({os.cpu_count()} cores); "
          "server/client/other columns: cores busy during the measured window")
    out = args.json or work / "bench_triton.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows, "all_rows": all_rows}, indent=1))
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
