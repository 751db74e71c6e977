"""What eddy can export from a Keras model, and the Keras side of every parity check.

:func:`inspect_model` reduces a model to a :class:`RecurrentStack`: SimpleRNN,
LSTM or GRU layers of one kind and equal units with one Dense head (layers
that are identities at inference, such as Dropout, are skipped), or says
precisely what it cannot stream. The stack holds inference *twins* of the
recurrent layers (dynamic time, whole sequence and final state returned, no
dropout), which both the graph export (:mod:`eddy.trainer.onnx_export`) and
the parity reference (:func:`run_stack`, float32 or float64) use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from eddy.runtime.core.manifest import StateSpec

from . import _onnx
from ._tf import import_tensorflow
from .errors import UnsupportedModelError
from .keras_rules import CELLS as _CELLS
from .keras_rules import IDENTITIES, refusal

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet tensorflow import)

__all__ = ["RecurrentStack", "inspect_model", "run_stack"]


# Layers that are identities at inference: skipped by the export.
_INFERENCE_IDENTITIES: tuple[type, ...] = tuple(getattr(keras.layers, n) for n in IDENTITIES if hasattr(keras.layers, n))


@dataclass(frozen=True)
class RecurrentStack:
    """What the export needs to know about a ``RNN x layers -> Dense`` Keras model."""

    cell: str  # manifest cell name
    units: int  # units of the first recurrent layer (each layer's own: its state shapes)
    n_features: int  # F
    n_targets: int  # O
    rnn: list[Any]  # the Keras recurrent layers, input to output
    head: Any  # the Dense layer
    state: list[StateSpec]  # every state tensor, layer by layer
    input_norm: tuple[list[float], list[float]] | None = None  # a leading Normalization layer's (mean, std) per feature

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        """Zero state for ``batch`` streams, keyed by graph input name."""
        return _onnx.zero_state(self.state, batch)

    @property
    def layer_units(self) -> list[int]:
        """Units of each recurrent layer, input to output."""
        return [int(layer.units) for layer in self.rnn]

    def layer_states(self, states: Sequence[Any], i: int) -> list[Any]:
        """Layer ``i``'s slice of ``states`` (all layers' state tensors, in :attr:`state` order)."""
        per_layer = len(self.state) // len(self.rnn)  # state tensors per layer
        return list(states[i * per_layer : (i + 1) * per_layer])

    @cached_property
    def twins(self) -> list[Any]:
        """Inference copies of :attr:`rnn` (no dropout, dynamic time); see :func:`_sequence_twin`."""
        return [_sequence_twin(layer) for layer in self.rnn]

    def runner(self, dtype: str) -> Any:
        """A ``tf.function`` ``x [B, T, F] -> [y [B, T, O], *final states]`` from zero state in ``dtype``
        (see :func:`run_stack`), made once per dtype."""
        if dtype not in self._runners:
            self._runners[dtype] = self._make_runner(dtype)
        return self._runners[dtype]

    @cached_property
    def _runners(self) -> dict[str, Any]:
        return {}

    def _make_runner(self, dtype: str) -> Any:
        twins, head = self.twins64 if dtype == "float64" else (self.twins, self.head)

        @tf.function(input_signature=[tf.TensorSpec([None, None, self.n_features], dtype)])
        def run(x: Any) -> list[Any]:
            h, finals = x, []
            zero = [tf.zeros(tf.stack([tf.shape(x)[0], *s.shape]), dtype) for s in self.state]  # [B, U] each
            for i, twin in enumerate(twins):
                h, *s = twin(h, initial_state=self.layer_states(zero, i), training=False)  # [B, T, U]
                finals += s
            return [head(h), *finals]

        return run

    @cached_property
    def twins64(self) -> tuple[list[Any], Any]:
        """Float64 copies of :attr:`twins` and :attr:`head`: the same weights cast up (the parity reference)."""
        head = (DenseStack([_float64_copy(d) for d in self.head.layers]) if isinstance(self.head, DenseStack)
                else _float64_copy(self.head))
        return [_sequence_twin(layer, "float64") for layer in self.rnn], head


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
    layers, input_norm = [], None
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, (keras.layers.InputLayer, *_INFERENCE_IDENTITIES)):
            continue
        if isinstance(layer, keras.layers.Normalization) and not layers and input_norm is None:
            input_norm = _normalization_stats(layer)  # the model's input scaling: it goes into the graphs
            continue
        why = refusal(kind, {"stateful": getattr(layer, "stateful", False),
                             "go_backwards": getattr(layer, "go_backwards", False)})
        if kind == "Normalization":  # allowed only as the first layer, taken above
            why = "only a Normalization layer on the inputs, before every other layer, is supported"
        if why:
            raise UnsupportedModelError(f"unsupported layer {layer.name!r} ({kind}): {why}")
        layers.append(layer)
    n_rnn = max((i + 1 for i, layer in enumerate(layers) if type(layer).__name__ in _CELLS), default=0)
    if n_rnn == 0 or n_rnn == len(layers):
        raise UnsupportedModelError("unsupported model: expected recurrent layers followed by Dense layers")
    rnn, dense = layers[:n_rnn], layers[n_rnn:]
    head = dense[0] if len(dense) == 1 else DenseStack(dense)
    first_rnn = next(i for i, layer in enumerate(rnn) if type(layer).__name__ in _CELLS)
    for i, layer in enumerate(rnn):
        if isinstance(layer, keras.layers.Dense):
            where = "before the first recurrent layer" if i < first_rnn else "between recurrent layers"
            raise UnsupportedModelError(f"unsupported model: Dense layer {layer.name!r} sits {where}; "
                                        "Dense layers are supported after the last recurrent layer only")
    kinds = {type(layer).__name__ for layer in rnn}
    if len(kinds) != 1:
        raise UnsupportedModelError(
            f"unsupported model: recurrent layers must all be one of {', '.join(_CELLS)}, found {', '.join(sorted(kinds))}"
        )
    cell, state_kinds = _CELLS[kinds.pop()]
    for i, layer in enumerate(rnn):
        last = i == len(rnn) - 1
        if layer.return_state:
            raise UnsupportedModelError(f"unsupported model: layer {layer.name!r} has return_state=True; eddy carries "
                                        "the state itself, so rebuild it with return_state=False and load the same "
                                        "weights")
        if last and layer.return_sequences:
            raise UnsupportedModelError(
                f"unsupported model: the last recurrent layer {layer.name!r} has return_sequences=True, so the head runs "
                "over every time step of a window; rebuild it with return_sequences=False and load the same weights "
                "(a stream still answers every time step, one prediction per sample)")
        if not last and not layer.return_sequences:
            raise UnsupportedModelError(f"unsupported model: layer {layer.name!r} feeds another recurrent layer but has "
                                        "return_sequences=False; it must return its whole sequence")
    return RecurrentStack(
        cell=cell,
        units=int(rnn[0].units),
        n_features=int(model.input_shape[-1]),
        n_targets=int(head.units),
        rnn=rnn,
        head=head,
        state=[StateSpec(f"{k}{i}", [int(layer.units)]) for i, layer in enumerate(rnn) for k in state_kinds],
        input_norm=input_norm,
    )


class DenseStack:
    """Several Dense layers after the last recurrent one, applied in order (``head`` of a :class:`RecurrentStack`)."""

    def __init__(self, layers: list[Any]) -> None:
        self.layers = layers
        self.units = int(layers[-1].units)  # O
        self.activation = None  # not one Dense layer: the native sequence-graph builder falls back to tf2onnx

    def __call__(self, h: Any) -> Any:
        for layer in self.layers:
            h = layer(h)
        return h


def _normalization_stats(layer: Any) -> tuple[list[float], list[float]]:
    """A Keras ``Normalization`` layer's per-feature ``(mean, std)``; refuses ``invert=True``."""
    if getattr(layer, "invert", False):
        raise UnsupportedModelError(f"unsupported layer {layer.name!r} (Normalization): invert=True on the inputs")
    mean = np.asarray(layer.mean, np.float64).reshape(-1)
    std = np.sqrt(np.maximum(np.asarray(layer.variance, np.float64).reshape(-1), 1e-7))  # Keras' epsilon floor
    return [float(v) for v in mean], [float(v) for v in std]


