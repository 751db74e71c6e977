"""Test-set evaluation shared by ``eddy train`` and ``eddy export --data``: the model's error in raw
units next to the naive baselines (persistence, and seasonal naive when a season is given).

Two scores of the same test rows: the *window* score (each test window run from
zero state, as Keras' ``predict`` sees it) and the *streamed* score (the
exported graph run over the whole series from its first row with the state
carried, which is what a served stream returns; :func:`add_streamed`). The
streamed one is the accuracy a user gets.

Numpy only; :func:`evaluate` takes any object with a Keras-style ``predict``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .windows import Dataset

__all__ = ["Predictor", "add_streamed", "evaluate", "persistence_warning", "regression_metrics", "score_test_set",
           "val_rmse"]


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
    y_pred = dataset.raw_predictions(model.predict(dataset.x_test, verbose=0), dataset.test_rows)  # [n_test, O]
    return y_pred, score_test_set(dataset, y_pred, season)


def val_rmse(model: Predictor, dataset: Dataset) -> float:
    """The validation windows' RMSE in raw units (what ``--target-transform auto`` compares across kinds)."""
    assert dataset.val_rows is not None  # set by make_dataset
    y_pred = dataset.raw_predictions(model.predict(dataset.x_val, verbose=0), dataset.val_rows)  # [n_val, O]
    return regression_metrics(dataset.series.outputs[dataset.val_rows], y_pred)["rmse"]


def add_streamed(metrics: dict[str, Any], dataset: Dataset, y_stream: np.ndarray) -> dict[str, Any]:
    """Add the streamed score to ``metrics`` (in place, also returned).

    ``y_stream`` ``[N, O]`` raw is the served output for every row of the
    series from its first row: row t predicts the target at ``t + horizon``.
    The test rows are the window score's (``dataset.test_rows``).
    """
    y, rows = dataset.y_test_raw, dataset.test_rows  # [n_test, O], [n_test]
    pred = np.asarray(y_stream, np.float64)[rows - dataset.horizon]  # [n_test, O]
    per = {col: regression_metrics(y[:, j], pred[:, j]) for j, col in enumerate(dataset.series.targets)}
    metrics["streamed"] = {**regression_metrics(y, pred), "per_target": per, "rows": int(len(rows)),
                           "how": "the exported step graph, one sample per call from the series' first row, "
                                  "state carried (what a served stream returns)"}
    metrics["window"] = {"rmse": metrics["rmse"], "mae": metrics["mae"], "mse": metrics["mse"],
                         "how": f"each test window of {dataset.window} samples from zero state (Keras predict)"}
    return metrics


def persistence_warning(metrics: dict[str, Any], advice: str | None = None) -> str | None:
    """One line when the model loses to persistence on the test part (streamed score if known), else None.

    Reads only the manifest's ``metrics`` dict, so ``eddy info`` uses it on any model directory.
    """
    base = (metrics.get("baselines") or {}).get("persistence") or {}
    score = (metrics.get("streamed") or {}).get("rmse", metrics.get("rmse"))
    naive = base.get("rmse")
    if not isinstance(score, (int, float)) or not isinstance(naive, (int, float)) or not score > naive:
        return None
    which = "streamed" if "streamed" in metrics else "window"
    advice = advice or ("try --target-transform delta (or log_delta) for a trending series, more --epochs, "
                        "another --window, or more data")
    return (f"warning: the model loses to persistence (repeating the last value) on the test part: {which} RMSE "
            f"{score:.4g} vs {naive:.4g} ({score / naive:.2f}x); {advice}")


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
