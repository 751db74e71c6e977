"""Export a trained Keras model to ONNX with explicit state, and verify it.

Two graphs come from the same weights (I/O contract in :mod:`runtime.manifest`):

- ``step.onnx``: a ``tf.function`` that calls each recurrent layer's *cell*
  once, then the Dense head: ``x[B, F]``, states ``[B, U]`` -> ``y[B, O]``,
  new states. tf2onnx turns it into plain MatMul/Add/activations.
- ``sequence.onnx``: a twin of each recurrent layer with
  ``return_sequences=True, return_state=True`` over a dynamic time axis:
  ``x[B, T, F]``, states -> ``y[B, T, O]``, new states. tf2onnx makes a
  ``Loop`` of SimpleRNN and GRU and the native ``LSTM`` op of LSTM.

:func:`verify_parity` checks the graphs against Keras with onnxruntime before
anything is published; :func:`export_model` does both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from eddy.runtime.core.manifest import STATE_OUT_SUFFIX, GraphSpec, StateSpec, sha256_file

from . import _onnx
from ._tf import import_tensorflow
from .errors import ExportError, ParityError, UnsupportedModelError

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet tensorflow import)
import onnx  # noqa: E402
import tf2onnx  # noqa: E402

__all__ = [
    "OPSET",
    "TOLERANCE",
    "ExportResult",
    "RecurrentStack",
    "export_graphs",
    "export_model",
    "inspect_model",
    "verify_parity",
]

OPSET = 17  # ONNX opset; onnxruntime 1.31 runs it, tf2onnx 1.17 converts to it
TOLERANCE = 1e-5  # max abs error allowed in the parity checks, normalised units
STEP_FILE = "step.onnx"
SEQUENCE_FILE = "sequence.onnx"

# Keras layer class name -> manifest cell name, and the state tensors one layer carries.
_CELLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "SimpleRNN": ("simple_rnn", ("h",)),
    "GRU": ("gru", ("h",)),
    "LSTM": ("lstm", ("h", "c")),  # the LSTM cell's own state order: [h, c]
}

# Layers that are identities at inference: skipped by the export.
_INFERENCE_IDENTITIES: tuple[type, ...] = tuple(
    getattr(keras.layers, name)
    for name in ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                 "ActivityRegularization")
    if hasattr(keras.layers, name)
)
# Why a layer cannot be exported, for the common ones.
_UNSUPPORTED: dict[str, str] = {
    "Bidirectional": "it reads each window backwards as well, which a stream fed one sample at a time cannot do",
    "Conv1D": "convolutions need a window of future samples; eddy streams recurrent state only",
    "Attention": "attention looks at the whole window at once; eddy streams recurrent state only",
    "MultiHeadAttention": "attention looks at the whole window at once; eddy streams recurrent state only",
    "AdditiveAttention": "attention looks at the whole window at once; eddy streams recurrent state only",
    "TimeDistributed": "wrap the head as a plain Dense layer after the last recurrent layer",
    "RNN": "generic RNN layers with custom cells are not supported; use SimpleRNN, LSTM or GRU",
    "ConvLSTM1D": "convolutional recurrent cells are not supported; use SimpleRNN, LSTM or GRU",
    "Masking": "masking changes the state update per sample; stream only the samples you have instead",
    "Sequential": "nested models are not supported; build one flat model",
    "Functional": "nested models are not supported; build one flat model",
}

logging.getLogger("tf2onnx").setLevel(logging.ERROR)


@dataclass(frozen=True)
class RecurrentStack:
    """What the export needs to know about a ``RNN x layers -> Dense`` Keras model."""

    cell: str  # manifest cell name
    units: int  # units per recurrent layer
    n_features: int  # F
    n_targets: int  # O
    rnn: list[Any]  # the Keras recurrent layers, input to output
    head: Any  # the Dense layer
    state: list[StateSpec]  # every state tensor, layer by layer

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        """Zero state for ``batch`` streams, keyed by graph input name."""
        return _onnx.zero_state(self.state, batch)

    def layer_states(self, states: Sequence[Any], i: int) -> list[Any]:
        """Layer ``i``'s slice of ``states`` (all layers' state tensors, in :attr:`state` order)."""
        per_layer = len(self.state) // len(self.rnn)  # state tensors per layer
        return list(states[i * per_layer : (i + 1) * per_layer])

    @cached_property
    def twins(self) -> list[Any]:
        """Inference copies of :attr:`rnn` (no dropout, dynamic time); see :func:`_sequence_twin`."""
        return [_sequence_twin(layer) for layer in self.rnn]


@dataclass(frozen=True)
class ExportResult:
    """The exported graphs, the state they carry and the parity figures."""

    graphs: dict[str, GraphSpec]  # "step", "sequence"
    state: list[StateSpec]
    parity: dict[str, float]  # tolerance and each check's max abs error


def inspect_model(model: keras.Model) -> RecurrentStack:
    """Describe a stack of SimpleRNN/LSTM/GRU layers of one kind with a Dense head.

    Dropout-like layers (identities at inference) may sit anywhere in
    between; they are left out of the exported graphs. Raises
    :class:`~eddy.trainer.errors.UnsupportedModelError` naming what is unsupported.
    """
    try:
        n_inputs, n_outputs = len(model.inputs), len(model.outputs)
    except (AttributeError, ValueError):
        raise UnsupportedModelError("unsupported model: it is not built (give it an input shape)") from None
    if n_inputs != 1 or n_outputs != 1:
        raise UnsupportedModelError(f"unsupported model: expected one input and one output, found {n_inputs} and {n_outputs}")
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, (keras.layers.InputLayer, *_INFERENCE_IDENTITIES)):
            continue
        if kind not in _CELLS and not isinstance(layer, keras.layers.Dense):
            why = _UNSUPPORTED.get(kind, "eddy exports only SimpleRNN, LSTM or GRU layers with a Dense head")
            raise UnsupportedModelError(f"unsupported layer {layer.name!r} ({kind}): {why}")
        layers.append(layer)
    if len(layers) < 2 or not isinstance(layers[-1], keras.layers.Dense):
        raise UnsupportedModelError("unsupported model: expected recurrent layers followed by one Dense layer")
    rnn, head = layers[:-1], layers[-1]
    for layer in rnn:
        if isinstance(layer, keras.layers.Dense):
            raise UnsupportedModelError(f"unsupported model: Dense layer {layer.name!r} sits between recurrent layers; "
                              "only one Dense layer, the last, is supported")
    kinds = {type(layer).__name__ for layer in rnn}
    if len(kinds) != 1:
        raise UnsupportedModelError(
            f"unsupported model: recurrent layers must all be one of {', '.join(_CELLS)}, found {', '.join(sorted(kinds))}"
        )
    cell, state_kinds = _CELLS[kinds.pop()]
    units = {layer.units for layer in rnn}
    if len(units) != 1:
        raise UnsupportedModelError(f"unsupported model: recurrent layers must have equal units, found {sorted(units)}")
    for i, layer in enumerate(rnn):
        last = i == len(rnn) - 1
        if layer.go_backwards or layer.return_state or layer.return_sequences == last:
            raise UnsupportedModelError(
                f"unsupported model: layer {layer.name!r} must run forwards and return "
                f"{'its last output' if last else 'its whole sequence'}, without its state"
                + (" (a Dense head over every time step is not supported)" if last and layer.return_sequences else "")
            )
    (u,) = units
    return RecurrentStack(
        cell=cell,
        units=u,
        n_features=int(model.input_shape[-1]),
        n_targets=int(head.units),
        rnn=rnn,
        head=head,
        state=[StateSpec(f"{k}{i}", [u]) for i in range(len(rnn)) for k in state_kinds],
    )


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
        try:
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=sig, opset=opset)
        except Exception as e:  # tf2onnx raises many kinds; name the graph and the cause
            raise ExportError(f"tf2onnx could not convert the {key} graph: {type(e).__name__}: {e}") from e
        _name_dynamic_dims(proto, dims)
        onnx.checker.check_model(proto)
        path = out_dir / file
        onnx.save(proto, str(path))
        graphs[key] = GraphSpec(file=file, sha256=sha256_file(path), ops=sorted(_onnx.count_ops(proto.graph).total))
    return graphs


def verify_parity(
    model: keras.Model,
    out_dir: str | Path,
    windows: np.ndarray,
    series: np.ndarray,
    *,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> dict[str, float]:
    """Check the exported graphs in ``out_dir`` against Keras with onnxruntime.

    - ``window_vs_predict``: for ``windows`` ``[N, W, F]``, the sequence graph's
      last output from zero state vs ``model.predict``;
    - ``chunked_sequence``: ``series`` ``[T, F]`` (and its reverse, as a batch
      of two) cut into random chunks, chained sequence-graph calls vs Keras'
      per-step outputs over the whole sequence from zero state;
    - ``chained_step``: the same with one step-graph call per sample.

    The chained checks compare the final state too. Returns each check's max
    abs error and the tolerance; raises :class:`~eddy.trainer.errors.ParityError`
    for the first check over ``tolerance``.
    """
    return _verify_parity(model, inspect_model(model), Path(out_dir), windows, series, tolerance, seed)


def _verify_parity(
    model: keras.Model,
    stack: RecurrentStack,
    out_dir: Path,
    windows: np.ndarray,
    series: np.ndarray,
    tolerance: float,
    seed: int,
) -> dict[str, float]:
    step = _onnx.session(out_dir / STEP_FILE)
    seq = _onnx.session(out_dir / SEQUENCE_FILE)
    figures: dict[str, float] = {"tolerance": tolerance}

    def check(name: str, got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> None:
        err = max(float(np.max(np.abs(g - w), initial=0.0)) for g, w in zip(got, want))
        if not err <= tolerance:  # also catches NaN
            raise ParityError(name, err, tolerance)
        figures[name] = err

    # (a) whole windows vs model.predict
    windows = np.asarray(windows, np.float32)  # [N, W, F]
    y_seq = seq.run(["y"], {"x": windows, **stack.zero_state(len(windows))})[0]  # [N, W, O]
    check("window_vs_predict", [y_seq[:, -1, :]], [np.asarray(model.predict(windows, verbose=0))])

    # Keras reference over the whole sequence: the twin layers in TensorFlow, from zero state.
    series = np.asarray(series, np.float32)  # [T, F]
    batch = np.stack([series, series[::-1]])  # [2, T, F]
    want = _keras_sequence(stack, batch)  # [y [2, T, O], *final states [2, U]]

    # (b) random chunks through the sequence graph
    rng = np.random.default_rng(seed)

    def chunk_lengths() -> Iterator[int]:
        while True:
            yield int(rng.integers(1, 2 * windows.shape[1] + 1))  # chunk length 1 .. 2W

    y, state = _onnx.run_chunks(seq, stack.state, batch, chunk_lengths())  # [2, T, O]
    check("chunked_sequence", [y, *state.values()], want)

    # (c) one step-graph call per sample
    y, state = _onnx.run_steps(step, stack.state, batch)  # [2, T, O]
    check("chained_step", [y, *state.values()], want)
    return figures


def export_model(
    model: keras.Model,
    out_dir: str | Path,
    windows: np.ndarray,
    series: np.ndarray,
    *,
    opset: int = OPSET,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> ExportResult:
    """Export both graphs into ``out_dir`` and verify them (see :func:`verify_parity`)."""
    stack, out_dir = inspect_model(model), Path(out_dir)
    graphs = _export_graphs(stack, out_dir, opset)
    parity = _verify_parity(model, stack, out_dir, windows, series, tolerance, seed)
    return ExportResult(graphs=graphs, state=stack.state, parity=parity)


def _sequence_twin(layer: Any) -> Any:
    """An inference copy of ``layer`` that returns its whole sequence and its final state(s).

    Dropouts are zeroed: Keras cells build their dropout masks (random ops)
    even when not training, which would put dead random nodes into the
    graphs; they are training-only, so inference is unchanged. ``stateful``
    and ``unroll`` are turned off (the state is explicit; time is dynamic).
    """
    config = {
        **layer.get_config(),
        "return_sequences": True,
        "return_state": True,
        "name": f"{layer.name}_seq",
        "dropout": 0.0,
        "recurrent_dropout": 0.0,
        "stateful": False,
        "unroll": False,
    }
    twin = type(layer).from_config(config)
    twin.build((None, None, int(layer.cell.kernel.shape[0])))  # dynamic batch and time; kernel: [in, k*U]
    twin.set_weights(layer.get_weights())
    return twin


def _keras_sequence(stack: RecurrentStack, x: np.ndarray) -> list[np.ndarray]:
    """Per-step outputs and final states of the Keras layers over ``x`` ``[B, T, F]`` from zero state.

    Runs as one ``tf.function`` (a graph while-loop): eagerly, Keras steps the
    loop in Python, ~8 ms per time step.
    """
    zero = stack.zero_state(x.shape[0])

    @tf.function
    def run(h: Any, states: list[Any]) -> list[Any]:
        finals = []
        for i, twin in enumerate(stack.twins):
            h, *s = twin(h, initial_state=stack.layer_states(states, i), training=False)  # [B, T, U]
            finals += s
        return [stack.head(h), *finals]

    return [np.asarray(v) for v in run(tf.constant(x), [tf.constant(zero[s.name]) for s in stack.state])]


def _name_dynamic_dims(proto: onnx.ModelProto, names: tuple[str, ...]) -> None:
    """Give the graph's dynamic leading dims readable names (tf2onnx writes ``unk__N``)."""
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, names):
            if not dim.HasField("dim_value"):
                dim.dim_param = name

