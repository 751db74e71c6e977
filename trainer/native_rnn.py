"""The sequence graph from ONNX's native recurrent ops, built straight from the Keras weights.

tf2onnx turns a SimpleRNN or a Keras 3 GRU over a dynamic time axis into an
ONNX ``Loop`` whose body runs a dozen small nodes per time step (~78 k
samples/s for the seed SimpleRNN(50)); ONNX's own ``RNN``, ``GRU`` and
``LSTM`` ops run the whole recurrence in one kernel (~10x that) and are also
what ONNX's reference evaluator and other runtimes agree on. This module
writes the graph with :mod:`onnx.helper`:

    x [B, T, F] -> Transpose -> [T, B, F] -> (RNN|GRU|LSTM) x layers -> [T, B, U]
      -> MatMul + Add (the Dense head) -> [T, B, O] -> Transpose -> y [B, T, O]

with the I/O contract of :mod:`eddy.runtime.core.manifest` (state inputs
``h<i>``/``c<i>`` ``[B, U]``, outputs ``<name>_out``). Keras -> ONNX weight
layout: Keras kernels are ``[in, k*U]`` (gates side by side), ONNX wants
``W [1, k*U, in]``; gate orders are SimpleRNN ``h``, GRU ``z r h`` (the same
in both), LSTM Keras ``i f c o`` vs ONNX ``i o f c``. Keras 3's GRU default
``reset_after=True`` (reset gate applied after the recurrent matmul, two
bias vectors) is ONNX's ``linear_before_reset=1``.

:func:`sequence_graph` returns None for what it does not translate
(activations other than tanh/sigmoid/relu/linear); the export then keeps
tf2onnx's graph. Parity is checked by the export either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from eddy.runtime.core.layout import STATE_OUT_SUFFIX

__all__ = ["sequence_graph"]

# Keras activation name -> ONNX recurrent-op activation name.
_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu"}
_HEAD_ACTIVATIONS = {"linear": None, "tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu"}
_LSTM_ORDER = (0, 3, 1, 2)  # ONNX gate i, o, f, c <- Keras gate index (Keras order i, f, c, o)


def _name(fn: Any) -> str:
    return fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))


def _array(variable: Any) -> np.ndarray:
    return np.asarray(variable.numpy(), np.float32)


def _gates(w: np.ndarray, k: int, order: tuple[int, ...] | None) -> np.ndarray:
    """Keras ``[in, k*U]`` -> ONNX ``[1, k*U, in]``, gates reordered to ``order``."""
    blocks = np.split(np.asarray(w, np.float32), k, axis=-1)  # k x [in, U]
    return np.concatenate([blocks[i] for i in (order or range(k))], axis=-1).T[None]


def _layer(layer: Any, i: int, x: str, nodes: list, inits: list, stack: Any) -> tuple[str, list[str]] | None:
    """Nodes for recurrent layer ``i`` over ``x [T, B, in]``; returns its output ``[T, B, U]`` and state outputs."""
    cell, u = layer.cell, int(layer.units)
    kind = {"simple_rnn": ("RNN", 1), "gru": ("GRU", 3), "lstm": ("LSTM", 4)}[stack.cell]
    op, k = kind
    act = _ACTIVATIONS.get(_name(cell.activation))
    rec = _ACTIVATIONS.get(_name(getattr(cell, "recurrent_activation", "sigmoid")))
    if act is None or rec is None:
        return None
    order = _LSTM_ORDER if op == "LSTM" else None
    w, r = _gates(_array(cell.kernel), k, order), _gates(_array(cell.recurrent_kernel), k, order)
    two = op == "GRU" and getattr(cell, "reset_after", False)  # [2, 3U] biases: input and recurrent
    bias = _array(cell.bias) if cell.bias is not None else np.zeros(k * u * (2 if two else 1), np.float32)
    wb, rb = bias.reshape(2, k * u) if two else (bias.reshape(k * u), np.zeros(k * u, np.float32))
    attrs: dict[str, Any] = {"hidden_size": u, "direction": "forward"}
    if two:
        attrs["linear_before_reset"] = 1
    if order is not None:
        wb = np.concatenate([np.split(wb, k)[j] for j in order])
    attrs["activations"] = {"RNN": [act], "GRU": [rec, act], "LSTM": [rec, act, act]}[op]
    p = f"l{i}_"
    inits += [numpy_helper.from_array(w, p + "W"), numpy_helper.from_array(r, p + "R"),
              numpy_helper.from_array(np.concatenate([wb, rb])[None].astype(np.float32), p + "B")]
    names = [s.name for s in stack.layer_states(stack.state, i)]  # "h<i>" (, "c<i>")
    for n in names:
        nodes.append(helper.make_node("Unsqueeze", [n, "axes0"], [p + n + "_init"]))  # [1, B, U]
    ins = [x, p + "W", p + "R", p + "B", "", p + names[0] + "_init"]
    outs = [p + "Y", p + "Y_h"]
    if op == "LSTM":
        ins.append(p + names[1] + "_init")
        outs.append(p + "Y_c")
    nodes.append(helper.make_node(op, ins, outs, name=f"{p}{op}", **attrs))
    for n, out in zip(names, outs[1:]):
        nodes.append(helper.make_node("Squeeze", [out, "axes0"], [n + STATE_OUT_SUFFIX]))  # [B, U]
    nodes.append(helper.make_node("Squeeze", [p + "Y", "axes1"], [p + "seq"]))  # [T, 1, B, U] -> [T, B, U]
    return p + "seq", names


def sequence_graph(stack: Any, opset: int) -> onnx.ModelProto | None:
    """The sequence graph of ``stack`` (an ``eddy.trainer`` ``RecurrentStack``) with native recurrent ops.

    Returns None when a layer uses something this builder does not translate.
    """
    head_act = _HEAD_ACTIVATIONS.get(_name(stack.head.activation), "?")
    if head_act == "?":
        return None
    nodes = [helper.make_node("Transpose", ["x"], ["x_tbf"], perm=[1, 0, 2])]  # [T, B, F]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "axes0"),
             numpy_helper.from_array(np.array([1], np.int64), "axes1")]
    h = "x_tbf"
    for i, layer in enumerate(stack.twins):
        built = _layer(layer, i, h, nodes, inits, stack)
        if built is None:
            return None
        h = built[0]
    inits.append(numpy_helper.from_array(_array(stack.head.kernel), "head_W"))  # [U, O]
    nodes.append(helper.make_node("MatMul", [h, "head_W"], ["head_mm"]))  # [T, B, O]
    last = "head_mm"
    if stack.head.bias is not None:
        inits.append(numpy_helper.from_array(_array(stack.head.bias), "head_b"))  # [O]
        nodes.append(helper.make_node("Add", [last, "head_b"], ["head_add"]))
        last = "head_add"
    if head_act is not None:
        nodes.append(helper.make_node(head_act, [last], ["head_act"]))
        last = "head_act"
    nodes.append(helper.make_node("Transpose", [last], ["y"], perm=[1, 0, 2]))  # [B, T, O]
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("x", f32, ["batch", "time", stack.n_features])]
    outputs = [helper.make_tensor_value_info("y", f32, ["batch", "time", stack.n_targets])]
    for s in stack.state:
        inputs.append(helper.make_tensor_value_info(s.name, f32, ["batch", *s.shape]))
        outputs.append(helper.make_tensor_value_info(s.name + STATE_OUT_SUFFIX, f32, ["batch", *s.shape]))
    graph = helper.make_graph(nodes, "eddy_sequence", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="eddy")
    onnx.checker.check_model(model, full_check=True)
    return model
