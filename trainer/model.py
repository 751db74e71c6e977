"""Build and fit the Keras model: stacked recurrent layers and a Dense head."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import zip_longest
from typing import Any

from ._tf import import_tensorflow
from .config import TrainConfig
from .data import Dataset
from .errors import TrainingError

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet tensorflow import)

__all__ = ["RECURRENT_LAYERS", "build_model", "fit", "set_seed"]

# --cell value -> Keras layer class
RECURRENT_LAYERS: dict[str, type[keras.layers.RNN]] = {
    "simple_rnn": keras.layers.SimpleRNN,
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
}


def set_seed(seed: int) -> None:
    """Seed Python, numpy, tensorflow and Keras, and make TF ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_model(config: TrainConfig, n_features: int, n_targets: int) -> keras.Model:
    """The compiled seed architecture, generalised by ``config``.

    ``Input[W, F] -> RNN(units) x layers -> Dense(O)``; every recurrent layer
    but the last returns its whole sequence. MSE loss, Adam with gradient
    clipping by norm.
    """
    layer_cls = RECURRENT_LAYERS[config.cell]
    x = inputs = keras.Input(shape=(config.window, n_features), name="x")  # [B, W, F]
    for i in range(config.layers):
        last = i == config.layers - 1
        x = layer_cls(config.units, return_sequences=not last, name=f"rnn_{i}")(x)  # [B, U] or [B, W, U]
    outputs = keras.layers.Dense(n_targets, name="head")(x)  # [B, O]
    model = keras.Model(inputs, outputs, name=f"eddy_{config.cell}")
    optimizer = keras.optimizers.Adam(learning_rate=config.lr, clipnorm=config.clipnorm)
    model.compile(optimizer=optimizer, loss="mse")
    return model


def fit(
    model: keras.Model,
    dataset: Dataset,
    config: TrainConfig,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train on ``dataset``'s train windows, early-stopping on the validation loss.

    The weights of the best validation epoch are restored at the end. Calls
    ``log`` once per epoch. Returns the history: ``loss`` and ``val_loss`` per
    epoch, ``epochs_run`` and ``best_epoch`` (1-based). Raises
    :class:`~trainer.errors.TrainingError` if the loss became non-finite.
    """
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True
    )
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN(), stop]
    if log is not None:
        callbacks.append(_EpochLog(config.epochs, log))
    history = model.fit(
        dataset.x_train,
        dataset.y_train,
        validation_data=(dataset.x_val, dataset.y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    ).history
    loss = [float(v) for v in history.get("loss", [])]
    val_loss = [float(v) for v in history.get("val_loss", [])]
    for epoch, (tl, vl) in enumerate(zip_longest(loss, val_loss, fillvalue=0.0), start=1):
        if not (math.isfinite(tl) and math.isfinite(vl)):
            raise TrainingError(
                f"training diverged: the loss became non-finite in epoch {epoch} "
                "(try a lower --lr or --clipnorm, or check the data's scale)"
            )
    return {
        "loss": loss,
        "val_loss": val_loss,
        "epochs_run": len(loss),
        "best_epoch": int(stop.best_epoch) + 1,
    }


class _EpochLog(keras.callbacks.Callback):
    """One line per epoch: loss and val_loss."""

    def __init__(self, epochs: int, log: Callable[[str], None]) -> None:
        super().__init__()
        self._epochs = epochs
        self._log = log

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        width = len(str(self._epochs))
        self._log(
            f"epoch {epoch + 1:>{width}}/{self._epochs}  "
            f"loss {logs.get('loss', float('nan')):.5f}  val_loss {logs.get('val_loss', float('nan')):.5f}"
        )
