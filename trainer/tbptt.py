"""Long-sequence training with the state carried between batches (``--training tbptt``).

A custom loop instead of Keras' ``stateful=True``: the recurrent layers'
*cells* (the seed-shaped model's own, so its weights are trained in place) run
under ``keras.layers.RNN(cell, return_sequences=True, return_state=True)``
wrappers, one ``tf.function`` call per chunk of :class:`~eddy.trainer.streams.Streams`
with the state passed in and returned, so the gradient is truncated at chunk
boundaries while the state flows on. The loss is the masked MSE over every
step of the chunk (plus the L2 penalties). Validation is streamed: one stream
from the series' first row with the state carried, scored on the validation
rows, which is what a served stream returns. Early stopping (best weights
restored), learning-rate halving on plateaus, gradient clipping (in the
optimizer) and dropout (per chunk masks, training only) apply as in
:func:`eddy.trainer.model.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._tf import import_tensorflow
from .config import TrainConfig
from .errors import TrainingError
from .evaluate import regression_metrics
from .keras_stack import inspect_model
from .model import LR_FACTOR, MIN_LR, epoch_line
from .streams import Streams, make_streams, streamed_rows
from .windows import Dataset

tf = import_tensorflow()
import keras  # noqa: E402  (after the quiet tensorflow import)

__all__ = ["StreamTrainer", "fit_streams", "streamed_val_rmse"]

_PLATEAU_DELTA = 1e-4  # a val_loss improvement smaller than this counts as a plateau (Keras ReduceLROnPlateau's)


class StreamTrainer:
    """Chunk-wise training and streamed prediction over a seed-shaped model's own layers."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        stack = inspect_model(model)
        self._stack = stack
        self._rnn = [keras.layers.RNN(layer.cell, return_sequences=True, return_state=True) for layer in stack.rnn]
        self._weights = model.trainable_weights
        if not model.optimizer.built:
            model.optimizer.build(self._weights)  # its slots exist before the first traced step
        recurrent = [id(layer.cell.recurrent_kernel) for layer in stack.rnn]
        self._recurrent_index = [next(i for i, w in enumerate(self._weights) if id(w) == r) for r in recurrent]
        self.train_chunk = tf.function(self._train_chunk, reduce_retracing=True)
        self.chunk_gradients = tf.function(self._chunk_gradients, reduce_retracing=True)
        self.predict = tf.function(self._predict, reduce_retracing=True)

    def zero_state(self, batch: int) -> list[Any]:
        """Zero state for ``batch`` streams: one ``[B, U]`` tensor per state tensor, in the manifest's order."""
        return [tf.zeros((batch, *s.shape)) for s in self._stack.state]

    def forward(self, x: Any, state: list[Any], training: bool = False) -> tuple[Any, list[Any]]:
        """``x [B, T, F]`` from ``state`` (see :meth:`zero_state`): ``(y [B, T, O], final state)``, model space."""
        h, new = x, []  # [B, T, F]
        for i, rnn in enumerate(self._rnn):
            h, *s = rnn(h, initial_state=self._stack.layer_states(state, i), training=training)  # [B, T, U]
            new += s
        return self._stack.head(h), new  # [B, T, O]

    def _loss(self, x: Any, y: Any, mask: Any, state: list[Any], training: bool) -> tuple[Any, Any, list[Any]]:
        z, new = self.forward(x, state, training)  # [B, T, O]
        count = tf.reduce_sum(mask)
        mse = tf.reduce_sum(tf.reduce_mean(tf.square(z - y), axis=-1) * mask) / tf.maximum(count, 1.0)
        penalty = tf.add_n(self.model.losses) if self.model.losses else 0.0
        return mse + penalty, count, new

    def _train_chunk(self, x: Any, y: Any, mask: Any, state: list[Any]) -> tuple[Any, Any, list[Any]]:
        with tf.GradientTape() as tape:
            loss, count, new = self._loss(x, y, mask, state, True)
        grads = tape.gradient(loss, self._weights)
        self.model.optimizer.apply_gradients(zip(grads, self._weights))  # clipping happens here
        return loss, count, new

    def _chunk_gradients(self, x: Any, y: Any, mask: Any, state: list[Any]) -> tuple[list[Any], Any, list[Any]]:
        with tf.GradientTape() as tape:
            loss, count, new = self._loss(x, y, mask, state, False)
        return tape.gradient(loss, self._weights), count, new

    def _predict(self, x: Any) -> Any:
        return self.forward(x, self.zero_state(tf.shape(x)[0]), False)[0]

    def epoch(self, streams: Streams) -> float:
        """One pass over ``streams`` from zero state, one gradient step per chunk; the label-weighted mean loss."""
        state, total, seen = self.zero_state(streams.count), 0.0, 0.0
        for x, y, mask in streams.chunks():
            loss, count, state = self.train_chunk(x, y, mask, state)
            total, seen = total + float(loss) * float(count), seen + float(count)
        return total / max(seen, 1.0)

    def gradient_norms(self, streams: Streams) -> tuple[float, list[float]]:
        """The epoch loss's gradient at the current weights (dropout off, before clipping), chunk by chunk with
        the state carried as in training: ``(global norm, recurrent-kernel norm per layer)``."""
        state, seen = self.zero_state(streams.count), 0.0
        acc = [np.zeros(w.shape, np.float64) for w in self._weights]
        for x, y, mask in streams.chunks():
            grads, count, state = self.chunk_gradients(x, y, mask, state)
            for a, g in zip(acc, grads):
                a += np.asarray(g, np.float64) * float(count)
            seen += float(count)
        acc = [a / max(seen, 1.0) for a in acc]
        return (float(np.sqrt(sum(float(np.sum(a**2)) for a in acc))),
                [float(np.linalg.norm(acc[i])) for i in self._recurrent_index])

    def stream(self, x: np.ndarray) -> np.ndarray:
        """Normalised model-space inputs ``[T, F]`` streamed from zero state: normalised outputs ``[T, O]``."""
        return np.asarray(self.predict(tf.constant(np.asarray(x, np.float32)[None])))[0]


