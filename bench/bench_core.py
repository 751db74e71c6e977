"""Core benchmark: eddy's in-process and graph paths next to their anchors, measured in the same run.

One table per goal, each row eddy or an anchor, with the median
of interleaved repeats (every variant runs once per repeat, in turn, so load
from other processes hits them alike) and eddy's ratio to each anchor:

1. per-sample ``Stream.push(float)`` on the seed model vs LiteRT (the same
   Keras cell converted in this script), bare ``InferenceSession.run``, a
   hand-written onnxruntime I/O-binding loop (public ``run_with_iobinding``,
   whose Python wrapper in onnxruntime 1.32 checks for WebGPU graph capture on
   every call) and the same loop calling the C-level run as eddy does (the
   onnxruntime floor), and numpy;
2. chunked samples/s: the sequence graph tf2onnx makes (a ``Loop``, built
   here from the seed's Keras weights) vs the native ``RNN`` graph eddy ships;
3. the serving batch path at 256 sessions (slab gather, step graph, scatter)
   vs the bare onnxruntime call on preallocated arrays;
4. ``eddy serve`` start to SERVING and its RSS vs a bare grpc.aio server
   with health checking, and vs that plus numpy, onnxruntime and the model's
   two sessions (the libraries' floor).

Needs the ``train`` extra (tensorflow, tf2onnx) for the LiteRT and Loop
anchors and the ``bench`` extra (ai-edge-litert). Run ``make bench`` or
``python bench/bench_core.py [--quick]`` from the repository root.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

import eddy.runtime as runtime  # noqa: E402
from eddy.runtime.core.model import session_options  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The seed model as the anchors compute it: SimpleRNN(50) -> Dense(1), level, graphs in normalised units with one
# state tensor h0 (an older default model, kept as a test fixture). Today's default model wraps the
# delta transform and its x_last/x_seen state around the same kind of cell, which LiteRT/numpy here do not compute.
SEED = ROOT / "tests" / "data" / "legacy_sunspots" / "1"


# -- helpers -----------------------------------------------------------------
def interleaved(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Run each variant once per repeat, in turn; each returns one measurement. Medians."""
    runs: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            runs[name].append(fn())
    return {k: statistics.median(v) for k, v in runs.items()}


def per_call_us(fn: Callable[[], object], calls: int) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t0) / calls * 1e6
    return run


def table(title: str, unit: str, rows: list[tuple[str, float]], eddy: str) -> None:
    """Print ``rows`` with eddy's ratio to each anchor (lower is better for every unit used here)."""
    w = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print(f"  {'':{w}} {unit:>10}  {'eddy / this':>11}")
    for name, value in rows:
        ratio = f"{dict(rows)[eddy] / value:10.2f}x" if name != eddy else ""
        print(f"  {name:{w}} {value:10,.1f}  {ratio:>11}")


