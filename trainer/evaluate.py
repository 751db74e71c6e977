"""Test-set evaluation shared by ``eddy train`` and ``eddy export --data``: the model's error in raw
units next to the naive baselines (persistence, and seasonal naive when a season is given).

Numpy only; :func:`evaluate` takes any object with a Keras-style ``predict``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .windows import Dataset

__all__ = ["Predictor", "evaluate", "regression_metrics", "score_test_set"]


class Predictor(Protocol):
    """What :func:`evaluate` needs of a model: Keras' ``predict``, ``[N, W, F]`` -> ``[N, O]``."""

    def predict(self, x: np.ndarray, verbose: int = ...) -> np.ndarray: ...


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, MAE and RMSE over every element of two equally shaped arrays."""
    err = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    mse = float(np.mean(err**2))
    return {"mse": mse, "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(mse))}


def evaluate(model: Predictor, dataset: Dataset, season: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Predict ``dataset``'s test windows and score them: ``(y_pred [n_test, O] raw, metrics)``
    (see :func:`score_test_set`)."""
    y_pred = dataset.denormalise_targets(model.predict(dataset.x_test, verbose=0))  # [n_test, O]
    return y_pred, score_test_set(dataset, y_pred, season)


def score_test_set(dataset: Dataset, y_pred: np.ndarray, season: int | None = None) -> dict[str, Any]:
    """Test-set metrics in raw units, next to the naive baselines.

    ``y_pred`` is ``[n_test, O]`` raw. Persistence predicts the target's value
    at each window's last row (``horizon`` rows before the predicted one);
    seasonal naive (with ``season``) the value ``season`` rows before the
    predicted one. Top-level ``rmse``/``mae``/``mse`` and ``persistence_*``
    keep the skeleton's manifest keys. Raises
    :class:`~eddy.trainer.errors.DataError` if ``season`` does not fit the data.
    """
    y = dataset.y_test_raw  # [n_test, O]
    targets = dataset.series.targets

    def scored(pred: np.ndarray) -> dict[str, Any]:
        per = {col: regression_metrics(y[:, j], pred[:, j]) for j, col in enumerate(targets)}
        return {**regression_metrics(y, pred), "per_target": per}

    model, persistence = scored(y_pred), scored(dataset.last_test_raw)
    baselines: dict[str, Any] = {"persistence": persistence}
    if season is not None:
        baselines["seasonal_naive"] = {"season": season, **scored(dataset.seasonal_test_raw(season))}
    return {
        "split": "test",
        "windows": int(len(y)),
        **model,
        **{f"persistence_{k}": v for k, v in persistence.items() if k != "per_target"},
        "baselines": baselines,
    }
