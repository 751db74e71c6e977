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
streaming stays exact. ``seasonal_delta`` and ``double_delta`` carry ``x_season`` (the last
``season`` raw samples, ``[B, S, F]``, ``S + 1`` for double_delta: a shift buffer) instead of ``x_last``.
Identity statistics (mean 0, std 1) add no node.

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

from .transform import LAST_STATE, SEASON_STATE, SEEN_STATE, Transform

__all__ = ["CORE_X", "CORE_Y", "WINDOW_STATE", "metadata", "set_metadata", "window_semantics", "wrap_raw"]

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
    base_rows = ""  # seasonal kinds: what a zero change predicts, [B, (T,) F]
    if transform.is_seasonal:
        u, base_rows = _season_buffer(b, transform, time_axis)
    elif transform.is_delta:
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
    if transform.is_seasonal:
        yd = _affine(b, CORE_Y, norm.target_mean, norm.target_std, inverse=True)
        base = b.op("Gather", [base_rows, b.const("targets", np.asarray(transform.target_index, np.int64))], axis=-1)
        b.op("Add", [base, yd], out="y")
        b.op("Max", [SEEN_STATE, b.const("one", np.float32(1))], out=SEEN_STATE + STATE_OUT_SUFFIX)
    elif transform.is_delta:
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


def _season_buffer(b: _Builder, transform: Transform, time_axis: bool) -> tuple[str, str]:
    """The seasonal kinds' pre-processing: ``(model-space input [B, (T,) F], base rows [B, (T,) F])``; writes the
    shifted buffer to ``x_season_out``. A stream's first sample fills the buffer (row 0 stands in for rows < 0).

    seasonal_delta: ``x[t] - x[t-S]`` and base ``x[t+h-S]``; double_delta: ``(x[t] - x[t-1]) - (x[t-S] - x[t-S-1])``
    and base ``x[t] + (x[t+h-S] - x[t-S])``."""
    season, h, rows, end = transform.season, transform.horizon, transform.buffer_rows, np.iinfo(np.int64).max
    x3 = "x" if time_axis else b.op("Unsqueeze", ["x", b.const("sd_ax1", [1])])  # [B, T, F] (T = 1 for a step)
    seen = b.op("Unsqueeze", [b.op("Greater", [SEEN_STATE, b.const("zero", np.float32(0))]),
                              b.const("sd_ax2", [2])])  # [B, 1, 1] bool
    first = b.op("Slice", [x3, b.const("sd_f0", [0]), b.const("sd_f1", [1]), b.const("sd_axf", [1])])  # [B, 1, F]
    fill = b.op("Expand", [first, b.const("sd_shape", [1, rows, 1])])  # [B, L, F]
    buf = b.op("Where", [seen, SEASON_STATE, fill])  # [B, L, F]: rows t-L .. t-1 before the chunk's first row t
    cat = b.op("Concat", [buf, x3], axis=1)  # [B, L+T, F]: the chunk's row i at L+i

    def back(lag: int, tag: str) -> str:
        """``x[t - lag]`` for every row t of the chunk, ``[B, T, F]`` (``0 <= lag <= L``): ``cat[L-lag : L+T-lag]``."""
        return b.op("Slice", [cat, b.const(f"sd_{tag}0", [rows - lag]), b.const(f"sd_{tag}1", [-lag if lag else end]),
                              b.const(f"sd_{tag}ax", [1])])

    b.op("Slice", [cat, b.const("sd_n0", [-rows]), b.const("sd_n1", [end]), b.const("sd_axn", [1])],
         out=SEASON_STATE + STATE_OUT_SUFFIX)  # the last L rows
    ahead = back(season - h, "b")  # x[t+h-S]
    year_ago = back(season, "p")  # x[t-S]
    if transform.is_double:
        u = b.op("Sub", [b.op("Sub", [x3, back(1, "q")]), b.op("Sub", [year_ago, back(season + 1, "r")])])
        base = b.op("Add", [x3, b.op("Sub", [ahead, year_ago])])
    else:
        u, base = b.op("Sub", [x3, year_ago]), ahead
    if not time_axis:
        u, base = (b.op("Squeeze", [v, b.const(f"sd_sq{i}", [1])]) for i, v in enumerate((u, base)))
    return u, base


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


