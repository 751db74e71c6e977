"""Dynamically quantised int8 twins of the exported graphs, and what they cost.

:func:`quantize_graphs` runs onnxruntime's own ``quantize_dynamic`` (int8
weights, activations quantised per tensor on every call) over ``step.onnx``
and ``sequence.onnx`` and writes ``step_int8.onnx`` and ``sequence_int8.onnx``
next to them. The runtime loads them with ``eddy.runtime.load(path,
precision="int8")``.

It also measures, rather than assumes, what int8 buys:

- file sizes, float vs int8;
- which ops were quantised: ``MatMulInteger`` (a MatMul with int8 weights),
  ``DynamicQuantizeLSTM`` (the native LSTM op), and the ops left float
  (onnxruntime has no int8 ``RNN`` or ``GRU``), counting MatMuls inside
  ``Loop`` bodies separately. In graphs made by tf2onnx, it hands a
  SimpleRNN's or GRU's recurrent weights to its ``Loop`` as loop-carried
  values rather than initializers, so ``quantize_dynamic`` cannot see them as
  constants and leaves those MatMuls float; the step graph's are quantised;
- the max abs output difference int8 vs float over ``check_x`` (normalised
  units), each graph chained from zero state, plus the two ways int8 breaks
  eddy's exactness promise: int8 step-by-step vs int8 whole-sequence
  (chunking) and one stream alone vs batched with another (batching), since
  activation scales are computed per call over the whole tensor;
- the step graph's per-call latency at batch 1, one thread, float vs int8.

Nothing here is asserted: the figures and their ``notes`` say when int8 does
not help (a small model, float MatMuls inside a Loop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from eddy.runtime.core.manifest import GraphSpec, StateSpec, sha256_file

from . import _onnx
from .errors import ExportError

__all__ = ["INT8_FILES", "LATENCY_CALLS", "QUANTIZED_OPS", "REDUCE_RANGE", "quantize_graphs"]

INT8_FILES = {"step": "step_int8.onnx", "sequence": "sequence_int8.onnx"}  # float key -> int8 file
LATENCY_CALLS = 2000  # timed step-graph calls per precision (median reported)
# 7-bit weights: x86 AVX2 without VNNI multiplies u8 activations by s8 weights with VPMADDUBSW,
# which saturates int16 sums; onnxruntime's docs advise reduce_range there. Measured on the
# SimpleRNN(50) default model (309 chained steps): max abs error 0.20 -> 0.05 normalised units.
REDUCE_RANGE = True
_WARMUP_CALLS = 200  # untimed calls first: allocator and kernel caches
# Ops that carry int8 weights after quantize_dynamic (DynamicQuantizeLinear only quantises activations).
QUANTIZED_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "ConvInteger", "DynamicQuantizeLSTM", "QAttention", "QGemm")
_FLOAT_WEIGHT_OPS = ("MatMul", "Gemm", "LSTM", "GRU", "RNN")  # float ops int8 could have replaced


def quantize_graphs(
    version_dir: str | Path,
    graphs: dict[str, GraphSpec],
    check_x: np.ndarray,
    state_spec: Sequence[StateSpec],
    *,
    latency_calls: int = LATENCY_CALLS,
) -> tuple[dict[str, GraphSpec], dict[str, Any]]:
    """Write int8 versions of the ``step`` and ``sequence`` graphs and measure them.

    ``version_dir`` holds the float graphs named by ``graphs["step"]`` and
    ``graphs["sequence"]``; ``check_x`` is a normalised series ``[T, F]``
    (e.g. the one the parity checks ran), ``state_spec`` the manifest's state
    tensors. Returns the new graphs keyed ``"step_int8"`` and
    ``"sequence_int8"`` (for ``manifest.graphs``) and the figures (for
    ``manifest.metrics["int8"]`` and ``report["quantization"]``). Raises
    :class:`~eddy.trainer.errors.ExportError` if quantisation or a check run fails.
    """
    version_dir = Path(version_dir)
    x = np.asarray(check_x, np.float32)  # [T, F]
    if x.ndim != 2 or len(x) < 2 or not np.isfinite(x).all():
        raise ExportError(f"int8 check series must be finite and shaped [T>=2, F], got shape {list(x.shape)}")
    if latency_calls < 1:
        raise ExportError(f"latency_calls must be positive, got {latency_calls}")
    new: dict[str, GraphSpec] = {}
    per_graph: dict[str, dict[str, Any]] = {}
    for key in ("step", "sequence"):
        spec = graphs.get(key)
        if spec is None:
            raise ExportError(f"cannot quantise: no {key!r} graph to start from")
        src, dst = version_dir / spec.file, version_dir / INT8_FILES[key]
        _quantize(src, dst, key)
        float_ops, int8_ops = _onnx.count_ops(onnx.load(str(src)).graph), _onnx.count_ops(onnx.load(str(dst)).graph)
        new[f"{key}_int8"] = GraphSpec(file=dst.name, sha256=sha256_file(dst), ops=sorted(int8_ops.total))
        per_graph[key] = {
            "file": dst.name,
            "float_bytes": src.stat().st_size,
            "int8_bytes": dst.stat().st_size,
            "size_ratio": round(dst.stat().st_size / src.stat().st_size, 4),
            "quantized_ops": {op: int8_ops.total[op] for op in QUANTIZED_OPS if int8_ops.total[op]},
            "float_weight_ops": {op: int8_ops.total[op] for op in _FLOAT_WEIGHT_OPS if int8_ops.total[op]},
            "float_weight_ops_in_loops": {op: int8_ops.in_loops[op] for op in _FLOAT_WEIGHT_OPS
                                          if int8_ops.in_loops[op]},
            "float_graph_weight_ops": {op: float_ops.total[op] for op in _FLOAT_WEIGHT_OPS if float_ops.total[op]},
        }

    sessions = {name: _onnx.session(version_dir / file) for name, file in (
        ("step", graphs["step"].file), ("sequence", graphs["sequence"].file),
        ("step_int8", INT8_FILES["step"]), ("sequence_int8", INT8_FILES["sequence"]))}
    runs = _Runs(sessions, list(state_spec))
    batch = np.stack([x, x[::-1] * 2.0])  # [2, T, F]: a second, different stream for the batching check
    float_step, int8_step = runs.steps("step", batch[:1]), runs.steps("step_int8", batch[:1])  # [1, T, O]
    float_seq, int8_seq = runs.sequence("sequence", batch[:1]), runs.sequence("sequence_int8", batch[:1])
    per_graph["step"]["max_abs_diff"] = _max_abs(int8_step, float_step)
    per_graph["sequence"]["max_abs_diff"] = _max_abs(int8_seq, float_seq)
    figures: dict[str, Any] = {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "QInt8",
        "reduce_range": REDUCE_RANGE,
        "onnxruntime": ort.__version__,
        "units": "normalised",  # every *_diff figure is in normalised target units
        "check_steps": int(len(x)),
        "graphs": per_graph,
        "max_abs_diff": max(per_graph["step"]["max_abs_diff"], per_graph["sequence"]["max_abs_diff"]),
        "float_step_vs_sequence_max_abs_diff": _max_abs(float_step, float_seq),
        "int8_step_vs_sequence_max_abs_diff": _max_abs(int8_step, int8_seq),
        "int8_batching_max_abs_diff": _max_abs(runs.steps("step_int8", batch)[:1], int8_step),
        "latency_us": {
            "step_float": runs.latency_us("step", x[0], latency_calls),
            "step_int8": runs.latency_us("step_int8", x[0], latency_calls),
            "batch": 1,
            "threads": 1,
            "calls": latency_calls,
            "statistic": "median",
        },
    }
    figures["notes"] = _notes(figures)
    return new, figures


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Silence quantize_dynamic's root-logger advice ("consider pre-processing")."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _quantize(src: Path, dst: Path, key: str) -> None:
    # quant_pre_process (shape inference + optimisation) was measured on these graphs: it
    # quantises exactly the same nodes and makes the files slightly larger, so it is not used.
    try:
        with _quiet_root_logger():
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, reduce_range=REDUCE_RANGE)
    except Exception as e:  # onnxruntime.quantization raises many kinds; name the graph and the cause
        dst.unlink(missing_ok=True)
        raise ExportError(f"int8 quantisation of the {key} graph failed: {type(e).__name__}: {e}") from e


class _Runs:
    """Chained runs of one model's sessions from zero state."""

    def __init__(self, sessions: dict[str, ort.InferenceSession], state: list[StateSpec]) -> None:
        self.sessions = sessions
        self.state = state
        self.outputs = _onnx.output_names(state)

    def steps(self, name: str, x: np.ndarray) -> np.ndarray:
        """One step-graph call per sample: ``x[B, T, F]`` -> ``y[B, T, O]``."""
        return _onnx.run_steps(self.sessions[name], self.state, x)[0]

    def sequence(self, name: str, x: np.ndarray) -> np.ndarray:
        """One sequence-graph call over the whole series: ``x[B, T, F]`` -> ``y[B, T, O]``."""
        return _onnx.run_chunks(self.sessions[name], self.state, x, [x.shape[1]])[0]

    def latency_us(self, name: str, x0: np.ndarray, calls: int) -> float:
        """Median wall time of one step-graph call at batch 1, microseconds."""
        sess, feeds = self.sessions[name], {"x": x0[None], **_onnx.zero_state(self.state, 1)}  # x: [1, F]
        for _ in range(_WARMUP_CALLS):
            sess.run(self.outputs, feeds)
        times = np.empty(calls, np.int64)
        for i in range(calls):
            started = time.perf_counter_ns()
            sess.run(self.outputs, feeds)
            times[i] = time.perf_counter_ns() - started
        return round(float(np.median(times)) / 1000.0, 2)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0.0))


