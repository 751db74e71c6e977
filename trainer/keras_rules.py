"""Which Keras layers eddy can stream, by class name (no tensorflow): one table for both checks.

:func:`eddy.trainer.keras_stack.inspect_model` applies these rules to a loaded
model; :func:`check_config` applies them to a model config read from the file
(:mod:`eddy.trainer.keras_file`: ``.keras`` or ``.h5``) before tensorflow is
imported, so a refusal takes milliseconds instead of the seconds tensorflow
takes to start.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import UnsupportedModelError

__all__ = ["CELLS", "IDENTITIES", "UNSUPPORTED", "check_config", "refusal"]

# Keras layer class name -> manifest cell name, and the state tensors one layer carries.
CELLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "SimpleRNN": ("simple_rnn", ("h",)),
    "GRU": ("gru", ("h",)),
    "LSTM": ("lstm", ("h", "c")),  # the LSTM cell's own state order: [h, c]
}
# Layers that are identities at inference: skipped by the export.
IDENTITIES = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
              "ActivityRegularization")
_ALLOWED = {"InputLayer", "Dense", "Normalization", *CELLS, *IDENTITIES}  # the rest need a reason below or are refused
# Why a layer cannot be exported, for the common ones.
UNSUPPORTED: dict[str, str] = {
    "Bidirectional": "it reads each window backwards as well, which a stream fed one sample at a time cannot do",
    "Conv1D": "convolutions need a window of future samples; eddy streams recurrent state only",
    "Attention": "attention looks at the whole window at once; eddy streams recurrent state only",
    "MultiHeadAttention": "attention looks at the whole window at once; eddy streams recurrent state only",
    "AdditiveAttention": "attention looks at the whole window at once; eddy streams recurrent state only",
    "TimeDistributed": ("use a plain Dense layer after the last recurrent layer and build that recurrent layer with "
                        "return_sequences=False (a stream still answers every time step, one prediction per sample)"),
    "RNN": "generic RNN layers with custom cells are not supported; use SimpleRNN, LSTM or GRU",
    "ConvLSTM1D": "convolutional recurrent cells are not supported; use SimpleRNN, LSTM or GRU",
    "Masking": "masking changes the state update per sample; stream only the samples you have instead",
    "Sequential": "nested models are not supported; build one flat model",
    "Functional": "nested models are not supported; build one flat model",
}
_MODELS = ("Sequential", "Functional", "Model")  # model classes with a layer list (Keras 2's .h5 says "Model")
_STATEFUL = ("stateful=True; eddy carries the state itself between calls, so rebuild the model with "
             "stateful=False and load the same weights")
_BACKWARDS = ("go_backwards=True: it reads each window from its last sample to its first, which a stream fed one "
              "sample at a time cannot do; rebuild it with go_backwards=False and train it again")


def refusal(kind: str, config: dict[str, Any]) -> str | None:
    """Why a layer of class ``kind`` with ``config`` cannot be exported, or None if the class is fine.

    (Where a layer sits is checked on the loaded model: a Normalization layer only before all others.)
    """
    if kind in CELLS and config.get("stateful"):
        return _STATEFUL
    if kind in CELLS and config.get("go_backwards"):
        return _BACKWARDS
    if kind in _ALLOWED:
        return None
    return UNSUPPORTED.get(kind, "eddy exports only SimpleRNN, LSTM or GRU layers with Dense layers after them")


def check_config(model_config: dict[str, Any], where: str) -> None:
    """Raise :class:`~eddy.trainer.errors.UnsupportedModelError` for the first layer of ``model_config`` (a saved
    model's config: ``{"class_name": ..., "config": {"layers": [...]}}``) eddy cannot export; ``where`` names the
    file in the message."""
    kind = str(model_config.get("class_name", ""))
    if kind not in _MODELS:
        raise UnsupportedModelError(f"{where}: unsupported model class {kind or '?'!r}: eddy exports Sequential or "
                                    "Functional Keras models (rebuild a subclassed model as a Functional one)")
    for layer in _layers(model_config):
        kind, cfg = str(layer.get("class_name", "")), layer.get("config") or {}
        why = refusal(kind, cfg)
        if why:
            raise UnsupportedModelError(f"{where}: unsupported layer {cfg.get('name', '?')!r} ({kind}): {why}")


def _layers(model_config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The layers of a Sequential or Functional model's config (nested models are yielded as layers)."""
    inner = model_config.get("config") or {}
    layers = inner.get("layers") if isinstance(inner, dict) else None
    for layer in layers or []:
        if isinstance(layer, dict):
            yield layer
