"""Test-set evaluation shared by ``eddy train`` and ``eddy export --data``: the model's error in raw
units next to the naive baselines (persistence, and seasonal naive when a season is given) and, when the
run computed them (:mod:`eddy.trainer.classical`), the classical ones (AutoETS, AutoARIMA, AutoTheta).

Two scores of the same test rows: the *window* score (each test window run from
zero state, as Keras' ``predict`` sees it) and the *streamed* score (the
exported graph run over the whole series from its first row with the state
carried, which is what a served stream returns; :func:`add_streamed`). The
streamed one is the accuracy a user gets.

Numpy only; :func:`evaluate` takes any object with a Keras-style ``predict``
(a Keras model is run by :func:`forward`).
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

import numpy as np

from .classical import LABELS as CLASSICAL_LABELS
from .classical import score_classical
from .transform import DELTA_KINDS
from .windows import Dataset

__all__ = ["CLASSICAL_MARGIN", "RANDOM_WALK_MARGIN", "Predictor", "add_streamed", "baseline_warnings", "best_classical",
           "blend_summary", "evaluate", "forward", "regression_metrics", "score_test_set", "streamed_score", "val_rmse"]

FORWARD_ROWS = 1024  # windows per call of a Keras model in forward() (bounds the memory of one call)
CLASSICAL_MARGIN = 0.05  # warn when the model's test RMSE is more than 5 % above the best classical baseline's
RANDOM_WALK_MARGIN = 0.02  # no classical model beats persistence by more than 2 %: the series behaves like a random walk


class Predictor(Protocol):
    """What :func:`evaluate` needs of a model: Keras' ``predict``, ``[N, W, F]`` -> ``[N, O]``."""

    def predict(self, x: np.ndarray, verbose: int = ...) -> np.ndarray: ...


def forward(model: Predictor, x: np.ndarray) -> np.ndarray:
    """What ``model.predict(x)`` answers, ``[N, W, F]`` -> ``[N, O]`` float32.

    A Keras model is called on ``x`` directly, :data:`FORWARD_ROWS` windows at a time: the same float32
    computation (bit-identical to ``predict`` for the cells eddy exports), without what ``predict`` adds per
    model, a traced graph and a tf.data pipeline (~0.4 s of CPU, more than the windows of a series cost).
    Any other predictor (or no windows at all) goes through its ``predict``.
    """
    keras = sys.modules.get("keras")  # a Keras model means keras is imported; this module stays numpy-only
    if keras is None or not isinstance(model, keras.Model) or len(x) == 0:
        return np.asarray(model.predict(x, verbose=0))
    x = np.asarray(x, np.float32)
    return np.concatenate([np.asarray(model(x[i:i + FORWARD_ROWS], training=False))
                           for i in range(0, len(x), FORWARD_ROWS)])


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, MAE and RMSE over every element of two equally shaped arrays."""
    err = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    mse = float(np.mean(err**2))
    return {"mse": mse, "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(mse))}


def evaluate(model: Predictor, dataset: Dataset, season: int | None = None,
             classical: dict[str, dict[str, Any]] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Predict ``dataset``'s test windows and score them: ``(y_pred [n_test, O] raw, metrics)``
    (see :func:`score_test_set`)."""
    y_pred = dataset.raw_predictions(forward(model, dataset.x_test), dataset.test_rows)  # [n_test, O]
    return y_pred, score_test_set(dataset, y_pred, season, classical)


def val_rmse(model: Predictor, dataset: Dataset) -> float:
    """The validation windows' RMSE in raw units (what ``--target-transform auto`` compares across kinds)."""
    assert dataset.val_rows is not None  # set by make_dataset
    y_pred = dataset.raw_predictions(forward(model, dataset.x_val), dataset.val_rows)  # [n_val, O]
    return regression_metrics(dataset.series.outputs[dataset.val_rows], y_pred)["rmse"]


def streamed_score(dataset: Dataset, y_stream: np.ndarray) -> dict[str, Any]:
    """The streamed test score: RMSE, MAE and MSE, overall and per target, of ``y_stream`` ``[N, O]`` raw, the
    served output for every row of the series from its first row (row t predicts the target at ``t + horizon``),
    on the window score's test rows (``dataset.test_rows``)."""
    y, rows = dataset.y_test_raw, dataset.test_rows  # [n_test, O], [n_test]
    pred = np.asarray(y_stream, np.float64)[rows - dataset.horizon]  # [n_test, O]
    per = {col: regression_metrics(y[:, j], pred[:, j]) for j, col in enumerate(dataset.series.targets)}
    return {**regression_metrics(y, pred), "per_target": per, "rows": int(len(rows)),
            "how": "the exported step graph, one sample per call from the series' first row, state carried (what "
                   "a served stream returns)"}


