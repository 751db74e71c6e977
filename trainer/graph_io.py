"""Make an exported graph self-contained: raw units in, raw units out (ONNX graph surgery, no tensorflow).

tf2onnx gives the *core* graph: the Keras network in model space (normalised,
transformed inputs ``x`` and outputs ``y``, plus the recurrent states).
:func:`wrap_raw` puts the normalisation and the target transform
(:mod:`eddy.trainer.transform`) around it, inside the same ONNX graph:

    x (raw) -> [log] -> [change since x_last] -> (u - input_mean) / input_std -> core
    core y -> y * target_std + target_mean -> [+ last target, exp] -> y (raw)

``x_last`` (the previous raw sample, ``[B, F]``) and ``x_seen`` (``[B, 1]``,
0 before the first sample) are extra explicit state tensors of the delta
kinds, so a zero initial state is still the start of a stream and chunked
streaming stays exact. Identity statistics (mean 0, std 1) add no node.

:func:`set_metadata` writes the essentials into the file's
``metadata_props`` so any onnxruntime binding can use the graph with nothing
else: features, targets, horizon, window, state names and shapes, I/O units.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from eddy.runtime.core.layout import STATE_OUT_SUFFIX
from eddy.runtime.core.manifest import Normalization, StateSpec

from .transform import LAST_STATE, SEEN_STATE, Transform

__all__ = ["CORE_X", "CORE_Y", "metadata", "set_metadata", "wrap_raw"]

CORE_X = "x_model"  # the core graph's input after wrapping (model space)
CORE_Y = "y_model"  # the core graph's output after wrapping (model space)
_P = "eddy_io/"  # prefix of every name the wrapper adds


def wrap_raw(core: onnx.ModelProto, kind: str, transform: Transform, norm: Normalization) -> onnx.ModelProto:
    """A copy of ``core`` (the ``"step"`` or ``"sequence"`` graph) that takes and returns raw units.

    The core's ``x``/``y`` become internal values; the wrapped graph's inputs
    are ``x``, the core's states and the transform's extra states, its outputs
    ``y`` and every state's ``_out``, in that order.
    """
    if kind not in ("step", "sequence"):
        raise ValueError(f"kind must be 'step' or 'sequence', got {kind!r}")
    model = onnx.ModelProto()
    model.CopyFrom(core)
    g = model.graph
    _rename(g, {"x": CORE_X, "y": CORE_Y})
    x_in = next(i for i in g.input if i.name == CORE_X)
    y_out = next(o for o in g.output if o.name == CORE_Y)
    time_axis = kind == "sequence"
    b = _Builder()

    # -- inputs: raw x, then the extra states after the core's ----------------
    x_raw = onnx.ValueInfoProto()
    x_raw.CopyFrom(x_in)
    x_raw.name = "x"
    inputs = [x_raw] + [i for i in g.input if i.name != CORE_X]
    batch = _dim(x_in, 0)
    for s in transform.extra_state():
        inputs.append(helper.make_tensor_value_info(s.name, TensorProto.FLOAT, [batch, *s.shape]))

    # -- pre: raw -> model space ----------------------------------------------------------
    xs = b.op("Log", ["x"]) if transform.is_log else "x"  # [B, (T,) F]
    u = xs
    if transform.is_delta:
        last = b.op("Log", [LAST_STATE]) if transform.is_log else LAST_STATE  # [B, F]
        seen = b.op("Greater", [SEEN_STATE, b.const("zero", np.float32(0))])  # [B, 1] bool
        if time_axis:
            first = b.op("Slice", [xs, b.const("s0", [0]), b.const("s1", [1]), b.const("ax1", [1])])  # [B, 1, F]
            prev0 = b.op("Where", [b.op("Unsqueeze", [seen, b.const("ax1u", [1])]),
                                   b.op("Unsqueeze", [last, b.const("ax1v", [1])]), first])  # [B, 1, F]
            head = b.op("Slice", [xs, b.const("h0", [0]), b.const("h1", [-1]), b.const("ax1h", [1])])  # [B, T-1, F]
            prev = b.op("Concat", [prev0, head], axis=1)  # [B, T, F]
        else:
            prev = b.op("Where", [seen, last, xs])  # [B, F]
        u = b.op("Sub", [xs, prev])  # change since the previous sample; 0 for a stream's first
    _affine(b, u, norm.input_mean, norm.input_std, inverse=False, out=CORE_X)

    # -- post: model space -> raw ------------------------------------------------------------
    if transform.is_delta:
        yd = _affine(b, CORE_Y, norm.target_mean, norm.target_std, inverse=True)
        base = b.op("Gather", [xs, b.const("targets", np.asarray(transform.target_index, np.int64))], axis=-1)
        ys = b.op("Add", [base, yd])
        b.op("Exp" if transform.is_log else "Identity", [ys], out="y")
        last_out = b.op("Gather", ["x", b.const("last_t", np.int64(-1))], axis=1) if time_axis else "x"
        b.op("Identity", [last_out], out=LAST_STATE + STATE_OUT_SUFFIX)
        b.op("Max", [SEEN_STATE, b.const("one", np.float32(1))], out=SEEN_STATE + STATE_OUT_SUFFIX)
    else:
        _affine(b, CORE_Y, norm.target_mean, norm.target_std, inverse=True, out="y")

    # -- outputs: y, the core's states, the extra states ---------------------------------------
    y_raw = onnx.ValueInfoProto()
    y_raw.CopyFrom(y_out)
    y_raw.name = "y"
    outputs = [y_raw] + [o for o in g.output if o.name != CORE_Y]
    for s in transform.extra_state():
        outputs.append(helper.make_tensor_value_info(s.name + STATE_OUT_SUFFIX, TensorProto.FLOAT, [batch, *s.shape]))

    core_nodes = list(g.node)
    del g.node[:]
    g.node.extend(b.pre_nodes(CORE_X) + core_nodes + b.post_nodes(CORE_X))
    g.initializer.extend(b.initializers)
    del g.input[:]
    g.input.extend(inputs)
    del g.output[:]
    g.output.extend(outputs)
    onnx.checker.check_model(model)
    return model


def metadata(
    *,
    features: Sequence[str],
    targets: Sequence[str],
    horizon: int,
    window: int,
    state: Sequence[StateSpec],
    transform: str,
    graph: str,
    fmt: str,
) -> dict[str, str]:
    """The ``metadata_props`` eddy writes into each graph (every value a string; lists as JSON)."""
    return {
        "eddy.format": fmt,
        "eddy.graph": graph,  # "step" or "sequence"
        "eddy.io": "raw",  # x and y in the data's own units; no arithmetic needed around the graph
        "eddy.features": json.dumps(list(features)),
        "eddy.targets": json.dumps(list(targets)),
        "eddy.horizon": str(horizon),  # output for sample t predicts the target at t + horizon
        "eddy.window": str(window),
        "eddy.state": json.dumps([{"name": s.name, "shape": list(s.shape), "initial": 0.0} for s in state]),
        "eddy.state_out_suffix": STATE_OUT_SUFFIX,
        "eddy.target_transform": transform,
    }


def set_metadata(model: onnx.ModelProto, props: Mapping[str, str]) -> None:
    """Replace ``model``'s ``metadata_props`` with ``props``."""
    del model.metadata_props[:]
    helper.set_model_props(model, dict(props))


