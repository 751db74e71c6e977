"""eddy against a real NVIDIA Triton 2.51 and a Python ceiling on the same LSTM step graph, driven by perf_analyzer.

Not a test (pytest does not collect it). Run from the repository root::

    .venv/bin/python bench/bench_triton.py            # `make bench-triton`: 3 interleaved rounds, ~15 min on 2 cores
    .venv/bin/python bench/bench_triton.py --quick    # smoke run: 1 round, 1 s windows, ~3 min
    .venv/bin/python bench/bench_triton.py --servers eddy,ceiling   # without Triton
    .venv/bin/python bench/bench_triton.py --client tritonclient     # the Python tritonclient threads instead

What it sets up (cached in ``--workdir``, default ``$TMPDIR/eddy-bench-triton``,
and ``.venv-perf-analyzer``; nothing else is written into the repository):

- the model: a seeded, untrained Keras ``LSTM(256)`` over 64 features with a
  ``Dense(1)`` head, exported by ``eddy export --norm-identity`` (raw values in,
  raw out) to ``models/lstm/1`` (step.onnx is what every server runs);
- the load generator: perf_analyzer, Triton's own C++ one, from the
  ``tritonclient[all]==2.51.0`` wheel in ``.venv-perf-analyzer``
  (``tests/_perf_analyzer.py``; it needs the system's ``libb64-0d``:
  ``apt-get install libb64-0d``);
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
- the ceiling (``bench/oip_ceiling.py``, not part of eddy): a minimal grpc.aio
  server answering every ModelInfer / ModelStreamInfer request with a constant
  ``y`` of the right shape (requests parsed, answers pre-serialized, nothing
  computed): its steps/s bound what any Python grpc.aio server can answer here.

Then, ``--rounds`` times, for each server in turn (``--servers``: eddy serve with
its defaults, the ceiling, then Triton; one process each on 127.0.0.1, a fresh
one per round): a short warm-up run, then perf_analyzer in sequence mode for
each mode (``infer``: unary ModelInfer; ``stream``: ``--streaming``) and each
``--sequences`` count N (``--concurrency-range N:N``: N sequences at once, each
with one request in flight, sequences of 200 steps, ``x[1, 64]`` per step, fresh
sequence ids), three ``--window-ms`` windows (``-s 999 --max-trials 3``: its
default stability test never settles on a shared machine). Per row: steps/s,
p50 and p99 as perf_analyzer reports them; over exactly its windows (the
boundaries from its ``--profile-export-file``), CPU from /proc of the server
(its process tree: Triton's backend stub too), of perf_analyzer and of
everything else on the machine (other jobs: the machines are shared), and the
server's CPU per step; the mean batch from the server's own statistics
(perf_analyzer's server-side table; none for the ceiling). Every answer in the
windows is checked against eddy's local ``Stream`` fed the same steps, bit for
bit (perf_analyzer's export holds each request's input and output). A server
that dies during a row is a row of its own (and is restarted for the next).
Prints every round's rows, then the medians, eddy/Triton ratios and each
server's fraction of the ceiling, and writes JSON (``--json``).

``--client tritonclient`` drives the same servers with ``bench/oip_load.py``
instead (Python tritonclient 2.73 in ``.venv-compat``; one thread, client and
sequence each, from ``--client-procs`` processes, ``--warmup`` + ``--duration``
s; modes also ``mux``: one stream carrying every sequence). It is
client-bound on streams here: perf_analyzer costs 2-3x less CPU per step.
"""

from __future__ import annotations

import argparse
import base64
import csv
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tritonclient and perf_analyzer venv builders, shared with the tests
from _compat_venv import compat_python  # noqa: E402
from _perf_analyzer import PerfAnalyzer, errors, server_side  # noqa: E402
from _perf_analyzer import build as perf_analyzer  # noqa: E402

