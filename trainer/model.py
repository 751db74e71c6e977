"""Build and fit the Keras model: stacked recurrent layers and a Dense head, with gradient monitoring."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._tf import import_tensorflow
from .config import TrainConfig
from .errors import TrainingError
from .windows import Dataset

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet tensorflow import)

__all__ = ["GRADIENT_SAMPLE", "LR_FACTOR", "MIN_LR", "RECURRENT_LAYERS", "GradientMonitor", "build_model", "epoch_line", "fit",
           "set_seed"]

GRADIENT_SAMPLE = 256  # training windows the per-epoch gradient measurement uses (a fixed, evenly spaced sample)
LR_FACTOR = 0.5  # --reduce-lr-patience multiplies the learning rate by this on a plateau
MIN_LR = 1e-6  # ... but never below this

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
    but the last returns its whole sequence. ``config.dropout`` and
    ``recurrent_dropout`` are the recurrent layers' own (training-only)
    dropouts; ``config.l2`` penalises every kernel. MSE loss, Adam with
    gradient clipping by norm or by value.
    """
    layer_cls = RECURRENT_LAYERS[config.cell]
    l2 = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
    x = inputs = keras.Input(shape=(config.window, n_features), name="x")  # [B, W, F]
    for i in range(config.layers):
        last = i == config.layers - 1
        x = layer_cls(
            config.units,
            return_sequences=not last,
            dropout=config.dropout,
            recurrent_dropout=config.recurrent_dropout,
            kernel_regularizer=l2,
            recurrent_regularizer=l2,
            name=f"rnn_{i}",
        )(x)  # [B, U] or [B, W, U]
    outputs = keras.layers.Dense(n_targets, kernel_regularizer=l2, name="head")(x)  # [B, O]
    model = keras.Model(inputs, outputs, name=f"eddy_{config.cell}")
    optimizer = keras.optimizers.Adam(learning_rate=config.lr, clipnorm=config.clipnorm, clipvalue=config.clipvalue)
    model.compile(optimizer=optimizer, loss="mse")
    return model


