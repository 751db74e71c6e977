"""Export a Keras recurrent model to ONNX with explicit state, and verify it.

Two graphs come from the same weights (I/O contract in :mod:`eddy.runtime.core.manifest`):

- ``step.onnx``: a ``tf.function`` that calls each recurrent layer's *cell*
  once, then the Dense head: ``x[B, F]``, states ``[B, U]`` -> ``y[B, O]``,
  new states. tf2onnx turns it into plain MatMul/Add/activations.
- ``sequence.onnx``: ``x[B, T, F]``, states -> ``y[B, T, O]``, new states,
  built from the weights with ONNX's native ``RNN``/``GRU``/``LSTM`` ops
  (:mod:`eddy.trainer.native_rnn`); for what that builder does not
  translate, tf2onnx's conversion of a twin of each layer with
  ``return_sequences=True, return_state=True`` (a ``Loop`` for SimpleRNN and GRU).

:func:`export_model` writes both and runs the parity checks
(:mod:`eddy.trainer.parity`) before anything is published.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eddy.runtime.core.layout import STATE_OUT_SUFFIX
from eddy.runtime.core.manifest import GraphSpec, StateSpec, sha256_file

from . import _onnx, native_rnn
from ._tf import import_tensorflow
from .errors import ExportError
from .parity import SEQUENCE_FILE, STEP_FILE, check_parity

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet tensorflow import)
import onnx  # noqa: E402
import tf2onnx  # noqa: E402

from .keras_stack import RecurrentStack, inspect_model  # noqa: E402

__all__ = ["OPSET", "SEQUENCE_FILE", "STEP_FILE", "ExportResult", "export_graphs", "export_model"]

OPSET = 17  # ONNX opset; onnxruntime 1.31 runs it, tf2onnx 1.17 converts to it

logging.getLogger("tf2onnx").setLevel(logging.ERROR)


@dataclass(frozen=True)
class ExportResult:
    """The exported graphs, the state they carry and the parity figures."""

    graphs: dict[str, GraphSpec]  # "step", "sequence"
    state: list[StateSpec]
    parity: dict[str, Any]  # the parity checks' figures, as the manifest records them
    opset: int = OPSET


def export_graphs(model: keras.Model, out_dir: str | Path, opset: int = OPSET) -> dict[str, GraphSpec]:
    """Write ``step.onnx`` and ``sequence.onnx`` for ``model`` into ``out_dir``."""
    return _export_graphs(inspect_model(model), Path(out_dir), opset)


def _export_graphs(stack: RecurrentStack, out_dir: Path, opset: int) -> dict[str, GraphSpec]:
    state_specs = [tf.TensorSpec([None, *s.shape], tf.float32, name=s.name) for s in stack.state]

    def outputs(y: Any, new_states: list[Any]) -> dict[str, Any]:
        return {"y": y, **{s.name + STATE_OUT_SUFFIX: t for s, t in zip(stack.state, new_states)}}

    step_sig = [tf.TensorSpec([None, stack.n_features], tf.float32, name="x"), *state_specs]
    twins = stack.twins  # inference copies: no dropout, dynamic time

    @tf.function(input_signature=step_sig)
    def step(x: Any, *states: Any) -> dict[str, Any]:
        h, new_states = x, []  # [B, F]
        for i, twin in enumerate(twins):
            h, s = twin.cell(h, stack.layer_states(states, i), training=False)  # [B, U]
            new_states += list(s) if isinstance(s, (list, tuple)) else [s]
        return outputs(stack.head(h), new_states)  # y: [B, O]

    seq_sig = [tf.TensorSpec([None, None, stack.n_features], tf.float32, name="x"), *state_specs]

    @tf.function(input_signature=seq_sig)
    def sequence(x: Any, *states: Any) -> dict[str, Any]:
        h, new_states = x, []  # [B, T, F]
        for i, twin in enumerate(twins):
            h, *s = twin(h, initial_state=stack.layer_states(states, i), training=False)  # [B, T, U]
            new_states += s
        return outputs(stack.head(h), new_states)  # y: [B, T, O]

    graphs = {}
    for key, fn, sig, file, dims in (
        ("step", step, step_sig, STEP_FILE, ("batch",)),
        ("sequence", sequence, seq_sig, SEQUENCE_FILE, ("batch", "time")),
    ):
        native = native_rnn.sequence_graph(stack, opset) if key == "sequence" else None
        try:
            proto = native or tf2onnx.convert.from_function(fn, input_signature=sig, opset=opset)[0]
        except Exception as e:  # tf2onnx raises many kinds; name the graph and the cause
            raise ExportError(f"tf2onnx could not convert the {key} graph: {type(e).__name__}: {e}") from e
        _name_dynamic_dims(proto, dims)
        onnx.checker.check_model(proto)
        path = out_dir / file
        onnx.save(proto, str(path))
        graphs[key] = GraphSpec(file=file, sha256=sha256_file(path), ops=sorted(_onnx.count_ops(proto.graph).total))
    return graphs


def export_model(
    model: keras.Model,
    out_dir: str | Path,
    windows: np.ndarray,
    series: np.ndarray,
    *,
    opset: int = OPSET,
    seed: int = 0,
    predictor: Any = None,
) -> ExportResult:
    """Export both graphs into ``out_dir`` and verify them (see :func:`eddy.trainer.parity.verify_parity`).

    ``predictor`` (default ``model``) is what the window check calls ``predict`` on with the graphs' inputs:
    a model with a leading ``Normalization`` layer is given one that scales the windows back first.
    """
    stack, out_dir = inspect_model(model), Path(out_dir)
    graphs = _export_graphs(stack, out_dir, opset)
    parity = check_parity(predictor or model, stack, out_dir, windows, series, seed=seed)
    return ExportResult(graphs=graphs, state=stack.state, parity=parity, opset=opset)


def _name_dynamic_dims(proto: onnx.ModelProto, names: tuple[str, ...]) -> None:
    """Give the graph's dynamic leading dims readable names (tf2onnx writes ``unk__N``)."""
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, names):
            if not dim.HasField("dim_value"):
                dim.dim_param = name