PYTRITON = "nvidia-pytriton==0.7.0"  # bundles tritonserver 2.51.0 and the python backend
FEATURES, UNITS = 64, 256
SEQUENCE_LENGTH = 200  # steps per perf_analyzer sequence (then END, and a new sequence id)
LOAD = ROOT / "bench" / "oip_load.py"
CHECK_STEPS = 32  # tritonclient: sequence 0's first answers checked against the local stream
SAMPLE_S = 0.05  # CPU counters are read this often while perf_analyzer runs

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
                 python: Path, metrics_url: str, counters: tuple[str, str]) -> None:
        self.name, self.url, self.log = name, url, log
        self.metrics_url, self.counters = metrics_url, counters  # Prometheus: (steps, model calls) counters
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        r = subprocess.run([str(python), str(LOAD), "--url", url, "--wait-ready", "120"], capture_output=True,
                           text=True)
        if r.returncode != 0 or self.proc.poll() is not None:
            self.stop()
            raise SystemExit(f"bench_triton: {name} did not become ready; see {log}\n{r.stderr[-500:]}")

    def pids(self) -> list[int]:
        """The server and its direct children (Triton's backend stub): whose CPU counts as the server's."""
        return [self.proc.pid] + _children(self.proc.pid)

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


def _eddy(work: Path, models: Path, python: Path, extra: list[str], *, name: str = "eddy",
          interpreter: str = sys.executable) -> _Server:
    """``eddy serve`` run by ``interpreter`` (another one: e.g. a venv whose ``eddy`` is an older checkout)."""
    port, metrics = _free_port(), _free_port()
    argv = [interpreter, "-m", "eddy.cli", "serve", "--models", str(models), "--port", str(port),
            "--metrics-port", str(metrics), *extra]
    return _Server(name, argv, f"127.0.0.1:{port}", work / f"{name}.log", cwd=ROOT, python=python,
                   metrics_url=f"http://127.0.0.1:{metrics}/metrics",
                   counters=("eddy_batch_size_sum", "eddy_batch_size_count"))


def _ceiling(work: Path, python: Path, batched: bool = False) -> _Server:
    """bench/oip_ceiling.py: grpc.aio answering constants, the bound for any Python grpc.aio server here
    (``batched``: unary answers from one task per loop turn, as a batching server must)."""
    port, name = _free_port(), "ceiling-batched" if batched else "ceiling"
    argv = [sys.executable, str(ROOT / "bench" / "oip_ceiling.py"), "--port", str(port), "--features", str(FEATURES),
            *(["--batched"] if batched else [])]
    return _Server(name, argv, f"127.0.0.1:{port}", work / f"{name}.log", cwd=ROOT, python=python,
                   metrics_url="", counters=("", ""))


def _tritonserver(work: Path, server_dir: Path, repo: Path, python: Path, delay_us: int) -> _Server:
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
                   cwd=work / "triton" / "stub-cwd", env=env, python=python,
                   metrics_url=f"http://127.0.0.1:{metrics}/metrics",
                   counters=("nv_inference_count{", "nv_inference_exec_count{"))


# --------------------------------------------------------------------------- measuring

class _Sampler:
    """Reads CPU counters (server tree, load generator, whole machine) every SAMPLE_S s in a thread, timestamped with
    the wall clock (perf_analyzer's window boundaries are wall-clock ns)."""

    def __init__(self, server_pids: list[int], client_pid: int) -> None:
        self._server, self._client = server_pids, client_pid
        self.samples: list[tuple[int, float, float, float]] = []  # (time ns, server s, client s, machine busy s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> tuple[int, float, float, float]:
        return (time.time_ns(), sum(_cpu_seconds(p) for p in self._server), _cpu_seconds(self._client),
                _machine_busy())

    def _run(self) -> None:
        while True:
            self.samples.append(self._read())
            if self._stop.wait(SAMPLE_S):
                break

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self._read())

    def between(self, t0_ns: int, t1_ns: int) -> tuple[float, float, float]:
        """CPU seconds of (server, client, machine) between two wall-clock instants, interpolated."""
        at0, at1 = self._at(t0_ns), self._at(t1_ns)
        return at1[0] - at0[0], at1[1] - at0[1], at1[2] - at0[2]

    def _at(self, t_ns: int) -> tuple[float, float, float]:
        times = [s[0] for s in self.samples]
        k = min(max(int(np.searchsorted(times, t_ns)), 1), len(times) - 1)
        (ta, *a), (tb, *b) = self.samples[k - 1], self.samples[k]
        w = min(max((t_ns - ta) / (tb - ta), 0.0), 1.0) if tb > ta else 1.0
        return tuple(x + w * (y - x) for x, y in zip(a, b))  # type: ignore[return-value]