def fit(
    model: keras.Model,
    dataset: Dataset,
    config: TrainConfig,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train on ``dataset``'s train windows, early-stopping on the validation loss.

    The weights of the best validation epoch are restored at the end; with
    ``config.reduce_lr_patience`` the learning rate is halved on plateaus.
    Calls ``log`` once per epoch. Returns the history, one entry per epoch
    run: ``epoch`` (1-based), ``loss``, ``val_loss``, ``grad_norm``,
    ``recurrent_grad_norm``, ``recurrent_grad_norm_per_layer`` (``[layer][epoch]``),
    ``lr`` (used during the epoch); and ``epochs_run``, ``best_epoch``.
    Raises :class:`~eddy.trainer.errors.TrainingError` if the loss became non-finite.
    """
    monitor = GradientMonitor(dataset, config.epochs, log)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True
    )
    callbacks: list[keras.callbacks.Callback] = [monitor, keras.callbacks.TerminateOnNaN(), stop]
    if config.reduce_lr_patience > 0:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=LR_FACTOR, patience=config.reduce_lr_patience, min_lr=MIN_LR))
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
    val_loss += [math.nan] * (len(loss) - len(val_loss))  # an epoch cut short by TerminateOnNaN
    for epoch, (tl, vl) in enumerate(zip(loss, val_loss), start=1):
        if not (math.isfinite(tl) and math.isfinite(vl)):
            raise TrainingError(
                f"training diverged: the loss became non-finite in epoch {epoch} "
                "(try a lower --lr, --clipnorm or --clipvalue, or check the data's scale)"
            )
    return {
        "epoch": list(range(1, len(loss) + 1)),
        "loss": loss,
        "val_loss": val_loss,
        **monitor.history(len(loss)),
        "epochs_run": len(loss),
        "best_epoch": int(stop.best_epoch) + 1,
    }


def epoch_line(epoch: int, epochs: int, loss: float, val_loss: float, grad: float | None, recurrent: list[float],
               lr: list[float]) -> str:
    """The one-line progress log of ``epoch`` (1-based); ``lr`` is every epoch's rate so far (shown when it changed);
    ``grad`` None: the gradients were not measured (an averaged model's later members), no norms shown."""
    width = len(str(epochs))
    line = f"epoch {epoch:>{width}}/{epochs}  loss {loss:.5f}  val_loss {val_loss:.5f}"
    if grad is not None:
        line += f"  grad_norm {grad:.3g}  recurrent {max(recurrent):.3g}"
    if len(lr) > 1 and lr[-1] != lr[-2]:
        line += f"  lr {lr[-1]:.3g}"
    return line


class GradientMonitor(keras.callbacks.Callback):
    """Per-epoch gradient norms and learning rate, and the one-line progress log.

    At the end of every epoch it computes, with :class:`tf.GradientTape`, the
    gradient of the training loss (MSE plus the L2 penalties, dropout off) over
    a fixed, evenly spaced sample of up to :data:`GRADIENT_SAMPLE` training
    windows at the epoch's final weights, before any clipping. It records the
    global L2 norm over every trainable weight and the norm over each
    recurrent layer's recurrent kernel. No random numbers are drawn, so the
    measurement does not change the training run.
    """

    def __init__(self, dataset: Dataset, epochs: int, log: Callable[[str], None] | None) -> None:
        super().__init__()
        n = len(dataset.x_train)
        pick = np.unique(np.linspace(0, n - 1, min(n, GRADIENT_SAMPLE)).astype(int))  # [S]
        self._x = tf.constant(dataset.x_train[pick])  # [S, W, F]
        self._y = tf.constant(dataset.y_train[pick])  # [S, O]
        self._epochs = epochs
        self._log = log
        self._grad: list[float] = []
        self._recurrent: list[list[float]] = []  # [epoch][layer]
        self._lr: list[float] = []
        self._norms: Callable[[Any, Any], tuple[Any, Any]] | None = None

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        model = self.model
        weights = model.trainable_weights
        recurrent_ids = [id(layer.cell.recurrent_kernel) for layer in model.layers if isinstance(layer, keras.layers.RNN)]
        index = [next(i for i, w in enumerate(weights) if id(w) == rid) for rid in recurrent_ids]

        @tf.function(reduce_retracing=True)
        def norms(x: Any, y: Any) -> tuple[Any, Any]:
            with tf.GradientTape() as tape:
                y_pred = model(x, training=False)  # [S, O]
                loss = tf.reduce_mean(tf.square(y_pred - y))
                if model.losses:
                    loss += tf.add_n(model.losses)
            grads = tape.gradient(loss, weights)
            recurrent = tf.stack([tf.norm(grads[i]) for i in index])  # [layers]
            return tf.linalg.global_norm([g for g in grads if g is not None]), recurrent

        self._norms = norms

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._lr.append(float(np.asarray(self.model.optimizer.learning_rate)))

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self._norms is None:  # on_train_begin did not run (not called through fit)
            return
        grad, recurrent = self._norms(self._x, self._y)
        self._grad.append(float(grad))
        self._recurrent.append([float(v) for v in np.asarray(recurrent)])
        if self._log is None:
            return
        logs = logs or {}
        self._log(epoch_line(epoch + 1, self._epochs, logs.get("loss", math.nan), logs.get("val_loss", math.nan),
                             self._grad[-1], self._recurrent[-1], self._lr))

    def history(self, epochs: int) -> dict[str, list[Any]]:
        """The recorded series, truncated to ``epochs`` entries."""
        per_layer = [list(v) for v in zip(*self._recurrent[:epochs])]  # [layer][epoch]
        return {
            "grad_norm": self._grad[:epochs],
            "recurrent_grad_norm": [float(np.sqrt(np.sum(np.square(v)))) for v in self._recurrent[:epochs]],
            "recurrent_grad_norm_per_layer": per_layer,
            "lr": self._lr[:epochs],
        }