def _notes(f: dict[str, Any]) -> list[str]:
    """Plain-language findings from the figures: when int8 does not help, say so."""
    notes = []
    for key, g in f["graphs"].items():
        in_loops = sum(g["float_weight_ops_in_loops"].values())
        if in_loops:
            notes.append(
                f"{key}: {in_loops} MatMul(s) inside a Loop body stay float32 (tf2onnx passes the recurrent "
                f"weights into the Loop as loop-carried values, not initializers, so quantize_dynamic cannot "
                f"quantise them); only {sum(g['quantized_ops'].values())} op(s) outside the Loop are int8")
        native = {op: n for op, n in g["float_weight_ops"].items() if op in ("RNN", "GRU")}
        if native:
            notes.append(f"{key}: {', '.join(native)} stay float32: onnxruntime's quantize_dynamic has an int8 "
                         f"kernel for the native LSTM op only; {sum(g['quantized_ops'].values())} other op(s) are int8")
        if not g["quantized_ops"]:
            notes.append(f"{key}: quantize_dynamic found nothing to quantise")
        if g["size_ratio"] > 1.0:
            notes.append(f"{key}: the int8 file is larger than the float one ({g['int8_bytes']} vs "
                         f"{g['float_bytes']} bytes): the quantisation nodes added outweigh the weights saved")
        elif g["size_ratio"] > 0.8:
            notes.append(f"{key}: the int8 file is barely smaller ({g['int8_bytes']} vs {g['float_bytes']} "
                         f"bytes): most of it is not quantisable weight")
    lat = f["latency_us"]
    if lat["step_int8"] >= 0.95 * lat["step_float"]:
        notes.append(f"step: int8 is not faster at batch 1 ({lat['step_int8']:.1f} us vs {lat['step_float']:.1f} us "
                     f"float per call): quantising activations on every call costs more than the integer "
                     f"MatMuls save at this size")
    notes.append(
        f"activations are quantised per tensor on every call, so int8 outputs depend on chunking "
        f"(step vs sequence: max abs diff {f['int8_step_vs_sequence_max_abs_diff']:.2g}, float "
        f"{f['float_step_vs_sequence_max_abs_diff']:.2g}) and on which streams share a batch "
        f"({f['int8_batching_max_abs_diff']:.2g}); eddy's 1e-5 streaming exactness holds for float32 only")
    return notes