class _Builder:
    """Collects the wrapper's nodes and constants, with unique prefixed names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: Any) -> str:
        arr = np.asarray(value)
        arr = arr.astype(np.float32) if arr.dtype == np.float64 else arr
        arr = arr.astype(np.int64) if np.issubdtype(arr.dtype, np.integer) else arr
        full = _P + name
        self.initializers.append(numpy_helper.from_array(arr, full))
        return full

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        self._n += 1
        out = out or f"{_P}{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{_P}{op_type}_{self._n}", **attrs))
        return out

    def pre_nodes(self, core_x: str) -> list[onnx.NodeProto]:
        """Nodes up to and including the one producing ``core_x``; the rest come after the core."""
        cut = next((i + 1 for i, n in enumerate(self.nodes) if core_x in n.output), 0)
        return self.nodes[:cut]

    def post_nodes(self, core_x: str) -> list[onnx.NodeProto]:
        cut = next((i + 1 for i, n in enumerate(self.nodes) if core_x in n.output), 0)
        return self.nodes[cut:]


def _affine(b: _Builder, v: str, mean: Sequence[float], std: Sequence[float], *, inverse: bool,
            out: str | None = None) -> str:
    """``(v - mean) / std``, or ``v * std + mean`` with ``inverse``; identity statistics add only an Identity."""
    mean_a, std_a = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if not np.any(mean_a) and np.all(std_a == 1):
        return b.op("Identity", [v], out=out) if out else v
    tag = "t" if inverse else "x"
    m, s = b.const(f"{tag}_mean", mean_a), b.const(f"{tag}_std", std_a)
    if inverse:
        return b.op("Add", [b.op("Mul", [v, s]), m], out=out)
    return b.op("Div", [b.op("Sub", [v, m]), s], out=out)


def _rename(g: onnx.GraphProto, names: Mapping[str, str]) -> None:
    """Rename values in ``g`` and every subgraph that does not define them itself."""
    for v in [*g.input, *g.output, *g.value_info]:
        if v.name in names:
            v.name = names[v.name]
    for node in g.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
        for attr in node.attribute:
            for body in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else []) + list(attr.graphs):
                local = {v.name for v in body.input} | {o for n in body.node for o in n.output}
                inner = {k: v for k, v in names.items() if k not in local}
                if inner:
                    _rename(body, inner)


def _dim(v: onnx.ValueInfoProto, i: int) -> str | int:
    d = v.type.tensor_type.shape.dim[i]
    return d.dim_value if d.HasField("dim_value") else (d.dim_param or "batch")
