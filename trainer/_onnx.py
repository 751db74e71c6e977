"""ONNX helpers shared by the export's parity checks and the int8 measurements (no tensorflow).

Graphs follow the I/O contract of :mod:`eddy.runtime.core.manifest`: ``x``, one input
per state tensor, ``y`` and one ``<name>_out`` output per state tensor, all in
normalised units.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from eddy.runtime.core.layout import STATE_OUT_SUFFIX
from eddy.runtime.core.manifest import StateSpec
from eddy.runtime.core.model import session_options

from .errors import ExportError

State = dict[str, np.ndarray]


def session(path: Path) -> ort.InferenceSession:
    """An onnxruntime session for ``path`` with the runtime's own options
    (:func:`eddy.runtime.core.model.session_options`).
    Raises :class:`~eddy.trainer.errors.ExportError` if it cannot be loaded."""
    try:
        return ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's Fail/InvalidGraph
        raise ExportError(f"{path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from None


def zero_state(state: Sequence[StateSpec], batch: int) -> State:
    """Zero state for ``batch`` streams, keyed by graph input name: ``[batch, *shape]``."""
    return {s.name: np.zeros((batch, *s.shape), np.float32) for s in state}


def output_names(state: Sequence[StateSpec]) -> list[str]:
    """``y`` and every state output, in the order :func:`run_steps` and :func:`run_chunks` unpack them."""
    return ["y", *(s.name + STATE_OUT_SUFFIX for s in state)]


def run_steps(sess: ort.InferenceSession, state: Sequence[StateSpec], x: np.ndarray) -> tuple[np.ndarray, State]:
    """One step-graph call per sample from zero state: ``x[B, T, F]`` -> ``y[B, T, O]`` and the final state."""
    outputs, st, ys = output_names(state), zero_state(state, len(x)), []
    for t in range(x.shape[1]):
        y, *new = sess.run(outputs, {"x": x[:, t], **st})  # y: [B, O]
        ys.append(y)
        st = {s.name: v for s, v in zip(state, new)}
    return np.stack(ys, axis=1), st


def run_chunks(
    sess: ort.InferenceSession, state: Sequence[StateSpec], x: np.ndarray, lengths: Iterable[int]
) -> tuple[np.ndarray, State]:
    """Chained sequence-graph calls from zero state over chunks of ``lengths`` (taken until ``x`` is
    covered): ``x[B, T, F]`` -> ``y[B, T, O]`` and the final state."""
    outputs, st, ys, t = output_names(state), zero_state(state, len(x)), [], 0
    chunks = iter(lengths)
    while t < x.shape[1]:
        n = next(chunks)
        y, *new = sess.run(outputs, {"x": x[:, t : t + n], **st})  # y: [B, n, O]
        ys.append(y)
        st = {s.name: v for s, v in zip(state, new)}
        t += n
    return np.concatenate(ys, axis=1), st


class OpCounts:
    """Op types of a graph, counted in total and inside Loop/Scan/If bodies."""

    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self.in_loops: Counter[str] = Counter()


def count_ops(graph: onnx.GraphProto, counts: OpCounts | None = None, nested: bool = False) -> OpCounts:
    """Count ``graph``'s op types, including those inside subgraphs (Loop/Scan/If bodies)."""
    counts = counts if counts is not None else OpCounts()
    for node in graph.node:
        counts.total[node.op_type] += 1
        if nested:
            counts.in_loops[node.op_type] += 1
        for attr in node.attribute:
            for body in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else []) + list(attr.graphs):
                count_ops(body, counts, nested=True)
    return counts