def streamed_val_rmse(model: keras.Model, dataset: Dataset, trainer: StreamTrainer | None = None) -> float:
    """The validation rows' RMSE in raw units of one stream from the series' first row (state carried)."""
    out, target = streamed_rows(dataset, "val")
    z = (trainer or StreamTrainer(model)).stream(dataset.normalised_inputs()[: target[-1] + 1])  # [T, O]
    return regression_metrics(dataset.series.outputs[target], dataset.raw_predictions(z[out], target))["rmse"]


def fit_streams(
    model: keras.Model,
    dataset: Dataset,
    config: TrainConfig,
    log: Callable[[str], None] | None = None,
    *,
    gradients: bool = True,
) -> dict[str, Any]:
    """Train ``model`` (built by :func:`eddy.trainer.model.build_model`) with truncated BPTT; see the module docstring.

    Returns the history in :func:`eddy.trainer.model.fit`'s form plus ``streams`` (the layout, for the
    manifest). ``val_loss`` is the streamed validation MSE in normalised units. ``gradients=False`` skips the
    per-epoch gradient measurement (a pass over the chunks; the norms are then NaN). Raises
    :class:`~eddy.trainer.errors.TrainingError` if the loss became non-finite.
    """
    streams = make_streams(dataset, config.batch_size)
    trainer = StreamTrainer(model)
    out, target = streamed_rows(dataset, "val")
    x_val = dataset.normalised_inputs()[: target[-1] + 1]  # [T, F]: the stream up to the last validation row
    assert dataset.row_labels is not None
    y_val = dataset.row_labels[out]  # [n_val, O]
    loss, val_loss, grad, recurrent, lrs = [], [], [], [], []
    best, best_epoch, best_weights, wait, plateau_best, plateau_wait = math.inf, 0, model.get_weights(), 0, math.inf, 0
    optimizer = model.optimizer
    for epoch in range(1, config.epochs + 1):
        lrs.append(float(np.asarray(optimizer.learning_rate)))
        loss.append(trainer.epoch(streams))
        val_loss.append(float(np.mean((trainer.stream(x_val)[out] - y_val) ** 2)))
        if not (math.isfinite(loss[-1]) and math.isfinite(val_loss[-1])):
            raise TrainingError(f"training diverged: the loss became non-finite in epoch {epoch} "
                                "(try a lower --lr, --clipnorm or --clipvalue, or check the data's scale)")
        g, r = trainer.gradient_norms(streams) if gradients else (math.nan, [math.nan] * config.layers)
        grad.append(g)
        recurrent.append(r)
        if log is not None:
            log(epoch_line(epoch, config.epochs, loss[-1], val_loss[-1], g if gradients else None, r, lrs))
        if val_loss[-1] < best:
            best, best_epoch, best_weights, wait = val_loss[-1], epoch, model.get_weights(), 0
        else:
            wait += 1
        if config.reduce_lr_patience > 0:
            if val_loss[-1] < plateau_best - _PLATEAU_DELTA:
                plateau_best, plateau_wait = val_loss[-1], 0
            else:
                plateau_wait += 1
                if plateau_wait >= config.reduce_lr_patience:
                    optimizer.learning_rate.assign(max(lrs[-1] * LR_FACTOR, MIN_LR))
                    plateau_wait = 0
        if wait > 0 and wait >= config.patience and epoch > 1:  # Keras EarlyStopping's rule
            break
    model.set_weights(best_weights)
    return {
        "epoch": list(range(1, len(loss) + 1)),
        "loss": loss,
        "val_loss": val_loss,
        "grad_norm": grad,
        "recurrent_grad_norm": [float(np.sqrt(np.sum(np.square(v)))) for v in recurrent],
        "recurrent_grad_norm_per_layer": [list(v) for v in zip(*recurrent)],
        "lr": lrs,
        "epochs_run": len(loss),
        "best_epoch": best_epoch,
        "streams": streams.describe(),
    }