# -- anchors built from the seed's Keras model ---------------------------------
def keras_anchors(tmp: Path) -> tuple[Callable[[float], float], Callable[[float], float], Path]:
    """LiteRT and numpy step functions (state kept across calls) and tf2onnx's Loop sequence graph."""
    import keras
    import tensorflow as tf
    import tf2onnx
    from ai_edge_litert.interpreter import Interpreter

    km = keras.models.load_model(SEED / "model.keras")
    rnn = next(layer for layer in km.layers if isinstance(layer, keras.layers.SimpleRNN))
    dense = km.layers[-1]
    units = rnn.units

    @tf.function(input_signature=[tf.TensorSpec([1, 1], tf.float32), tf.TensorSpec([1, units], tf.float32)])
    def step(x, h):  # noqa: ANN001, ANN202
        y, new = rnn.cell(x, h)
        return dense(y), (new[0] if isinstance(new, (list, tuple)) else new)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([step.get_concrete_function()], km)
    interp = Interpreter(model_content=conv.convert(), num_threads=1)
    interp.allocate_tensors()
    ins = sorted(interp.get_input_details(), key=lambda d: list(d["shape"])[-1])  # x [1,1], h [1,U]
    outs = sorted(interp.get_output_details(), key=lambda d: list(d["shape"])[-1])  # y [1,1], h [1,U]
    xi, hi, yo, ho = ins[0]["index"], ins[1]["index"], outs[0]["index"], outs[1]["index"]
    x, h = np.zeros((1, 1), np.float32), [np.zeros((1, units), np.float32)]
    set_tensor, invoke, get_tensor = interp.set_tensor, interp.invoke, interp.get_tensor

    def litert(v: float) -> float:
        x[0, 0] = v
        set_tensor(xi, x)
        set_tensor(hi, h[0])
        invoke()
        h[0] = get_tensor(ho)
        return float(get_tensor(yo)[0, 0])

    kernel, rec, bias = (np.asarray(w.numpy(), np.float32) for w in (rnn.cell.kernel, rnn.cell.recurrent_kernel,
                                                                      rnn.cell.bias))  # [1, U], [U, U], [U]
    head, head_b = np.asarray(dense.kernel.numpy(), np.float32), np.asarray(dense.bias.numpy(), np.float32)
    hn = [np.zeros((1, units), np.float32)]

    def numpy_ref(v: float) -> float:
        hn[0] = np.tanh(v * kernel + hn[0] @ rec + bias)  # [1, U]
        return float((hn[0] @ head + head_b)[0, 0])

    twin = keras.layers.SimpleRNN.from_config({**rnn.get_config(), "return_sequences": True, "return_state": True,
                                               "name": "twin"})
    twin.build((None, None, 1))
    twin.set_weights(rnn.get_weights())
    sig = [tf.TensorSpec([None, None, 1], tf.float32, name="x"), tf.TensorSpec([None, units], tf.float32, name="h0")]

    @tf.function(input_signature=sig)
    def sequence(x, h):  # noqa: ANN001, ANN202
        ys, hn = twin(x, initial_state=[h])
        return {"y": dense(ys), "h0_out": hn}

    loop = tmp / "loop_sequence.onnx"
    tf2onnx.convert.from_function(sequence, input_signature=sig, opset=17, output_path=str(loop))
    return litert, numpy_ref, loop


# -- goal 1: per-sample push -----------------------------------------------------
def bench_push(litert: Callable[[float], float], numpy_ref: Callable[[float], float], calls: int,
               repeats: int) -> None:
    model = runtime.load(SEED)
    stream = model.stream()
    sess = ort.InferenceSession(str(SEED / "step.onnx"), session_options(), providers=["CPUExecutionProvider"])
    units = model.state_spec[0].shape[0]
    x, st = np.zeros((1, 1), np.float32), [np.zeros((1, units), np.float32)]

    def bare_run(v: float) -> float:
        x[0, 0] = v
        y, st[0] = sess.run(["y", "h0_out"], {"x": x, "h0": st[0]})
        return float(y[0, 0])

    # A hand-written I/O-binding loop: buffers bound once, two bindings swapping the state buffers.
    xb, yb = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)
    hb = [np.zeros((1, units), np.float32) for _ in range(2)]
    ov = ort.OrtValue.ortvalue_from_numpy
    xo, yo, ho = ov(xb), ov(yb), [ov(a) for a in hb]
    bindings = []
    for k in (0, 1):
        b = sess.io_binding()
        b.bind_ortvalue_input("x", xo)
        b.bind_ortvalue_input("h0", ho[k])
        b.bind_ortvalue_output("y", yo)
        b.bind_ortvalue_output("h0_out", ho[1 - k])
        bindings.append(b)
    cur = [0]

    def io_binding(v: float) -> float:
        xb[0, 0] = v
        sess.run_with_iobinding(bindings[cur[0]])
        cur[0] ^= 1
        return float(yb[0, 0])

    inner, raw = sess._sess, [b._iobinding for b in bindings]  # what sess.run_with_iobinding calls after its checks

    def io_binding_c(v: float) -> float:
        xb[0, 0] = v
        inner.run_with_iobinding(raw[cur[0]], None)
        cur[0] ^= 1
        return float(yb[0, 0])

    value = 42.0
    rows = interleaved({
        "eddy Stream.push(float)": per_call_us(lambda: stream.push(value), calls),
        "LiteRT set_tensor/invoke/get_tensor": per_call_us(lambda: litert(value), calls),
        "onnxruntime I/O binding, hand-written": per_call_us(lambda: io_binding(value), calls),
        "onnxruntime I/O binding, C-level run (floor)": per_call_us(lambda: io_binding_c(value), calls),
        "onnxruntime InferenceSession.run": per_call_us(lambda: bare_run(value), calls),
        "numpy reference (tanh(xW + hR + b))": per_call_us(lambda: numpy_ref(value), calls),
    }, repeats)
    table("1. per-sample push, seed SimpleRNN(50), batch 1, one thread (us per sample)", "us", list(rows.items()),
          "eddy Stream.push(float)")