class _Crash(Exception):
    """The server process died during a row."""


# Fresh sequence ids for every run (a run uses fewer than 100,000); perf_analyzer parses them as 32-bit ints.
_ids = itertools.count(1 + int(time.time()) % 10_000 * 100_000, 100_000)


def _steps_file(work: Path, models: Path) -> tuple[Path, dict[float, int], np.ndarray]:
    """perf_analyzer's input data (one stream of SEQUENCE_LENGTH steps ``x[64]``), each step's index by its first
    value, and eddy's local Stream's answers to them ``[steps]``: the bit-for-bit reference."""
    import eddy.runtime as runtime
    xs = np.random.default_rng(0).standard_normal((SEQUENCE_LENGTH, FEATURES)).astype(np.float32)
    stream = runtime.load(models / "lstm").stream()
    want = np.array([stream.push(x[None])[0, 0] for x in xs], np.float32)
    path = work / "steps.json"
    path.write_text(json.dumps({"data": [[{"x": [float(v) for v in x]} for x in xs]]}))
    index = {float(x[0]): k for k, x in enumerate(xs)}
    if len(index) != len(xs):
        raise SystemExit("bench_triton: the steps' first values must be distinct (they identify the step)")
    return path, index, want


def _perf_analyzer_row(pa: PerfAnalyzer, server: _Server, mode: str, n: int, window_ms: int, steps: tuple,
                       work: Path, check: bool = True, samples: int = 1) -> dict:
    """One perf_analyzer run (``n`` concurrent sequences, three windows); the row's figures.

    ``samples`` > 1: each request carries that many samples (perf_analyzer's ``-b``; eddy takes them as
    consecutive steps of the sequence, Triton refuses them); steps/s then counts samples, and answers are not
    checked.
    """
    steps_path, index, want = steps
    csv_path, export = work / "pa.csv", work / "pa-export.json"
    for f in (csv_path, export):
        f.unlink(missing_ok=True)
    argv = ["-m", "lstm", "-u", server.url, "-i", "grpc", "--input-data", str(steps_path),
            "--sequence-length", str(SEQUENCE_LENGTH), "--sequence-length-variation", "0",
            "--sequence-id-range", str(next(_ids)), "--concurrency-range", f"{n}:{n}", "--serial-sequences",
            "--measurement-interval", str(window_ms), "-s", "999", "--max-trials", "3",
            "-f", str(csv_path), "--profile-export-file", str(export), "-b", str(samples),
            *(["--streaming"] if mode == "stream" else [])]
    log = work / "pa.out"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(pa.binary), *argv], env=pa.env, stdout=out, stderr=subprocess.STDOUT)
    sampler = _Sampler(server.pids(), proc.pid)
    deadline = time.monotonic() + window_ms / 1000 * 3 + 300
    try:
        while proc.poll() is None:
            if server.proc.poll() is not None or time.monotonic() > deadline:  # perf_analyzer would wait forever
                proc.kill()
                proc.wait()
                if server.proc.poll() is None:
                    raise SystemExit(f"bench_triton: perf_analyzer against {server.name} did not finish; see {log}")
                break
            time.sleep(0.2)
    finally:
        sampler.stop()
    if server.proc.poll() is not None:
        raise _Crash(_exit(server.proc.returncode))
    output = log.read_text()
    problems = errors(output)
    # perf_analyzer now and then sends a sequence's step while its previous one is in flight (--serial-sequences
    # notwithstanding; seen when a run winds down): eddy refuses it (FAILED_PRECONDITION, the session is busy),
    # Triton queues it. Counted and shown; any other error fails the row.
    overlapping = [e for e in problems if "is in use by another" in e]
    problems = [e for e in problems if e not in overlapping]
    if overlapping:
        print(f"bench_triton: {server.name} {mode} x{n}: {len(overlapping)} step(s) sent while the sequence's "
              "previous step was in flight, refused as busy", flush=True)
    if proc.returncode != 0 or problems or not export.exists():
        raise SystemExit(f"bench_triton: perf_analyzer against {server.name} failed (exit {proc.returncode}):\n"
                         f"{output[-3000:]}")
    with open(csv_path) as f:
        row = next(csv.DictReader(f))
    experiment = json.loads(export.read_text())["experiments"][0]
    w = experiment["window_boundaries"]
    seconds = (w[-1] - w[0]) / 1e9
    steps_per_s = float(row["Inferences/Second"])
    server_s, client_s, machine_s = sampler.between(w[0], w[-1])
    done = steps_per_s * seconds
    side = server_side(output) or {}
    exact = "-" if not check or samples > 1 else _exact(experiment["requests"], w[0], w[-1], index, want)
    export.unlink()
    return {"steps_per_s": steps_per_s, "p50_ms": float(row["p50 latency"]) / 1e3,
            "p99_ms": float(row["p99 latency"]) / 1e3,
            "mean_batch": side["inference_count"] / side["execution_count"] if side.get("execution_count")
            else float("nan"),
            "server_us": server_s / done * 1e6, "client_us": client_s / done * 1e6,
            "server_cores": server_s / seconds, "client_cores": client_s / seconds,
            "other_cores": max(0.0, (machine_s - server_s - client_s) / seconds), "exact": exact,
            "refused_overlapping": len(overlapping),
            "server_side": side, "seconds": seconds}