WINDOW_STATE = "window"  # window semantics: the state is the last `window` raw samples, [B, W, F]


def window_semantics(seq_raw: onnx.ModelProto, kind: str, window: int, n_features: int,
                     state: list[StateSpec]) -> onnx.ModelProto:
    """A ``kind`` graph whose every answer depends only on the last ``window`` samples.

    ``seq_raw`` is a self-contained sequence graph (raw in/out, recurrent ``state``).
    Each output runs it from zero state over the window ending at that sample
    (zeros before a stream's first samples), so once ``window`` samples are in
    it equals ``model.predict`` on that window. The only state is
    :data:`WINDOW_STATE`, the raw window buffer.
    """
    model = onnx.ModelProto()
    model.CopyFrom(seq_raw)
    g = model.graph
    p = _P + "w/"
    _rename(g, {n: p + n for n in ["x", "y", *(s.name for s in state), *(s.name + STATE_OUT_SUFFIX for s in state)]})
    y_info = next(o for o in g.output if o.name == p + "y")
    n_targets = y_info.type.tensor_type.shape.dim[-1].dim_value
    b = _Builder()
    x = b.op("Unsqueeze", ["x", b.const("ax1", [1])]) if kind == "step" else "x"  # [B, T, F]
    cat = b.op("Concat", [WINDOW_STATE, x], axis=1)  # [B, W+T, F]
    shape_x = b.op("Shape", [x])  # [3]
    t = b.op("Squeeze", [b.op("Slice", [shape_x, b.const("i1", [1]), b.const("i2", [2])]), b.const("ax0", [0])])
    rows = b.op("Range", [b.const("one_i", np.int64(1)), b.op("Add", [t, b.const("one_j", np.int64(1))]),
                          b.const("one_k", np.int64(1))])  # [T]: t + 1
    idx = b.op("Add", [b.op("Unsqueeze", [rows, b.const("ax1b", [1])]),
                       b.const("cols", np.arange(window, dtype=np.int64)[None])])  # [T, W]
    windows = b.op("Gather", [cat, idx], axis=1)  # [B, T, W, F]
    b.op("Reshape", [windows, b.const("flat", [-1, window, n_features])], out=p + "x")  # [B*T, W, F]
    batch = b.op("Slice", [b.op("Shape", [p + "x"]), b.const("j0", [0]), b.const("j1", [1])])  # [1]: B*T
    for s in state:
        dims = b.op("Concat", [batch, b.const(f"dims_{s.name}", list(s.shape))], axis=0)
        b.nodes.append(helper.make_node("ConstantOfShape", [dims], [p + s.name],
                                        value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])))
    pre = list(b.nodes)
    b.nodes.clear()
    last = b.op("Gather", [p + "y", b.const("last", np.int64(-1))], axis=1)  # [B*T, O]
    out_shape = b.op("Concat", [b.op("Slice", [shape_x, b.const("k0", [0]), b.const("k2", [2])]),
                                b.const("o", [n_targets])], axis=0)  # [B, T, O]
    y3 = b.op("Reshape", [last, out_shape])
    if kind == "step":
        b.op("Squeeze", [y3, b.const("ax1c", [1])], out="y")
    else:
        b.op("Identity", [y3], out="y")
    b.op("Slice", [cat, b.const("w0", [-window]), b.const("w1", [np.iinfo(np.int64).max]), b.const("ax1d", [1])],
         out=WINDOW_STATE + STATE_OUT_SUFFIX)
    core_nodes = list(g.node)
    del g.node[:]
    g.node.extend(pre + core_nodes + b.nodes)
    g.initializer.extend(b.initializers)
    x_dims = ["batch", n_features] if kind == "step" else ["batch", "time", n_features]
    y_dims = ["batch", n_targets] if kind == "step" else ["batch", "time", n_targets]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims),
                    helper.make_tensor_value_info(WINDOW_STATE, TensorProto.FLOAT, ["batch", window, n_features])])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("y", TensorProto.FLOAT, y_dims),
                     helper.make_tensor_value_info(WINDOW_STATE + STATE_OUT_SUFFIX, TensorProto.FLOAT,
                                                   ["batch", window, n_features])])
    del g.value_info[:]
    onnx.checker.check_model(model)
    return model