def add_streamed(metrics: dict[str, Any], dataset: Dataset, y_stream: np.ndarray) -> dict[str, Any]:
    """Add the streamed score (:func:`streamed_score`) to ``metrics`` next to the window score (in place, also
    returned)."""
    metrics["streamed"] = streamed_score(dataset, y_stream)
    metrics["window"] = {"rmse": metrics["rmse"], "mae": metrics["mae"], "mse": metrics["mse"],
                         "how": f"each test window of {dataset.window} samples from zero state (Keras predict)"}
    return metrics


def baseline_warnings(metrics: dict[str, Any], *, window: int | None = None, advice: str | None = None,
                      seasonal_advice: str | None = None, training: str | None = None) -> list[str]:
    """One warning line per baseline the model loses to on the test part, else an empty list.

    The model's score is the streamed test RMSE (what a served stream returns) when ``metrics`` has it, else
    the window one. Baselines: persistence (repeating the last value) and, when the run had a season,
    seasonal naive (the value ``season`` steps before), each when the model's RMSE is above theirs; the best
    classical model (AutoETS, AutoARIMA, AutoTheta, when the run scored them) when the model's RMSE is more than
    :data:`CLASSICAL_MARGIN` above its. When no classical model beats persistence by more than
    :data:`RANDOM_WALK_MARGIN`, the persistence line says the series behaves like a random walk instead of
    suggesting changes, and a model that beats persistence there gets a line saying so too (its edge is noise).
    ``advice``/``seasonal_advice`` replace the default suggestions (those of ``eddy train``; ``window`` is the
    model's, named when it is shorter than the season; ``training`` is the manifest's
    ``training.training``: a ``windows`` model is pointed to ``--training tbptt``).
    Reads only the manifest's ``metrics`` dict, so ``eddy info`` uses it on any model directory.
    """
    score = (metrics.get("streamed") or {}).get("rmse", metrics.get("rmse"))
    if not _is_number(score):
        return []
    which = "streamed" if "streamed" in metrics else "window"
    kind = (metrics.get("target_transform") or {}).get("kind")
    baselines = metrics.get("baselines") or {}
    lines = []
    persistence = (baselines.get("persistence") or {}).get("rmse", metrics.get("persistence_rmse"))
    best = best_classical(metrics)
    walk = (best is not None and _is_number(persistence) and persistence > 0
            and best[1] >= persistence * (1 - RANDOM_WALK_MARGIN))
    if _is_number(persistence) and score > persistence:
        if walk:
            assert best is not None
            persistence_advice = (f"no classical model beats it by more than {RANDOM_WALK_MARGIN:.0%} either (best: "
                                  f"{CLASSICAL_LABELS[best[0]]} {best[1]:.4g}, {best[1] / persistence:.3f}x): the "
                                  "series behaves like a random walk, whose best one-step forecast is the last value")
        else:
            persistence_advice = advice or _tbptt_first(training, _persistence_advice(kind))
        lines.append(_lose_line("persistence (repeating the last value)", which, score, persistence, persistence_advice))
    elif walk:
        assert best is not None and _is_number(persistence)
        lines.append(f"warning: the series behaves like a random walk on the test part: no classical model beats "
                     f"persistence (repeating the last value) by more than {RANDOM_WALK_MARGIN:.0%} (best: "
                     f"{CLASSICAL_LABELS[best[0]]} {best[1]:.4g}, {best[1] / persistence:.3f}x) and the model's {which} "
                     f"RMSE is {score:.4g} ({score / persistence:.3f}x): repeating the last value forecasts as well; "
                     "take a small edge over it for noise")
    seasonal = baselines.get("seasonal_naive") or {}
    season = seasonal.get("season")
    if _is_number(seasonal.get("rmse")) and score > seasonal["rmse"]:
        lines.append(_lose_line(f"seasonal naive (repeating the value {season} steps before)", which, score,
                                seasonal["rmse"],
                                seasonal_advice or _tbptt_first(training, _seasonal_advice(season, window, kind))))
    if best is not None and score > best[1] * (1 + CLASSICAL_MARGIN) and not walk:
        key, rmse = best
        fitted = baselines[key].get("model")
        name = f"{CLASSICAL_LABELS[key]}" + (f" ({fitted})" if fitted else "")
        lines.append(_lose_line(f"{name}, the best classical baseline, by more than {CLASSICAL_MARGIN:.0%}", which,
                                score, rmse, advice or _tbptt_first(training, _classical_advice(
                                    key, season, averaged="ensemble" in metrics))))
    return lines