def _exact(requests: list[dict], t0: int, t1: int, index: dict[float, int], want: np.ndarray) -> str:
    """Every answer sent inside the windows equals the local Stream's answer to the same step (its input names it)."""
    checked = wrong = 0
    for r in requests:
        if not t0 <= r["timestamp"] <= t1 or not r.get("response_outputs"):
            continue
        k = index.get(float(np.float32(r["request_inputs"]["x"][0])))
        y = r["response_outputs"][0].get("y")
        y = y[0] if isinstance(y, list) else y
        checked += 1
        wrong += k is None or y is None or np.float32(y) != want[k]
    if not checked:
        return "NO (no answers)"
    return "yes" if not wrong else f"NO ({wrong} of {checked})"


def _exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


def _tritonclient_row(client: Path, server: _Server, mode: str, sequences: int, args: argparse.Namespace,
                      models: Path) -> dict:
    """The load from ``--client-procs`` oip_load.py processes at once; merged figures and CPU shares."""
    procs_n = 1 if mode == "mux" else max(1, min(args.client_procs, sequences))  # mux: one stream for all
    per = [sequences // procs_n + (1 if k < sequences % procs_n else 0) for k in range(procs_n)]
    start_at = time.time() + 1.0
    cmds, first = [], 0
    id_base = next(_ids)
    for n in per:
        cmds.append([str(client), str(LOAD), "--url", server.url, "--mode", mode, "--sequences", str(n),
                     "--first", str(first), "--id-base", str(id_base), "--features", str(FEATURES),
                     "--warmup", str(args.warmup), "--duration", str(args.duration), "--start-at", str(start_at),
                     "--record", str(CHECK_STEPS if first == 0 else 0)])
        first += n
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    time.sleep(max(0.0, start_at + args.warmup - time.time()))
    pids = server.pids()
    s0, m0, b0 = sum(map(_cpu_seconds, pids)), _machine_busy(), server.batch_counts()
    time.sleep(args.duration)
    s1, m1, b1 = sum(map(_cpu_seconds, pids)), _machine_busy(), server.batch_counts()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=args.warmup + args.duration + 120)
        if server.proc.poll() is not None:
            raise _Crash(_exit(server.proc.returncode))
        if p.returncode != 0:
            raise SystemExit(f"bench_triton: load against {server.name} failed:\n{err[-2000:]}")
        results.append(json.loads(out))
    lat = sorted(v for r in results for v in r["latencies_ms"])
    client_s = sum(r["client_cpu_s"] for r in results) * args.duration / (args.warmup + args.duration)
    server_s, done = s1 - s0, max(len(lat), 1)
    recorded = next((r["recorded"] for r in results if r["recorded"]), [])
    exact = "-" if server.name.startswith("ceiling") else "yes" if _check(recorded, models) else "NO"
    return {"steps_per_s": len(lat) / args.duration, "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
            "mean_batch": (b1[0] - b0[0]) / (b1[1] - b0[1]) if b1[1] > b0[1] else float("nan"),
            "server_us": server_s / done * 1e6, "client_us": client_s / done * 1e6,
            "server_cores": server_s / args.duration, "client_cores": client_s / args.duration,
            "other_cores": max(0.0, (m1 - m0 - server_s - client_s) / args.duration), "exact": exact,
            "seconds": args.duration}


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