# -- goal 2: chunked throughput -----------------------------------------------------
def bench_chunks(loop: Path, repeats: int, lengths: tuple[int, ...]) -> None:
    model = runtime.load(SEED)
    opts = session_options()
    native = ort.InferenceSession(str(SEED / "sequence.onnx"), opts, providers=["CPUExecutionProvider"])
    looped = ort.InferenceSession(str(loop), opts, providers=["CPUExecutionProvider"])
    for t in lengths:
        _bench_chunk(model, native, looped, t, repeats)


def _bench_chunk(model: runtime.Model, native: ort.InferenceSession, looped: ort.InferenceSession, t: int,
                 repeats: int) -> None:
    units = model.state_spec[0].shape[0]
    x = np.random.default_rng(t).normal(size=(1, t, 1)).astype(np.float32)  # [1, T, 1] normalised
    h = np.zeros((1, units), np.float32)
    raw = (x[0] * 34.2 + 42.9).astype(np.float32)  # [T, 1] raw units for the stream
    stream = model.stream()
    calls = max(3, 20000 // t)  # ~20k samples per measurement

    def rate(fn: Callable[[], object]) -> Callable[[], float]:
        fn()  # warm: onnxruntime plans memory for a new shape on its first call
        return lambda: t / per_call_us(fn, calls)() * 1e6

    rows = interleaved({
        "eddy Stream.push(chunk), native RNN graph": rate(lambda: stream.push(raw)),
        "onnxruntime run, native RNN graph": rate(lambda: native.run(None, {"x": x, "h0": h})),
        "onnxruntime run, tf2onnx Loop graph": rate(lambda: looped.run(None, {"x": x, "h0": h})),
    }, repeats)
    diff = np.abs(native.run(["y"], {"x": x, "h0": h})[0] - looped.run(["y"], {"x": x, "h0": h})[0]).max()
    print(f"\n2. chunked throughput, T={t}, batch 1 (samples/s; native vs Loop max abs diff {diff:.1e} normalised)")
    print(f"  {'':44} {'samples/s':>12}  {'this / Loop':>11}")
    loop_rate = rows["onnxruntime run, tf2onnx Loop graph"]
    for name, v in rows.items():
        print(f"  {name:44} {v:12,.0f}  {v / loop_rate:10.2f}x")


# -- goal 3: the serving batch path ---------------------------------------------------
def bench_batch(calls: int, repeats: int, sessions: int = 256) -> None:
    from eddy.runtime.serving.slab import Slab

    model = runtime.load(SEED)
    slab = Slab(model)
    rows = [slab.alloc() for _ in range(sessions)]
    xs = [np.full((1, 1), 40.0 + i % 7, np.float32) for i in range(sessions)]
    sess = ort.InferenceSession(str(SEED / "step.onnx"), session_options(), providers=["CPUExecutionProvider"])
    x = np.concatenate(xs)  # [B, 1]
    h = np.zeros((sessions, model.state_spec[0].shape[0]), np.float32)
    advance = [1] * sessions

    def batch_path() -> None:
        x3 = np.concatenate(xs).reshape(sessions, 1, 1)  # [B, n, F], as the batcher stacks inputs
        y, new = model._advance(x3, slab.gather(rows))  # [B, 1, O]
        slab.scatter(rows, new, advance)

    res = interleaved({
        "eddy slab gather + step graph + scatter": per_call_us(batch_path, calls),
        "onnxruntime run on preallocated arrays": per_call_us(lambda: sess.run(None, {"x": x, "h0": h}), calls),
    }, repeats)
    table(f"3. one batched step for {sessions} sessions (us per call)", "us", list(res.items()),
          "eddy slab gather + step graph + scatter")


# -- goal 4: cold start -------------------------------------------------------------
_ANCHOR = textwrap.dedent("""
    import asyncio, sys
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    FLOOR = sys.argv[1] == "floor"
    if FLOOR:
        import numpy, onnxruntime as ort
        from eddy.runtime.core.model import session_options
        s = [ort.InferenceSession(sys.argv[2] + f, session_options(), providers=["CPUExecutionProvider"])
             for f in ("/step.onnx", "/sequence.onnx")]
    async def main():
        server = grpc.aio.server()
        h = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(h, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await h.set("", health_pb2.HealthCheckResponse.SERVING)
        print(f"serving on 127.0.0.1:{port}", flush=True)
        await server.wait_for_termination()
    asyncio.run(main())
""")


def _start_to_serving(cmd: list[str]) -> tuple[float, float, float]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        m = re.search(r"on (\S+)$", line.strip())
        if m is None:
            raise RuntimeError(f"{cmd}: no address in {line!r}")
        with grpc.insecure_channel(m.group(1)) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status == 1:
                        break
                except grpc.RpcError:
                    time.sleep(0.001)
        ms = (time.perf_counter() - t0) * 1000
        rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{proc.pid}/status").read_text()).group(1)) / 1024
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_ms = (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")  # utime + stime
        return ms, rss, cpu_ms
    finally:
        proc.terminate()
        proc.wait()


def bench_cold(tmp: Path, repeats: int) -> None:
    models = tmp / "models"
    (models / "sunspots").mkdir(parents=True, exist_ok=True)
    if not (models / "sunspots" / "1").exists():
        (models / "sunspots" / "1").symlink_to(SEED)
    anchor = tmp / "anchor_server.py"
    anchor.write_text(_ANCHOR)
    cmds = {
        "eddy serve (one model)": [sys.executable, "-m", "eddy.cli", "serve", "--models", str(models), "--port", "0"],
        "grpc.aio + health, bare": [sys.executable, str(anchor), "bare"],
        "grpc.aio + health + numpy + onnxruntime + 2 sessions": [sys.executable, str(anchor), "floor", str(SEED)],
    }
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cmds}
    for _ in range(repeats):
        for k, cmd in cmds.items():
            runs[k].append(_start_to_serving(cmd))
    eddy = "eddy serve (one model)"
    for i, title, unit in (
        (0, "4a. start to SERVING (ms, process start to the first SERVING health answer)", "ms"),
        (2, "4b. CPU time to SERVING (ms of user + system time; less sensitive to other load than 4a)", "ms"),
        (1, "4c. resident memory once SERVING (MB, VmRSS)", "MB"),
    ):
        table(title, unit, [(k, statistics.median(r[i] for r in v)) for k, v in runs.items()], eddy)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats and calls: under a minute")
    args = p.parse_args(argv)
    calls, repeats, cold = (2000, 5, 3) if args.quick else (10000, 15, 9)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"eddy bench_core{' --quick' if args.quick else ''}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load {' '.join(load)}, python {platform.python_version()}, "
          f"onnxruntime {ort.__version__}, numpy {np.__version__}; medians of {repeats} interleaved repeats")
    with tempfile.TemporaryDirectory(prefix="eddy-bench-") as d:
        tmp = Path(d)
        litert, numpy_ref, loop = keras_anchors(tmp)
        bench_push(litert, numpy_ref, calls, repeats)
        bench_chunks(loop, repeats, (100, 1000) if not args.quick else (1000,))
        bench_batch(calls // 10, repeats)
        bench_cold(tmp, cold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