def blend_summary(b: Any) -> str | None:
    """One line on a manifest's ``metrics.blend`` ``b`` (``eddy train --blend``, :mod:`eddy.trainer.blend`), or None
    without one: the ARIMA and its weight, the validation figures that chose it, and the networks' own streamed test
    score."""
    if not isinstance(b, dict):
        return None
    if b.get("kind") != "arima":
        return f"no blend: {b.get('why', 'off')}"
    arima, val = b.get("arima") or {}, b.get("validation_rmse") or {}
    own = (b.get("network_streamed") or {}).get("rmse")
    return (f"(1 - {b['weight']:.3f}) x networks + {b['weight']:.3f} x {arima.get('model', 'ARIMA')} (its one-step "
            f"recursion in the graph, fitted on the {b.get('fitted_on', '?')}); weight from the validation RMSE of the "
            f"networks {_fmt(val.get('networks'))} and of {b.get('chosen_with', 'the ARIMA')} fitted on the training "
            f"rows {_fmt(val.get('arima'))} (blend {_fmt(val.get('blend'))}); networks alone: streamed test RMSE "
            f"{_fmt(own)}")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if _is_number(value) else "?"


def best_classical(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """``(key, test RMSE)`` of the classical baseline with the lowest test RMSE in ``metrics``, if any was scored."""
    baselines = metrics.get("baselines") or {}
    scored = [(b["rmse"], key) for key in CLASSICAL_LABELS
              if isinstance(b := baselines.get(key), dict) and _is_number(b.get("rmse"))]
    if not scored:
        return None
    rmse, key = min(scored)
    return key, float(rmse)


def _classical_advice(key: str, season: Any, averaged: bool) -> str:
    """What to try when a classical model forecasts better than the network (``averaged``: --members > 1)."""
    tries = []
    if season is None:
        tries.append("--season N if the series has a season (the classical models and seasonal_delta then use it)")
    if not averaged:
        tries.append("--members 5 (the default: an average of networks from several seeds)")
    tries.append("more --epochs, another --window or --units, or more data")
    return ("try " + "; ".join(tries) + f"; or forecast this series with {CLASSICAL_LABELS[key]} itself "
            "(statsforecast): on these test rows it is the better one-step forecaster")


def _lose_line(baseline: str, which: str, score: float, naive: float, advice: str) -> str:
    return (f"warning: the model loses to {baseline} on the test part: {which} RMSE {score:.4g} vs {naive:.4g} "
            f"({score / naive:.2f}x); {advice}")


def _tbptt_first(training: str | None, advice: str) -> str:
    """``advice``, led by ``--training tbptt`` for a model trained on windows (it is served over the whole history)."""
    if training != "windows":
        return advice
    lead = "try --training tbptt (it was trained on windows from zero state but is served over the whole history); "
    return lead + (advice[len("try "):] if advice.startswith("try ") else advice)


def _persistence_advice(kind: str | None) -> str:
    if kind in DELTA_KINDS:
        return "try more --epochs, another --window or --units, or more data"
    return "try --target-transform delta (or log_delta) for a trending series, more --epochs, another --window, or more data"


def _seasonal_advice(season: Any, window: int | None, kind: str | None) -> str:
    """What to try when the value one season back forecasts better than the model."""
    tries = []
    if kind != "seasonal_delta":
        tries.append(f"--target-transform seasonal_delta --season {season} (the network then predicts the change "
                     "from the value one season back)")
    if isinstance(window, int) and isinstance(season, int) and window < season:
        tries.append(f"--window {season} or more, so each training window spans a season (this model's is {window})")
    tries.append("more --epochs or --units, or more data")
    return "try " + "; ".join(tries)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def score_test_set(dataset: Dataset, y_pred: np.ndarray, season: int | None = None,
                   classical: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Test-set metrics in raw units, next to the naive baselines and the classical ones.

    ``y_pred`` is ``[n_test, O]`` raw. Persistence predicts the target's value
    at each window's last row (``horizon`` rows before the predicted one);
    seasonal naive (with ``season``) the value ``season`` rows before the
    predicted one; ``classical`` is :func:`eddy.trainer.classical.classical_forecasts`'
    output for the test rows (scored as ``auto_ets``, ``auto_arima``, ``auto_theta``).
    Top-level ``rmse``/``mae``/``mse`` and ``persistence_*``
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
    if classical:
        baselines.update(score_classical(classical, scored, season))
    return {
        "split": "test",
        "windows": int(len(y)),
        **model,
        **{f"persistence_{k}": v for k, v in persistence.items() if k != "per_target"},
        "baselines": baselines,
    }