_HEAD = (f"{'server':<16}{'mode':<7}{'seqs':>5}{'steps/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'batch':>6}"
         f"{'srv us':>8}{'cli us':>8}{'server':>7}{'client':>7}{'other':>6}  exact")


def _line(r: dict) -> str:
    if r.get("crashed"):
        return f"{r['server']:<16}{r['mode']:<7}{r['sequences']:>5}  CRASHED: {r['crashed']}"
    return (f"{r['server']:<16}{r['mode']:<7}{r['sequences']:>5}{r['steps_per_s']:>9,.0f}{r['p50_ms']:>8.2f}"
            f"{r['p99_ms']:>8.2f}{r['mean_batch']:>6.1f}{r['server_us']:>8.0f}{r['client_us']:>8.0f}"
            f"{r['server_cores']:>7.2f}{r['client_cores']:>7.2f}{r['other_cores']:>6.2f}  {r['exact']}")


def _table(rows: list[dict]) -> str:
    return "\n".join([_HEAD, "-" * len(_HEAD), *map(_line, rows)])


def _medians(rows: list[dict]) -> list[dict]:
    """One row per (server, mode, sequences): the median of each figure over the rounds that ran; exact only if every
    round was; a crash in any round is a row of its own, after the medians."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["server"], r["mode"], r["sequences"]), []).append(r)
    out, crashes = [], []
    for (server, mode, n), rs in groups.items():
        ran = [r for r in rs if not r.get("crashed")]
        if ran:
            m = {k: statistics.median(r[k] for r in ran) for k in ran[0] if isinstance(ran[0][k], float)}
            exacts = {r["exact"] for r in ran}
            out.append({**m, "server": server, "mode": mode, "sequences": n, "rounds": len(ran),
                        "exact": exacts.pop() if len(exacts) == 1 else "NO"})
        failed = [r for r in rs if r.get("crashed")]
        if failed:
            why = sorted({r["crashed"] for r in failed})
            crashes.append({"server": server, "mode": mode, "sequences": n,
                            "crashed": f"in {len(failed)} of {len(rs)} rounds ({', '.join(why)})"})
    return out + crashes


def _ratios(rows: list[dict], triton_name: str) -> list[str]:
    out = []
    eddy = {(r["mode"], r["sequences"]): r for r in rows if r["server"] == "eddy" and not r.get("crashed")}
    for r in rows:
        if r["server"] != triton_name or r.get("crashed"):
            continue
        e = eddy.get((r["mode"], r["sequences"]))
        if e:
            out.append(f"{r['mode']:<7} {r['sequences']:>3} seqs: eddy/{triton_name} steps/s "
                       f"{e['steps_per_s'] / r['steps_per_s']:.2f}x, p50 {e['p50_ms'] / r['p50_ms']:.2f}x, "
                       f"p99 {e['p99_ms'] / r['p99_ms']:.2f}x, server CPU per step "
                       f"{e['server_us'] / r['server_us']:.2f}x")
    return out


def _ceiling_fractions(rows: list[dict]) -> list[str]:
    """Each server's steps/s and server CPU per step against the ceiling's, same mode and sequences."""
    ceiling = {(r["mode"], r["sequences"]): r for r in rows if r["server"] == "ceiling" and not r.get("crashed")}
    out = []
    for (mode, n), c in ceiling.items():
        others = [r for r in rows if r["server"] != "ceiling" and not r.get("crashed")
                  and (r["mode"], r["sequences"]) == (mode, n)]
        parts = [f"{r['server']} {r['steps_per_s'] / c['steps_per_s']:.2f}x steps/s, "
                 f"{r['server_us'] / c['server_us']:.2f}x CPU per step" for r in others]
        out.append(f"{mode:<7} {n:>3} seqs: ceiling {c['steps_per_s']:,.0f} steps/s, {c['server_us']:.0f} us per step; "
                   + ("; ".join(parts) or "-"))
    return out


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--client", choices=["perf_analyzer", "tritonclient"], default="perf_analyzer",
                   help="load generator: perf_analyzer (C++, Triton's own) or tritonclient threads (bench/oip_load.py) "
                        "(default perf_analyzer)")
    p.add_argument("--sequences", default="1,32", help="concurrent sequence counts (default 1,32)")
    p.add_argument("--modes", default=None,
                   help="infer (unary), stream (perf_analyzer --streaming; tritonclient: one stream per sequence), "
                        "mux (tritonclient only: one stream for all sequences; skipped at 1) "
                        "(default infer,stream; with tritonclient infer,stream,mux)")
    p.add_argument("--window-ms", type=int, default=4000,
                   help="perf_analyzer measurement window; three per row (default 4000)")
    p.add_argument("--warmup", type=float, default=2.0, help="tritonclient: seconds before measuring (default 2)")
    p.add_argument("--duration", type=float, default=8.0, help="tritonclient: measured seconds per row (default 8)")
    p.add_argument("--client-procs", type=int, default=2, help="tritonclient: load-generator processes (default 2)")
    p.add_argument("--servers", default="eddy,ceiling,triton",
                   help="which servers to measure, in order: eddy, base (see --base-python), ceiling "
                        "(bench/oip_ceiling.py: grpc.aio answering constants, the bound for a Python grpc.aio server "
                        "here), ceiling-batched (the same, unary answers from one task per loop turn: what batching "
                        "costs), triton (one per --triton-delay-us) "
                        "(default eddy,ceiling,triton)")
    p.add_argument("--triton-delay-us", default="0,200", help="Triton oldest-strategy max_queue_delay_microseconds, "
                   "one server per value (default 0,200: no wait, and the anchor's 200 us)")
    p.add_argument("--base-python", type=Path, default=None,
                   help="server `base`: eddy served by this Python instead (e.g. a venv whose eddy is another "
                        "checkout), measured side by side with eddy; add it to --servers (default none)")
    p.add_argument("--eddy-args", default="", help="extra `eddy serve` flags, e.g. '--max-delay-us 0' (default none)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "eddy-bench-triton",
                   help="cache for the model, Triton and its venv (default $TMPDIR/eddy-bench-triton)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here (default: the workdir)")
    p.add_argument("--rounds", type=int, default=3, help="measure every server this many times, interleaved; the "
                   "table and ratios show medians, the JSON every round too (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, 1 s windows (tritonclient: 1 s warm-up, "
                   "3 s per row)")
    args = p.parse_args(argv)
    if "base" in args.servers.split(",") and args.base_python is None:
        p.error("server `base` needs --base-python")
    if args.quick:
        args.rounds, args.window_ms, args.warmup, args.duration = 1, 1000, 1.0, 3.0
    if args.modes is None:
        args.modes = "infer,stream" if args.client == "perf_analyzer" else "infer,stream,mux"
    if args.client == "perf_analyzer" and "mux" in args.modes.split(","):
        p.error("mux is a tritonclient mode (perf_analyzer --streaming opens its own streams)")
    return args


def _start(kind: str, delay: int, work: Path, models: Path, python: Path, server_dir: Path | None,
           args: argparse.Namespace) -> _Server:
    if kind == "eddy":
        return _eddy(work, models, python, args.eddy_args.split())
    if kind == "base":
        return _eddy(work, models, python, args.eddy_args.split(), name="base", interpreter=str(args.base_python))
    if kind in ("ceiling", "ceiling-batched"):
        return _ceiling(work, python, batched=kind == "ceiling-batched")
    return _tritonserver(work, server_dir, _triton_repo(work, models, delay), python, delay)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    print(f"bench_triton: setting up in {work} (first run downloads Triton and builds its venvs)", flush=True)
    servers = args.servers.split(",")
    models = _model(work)
    if args.client == "perf_analyzer":
        pa = perf_analyzer()
        python = pa.binary.parent / "python"  # its venv holds tritonclient too (readiness checks)
        steps = _steps_file(work, models)
    else:
        python = compat_python()
    server_dir = _triton(work) if "triton" in servers else None
    seqs = [int(s) for s in args.sequences.split(",")]
    modes = args.modes.split(",")
    configs: list[tuple[str, int]] = []
    for kind in servers:
        configs += [("triton", int(d)) for d in args.triton_delay_us.split(",")] if kind == "triton" else [(kind, 0)]
    rows: list[dict] = []
    load_before, uptime_before = os.getloadavg(), _uptime()
    t_start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    for rnd in range(args.rounds):  # every server once per round: the machine's load drifts over all of them alike
        for kind, delay in configs:
            name = f"triton d={delay}us" if kind == "triton" else kind
            server = _start(kind, delay, work, models, python, server_dir, args)
            try:
                if args.client == "perf_analyzer":  # a short unmeasured run: first calls, allocations, JIT caches
                    _perf_analyzer_row(pa, server, "infer", max(seqs), 500, steps, work, check=False)
                for mode, n in [(m, n) for m in modes for n in seqs if not (m == "mux" and n == 1)]:  # mux@1=stream@1
                    if server.proc.poll() is not None:  # it died in the previous row: a fresh one for this row
                        server.stop()
                        server = _start(kind, delay, work, models, python, server_dir, args)
                    try:
                        if args.client == "perf_analyzer":
                            r = _perf_analyzer_row(pa, server, mode, n, args.window_ms, steps, work,
                                                   check=not kind.startswith("ceiling"))
                        else:
                            r = _tritonclient_row(python, server, mode, n, args, models)
                    except _Crash as e:
                        r = {"crashed": str(e)}
                        print(f"bench_triton: {name} died during {mode} x{n} ({e}); see {server.log}", flush=True)
                    r.update(server=name, mode=mode, sequences=n, round=rnd)
                    rows.append(r)
                    print(_line(r) + (f"  (round {rnd + 1})" if args.rounds > 1 else ""), flush=True)
            finally:
                server.stop()
    medians = _medians(rows)
    print()
    print(_table(medians))
    print()
    for kind, delay in configs:
        if kind == "triton":
            print("\n".join(_ratios(medians, f"triton d={delay}us")))
    print("\n".join(_ceiling_fractions(medians)))
    meta = {"client": args.client, "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
            "uptime_before": uptime_before, "uptime_after": _uptime(), "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "start_utc": t_start,
            "end_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "args": {k: str(v) for k, v in vars(args).items()}}
    print(f"\n{t_start} - {meta['end_utc']} UTC; load average before {load_before[0]:.2f}, after "
          f"{meta['load_avg_after'][0]:.2f} ({os.cpu_count()} cores). srv/cli us: CPU per step of the server and the "
          "load generator; server/client/other: cores busy during the measured windows (other: the rest of the machine)")
    out = args.json or work / "bench_triton.json"
    out.write_text(json.dumps({"meta": meta, "rows": medians, "all_rows": rows}, indent=1))
    print(f"figures: {out}")
    return 0


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