def _sequence_twin(layer: Any, dtype: str | None = None) -> Any:
    """An inference copy of ``layer`` that returns its whole sequence and its final state(s).

    Dropouts are zeroed: Keras cells build their dropout masks (random ops)
    even when not training, which would put dead random nodes into the
    graphs; they are training-only, so inference is unchanged. ``stateful``
    and ``unroll`` are turned off (the state is explicit; time is dynamic).
    With ``dtype`` (e.g. ``"float64"``) the copy computes in that precision, its weights cast up.
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
        **({"dtype": dtype} if dtype else {}),
    }
    twin = type(layer).from_config(config)
    twin.build((None, None, int(layer.cell.kernel.shape[0])))  # dynamic batch and time; kernel: [in, k*U]
    twin.set_weights([np.asarray(w, dtype or None) for w in layer.get_weights()])
    return twin


def _float64_copy(layer: Any) -> Any:
    """A float64 copy of a built Dense ``layer`` with its weights cast up."""
    copy = type(layer).from_config({**layer.get_config(), "name": f"{layer.name}_f64", "dtype": "float64"})
    copy.build((None, int(layer.kernel.shape[0])))
    copy.set_weights([np.asarray(w, np.float64) for w in layer.get_weights()])
    return copy


def run_stack(stack: RecurrentStack, x: np.ndarray, dtype: str = "float32") -> list[np.ndarray]:
    """Per-step outputs and final states of ``stack``'s Keras layers over ``x`` ``[B, T, F]`` from zero
    state, computed in ``dtype`` (``"float32"`` as Keras runs the model, ``"float64"`` as the reference):
    ``[y [B, T, O], *final states [B, U]]`` in :attr:`RecurrentStack.state` order.

    Runs as one ``tf.function`` per stack and dtype, traced once for any batch and length (a graph
    while-loop: eagerly, Keras steps the loop in Python, ~8 ms per time step).
    """
    return [np.asarray(v) for v in stack.runner(dtype)(tf.constant(np.asarray(x, dtype)))]
