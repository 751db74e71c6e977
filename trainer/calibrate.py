"""Calibrated prediction intervals, made where a model is exported (``eddy train``, ``eddy export --data``).

Split conformal prediction on the *streamed* residuals of the validation
part: the exported step graph run over the series from its first row with
the state carried (``y_stream``, what a served stream returns), scored on the
validation rows in the score space of the model's target transform
(:func:`eddy.runtime.core.calibration.space_for`), one quantile per target
and level (:func:`~eddy.runtime.core.calibration.conformal_quantile`). The
same for *normalised* scores, what a session's online recalibration tracks:
each validation score over the scale a session streaming the series from its
first row held when the forecast was issued
(:func:`~eddy.runtime.core.calibration.scale_path`, started at the validation
part's mean score).

The test part then says what the intervals deliver, next to the RMSE:

- ``coverage``/``width``: the split-conformal intervals as calibrated
  (fixed widths), the fraction of actuals inside them and their mean width;
- ``served_coverage``/``served_width``: what a stream from the series' first
  row is served, with the runtime's online recalibration
  (:mod:`eddy.runtime.core.monitor`, the very code the server runs);
- ``persistence_width``: intervals around persistence's forecast (the last
  value) built from persistence's own test residuals so as to cover exactly as
  many test actuals as the model's split-conformal intervals did (an oracle
  in persistence's favour): the width the model's intervals should beat.

Numpy only (the runtime's monitor runs on numpy and Python floats).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eddy.runtime.core.calibration import (
    Calibration,
    Normalised,
    bounds,
    conformal_quantile,
    level_name,
    scale_path,
    scores,
    space_for,
)
from eddy.runtime.core.monitor import Monitor

from .windows import Dataset

__all__ = ["calibrate", "reachable_levels"]


def reachable_levels(dataset: Dataset, levels: tuple[float, ...]) -> tuple[tuple[float, ...], list[str]]:
    """The levels the validation part has residuals enough for (``ceil((n + 1) * level) <= n``), and one note per
    level dropped (training goes on without it rather than fail on a short series)."""
    start, end = dataset.rows["val"]
    n = end - start
    kept, notes = [], []
    for level in sorted(levels):
        if conformal_quantile(np.zeros(n), level) == 0.0:
            kept.append(level)
        else:
            need = next(m for m in range(n, 10**7) if conformal_quantile(np.zeros(m), level) == 0.0)
            notes.append(f"no {level_name(level)}% interval: it needs at least {need} validation rows, the validation "
                         f"part has {n} (give a larger one with --split)")
    return tuple(kept), notes


def calibrate(dataset: Dataset, y_stream: np.ndarray, levels: tuple[float, ...], *, name: str,
              features: list[str], targets: list[str], season: int | None,
              metrics: dict[str, Any]) -> tuple[Calibration | None, dict[str, Any], dict[str, np.ndarray] | None]:
    """Calibrate ``levels`` on the validation rows of ``y_stream`` ``[N, O]`` (raw; row t predicts t + horizon).

    Returns the calibration (the manifest's ``calibration``; None when no level could be calibrated), the test
    figures (``metrics["intervals"]``, with a ``notes`` line per level left out) and the served bounds over the
    whole series (``{"lower"|"upper": [L, N, O]}``, for the report's plot).
    """
    h, series = dataset.horizon, dataset.series
    levels, notes = reachable_levels(dataset, levels)
    space = space_for(dataset.kind)
    if not levels:
        return None, {"levels": {}, "notes": notes}, None
    actual = np.asarray(series.outputs, np.float64)  # [N, O]
    pred = np.asarray(y_stream, np.float64)  # [N, O]
    start, end = dataset.rows["val"]
    val = np.arange(start, end)  # the validation rows' targets
    s_val = scores(space, actual[val], pred[val - h])  # [n_val, O]
    quantiles: dict[str, tuple[float, ...]] = {}
    for j, target in enumerate(targets):
        q = [conformal_quantile(s_val[:, j], level) for level in levels]
        quantiles[target] = tuple(q)
    finite = tuple(lv for i, lv in enumerate(levels) if all(math.isfinite(q[i]) for q in quantiles.values()))
    for lv in levels:
        if lv not in finite:  # relative scores of non-positive values are infinite
            notes.append(f"no {level_name(lv)}% interval: too many validation residuals have no finite score")
    if len(finite) < len(levels):
        keep = [i for i, lv in enumerate(levels) if lv in finite]
        levels, quantiles = finite, {t: tuple(q[i] for i in keep) for t, q in quantiles.items()}
        if not levels:
            return None, {"levels": {}, "notes": notes}, None
    extra = {"method": "split conformal", "residuals": "the validation part, streamed from the series' first row "
             "(the exported step graph, state carried)",
             "score": "|y - yhat|" if space == "absolute" else "max(y / yhat, yhat / y) - 1"}
    mae = np.abs(actual[val] - pred[val - h]).mean(axis=0)  # [O] the drift test's unit for the error level
    cal = Calibration(tuple(levels), quantiles, space, len(val), season=season if season and season >= h else None,
                      mae={t: float(mae[j]) for j, t in enumerate(targets) if math.isfinite(mae[j]) and mae[j] > 0},
                      normalised=_normalised(space, actual, pred, h, val, targets, levels), extra=extra)

    monitor = Monitor.of(name, targets, features, h, cal, metrics)  # the runtime's own code, as served
    x = np.asarray(series.inputs, np.float32)[None]  # [1, N, F]
    answer = monitor.advance(monitor.fresh(1), 0, x, np.asarray(y_stream, np.float32)[None]).answer[0]  # [N, W]
    o = len(targets)
    served_lo = np.stack([answer[:, o * (1 + 2 * i): o * (2 + 2 * i)] for i in range(len(levels))])  # [L, N, O]
    served_hi = np.stack([answer[:, o * (2 + 2 * i): o * (3 + 2 * i)] for i in range(len(levels))])

    test = dataset.test_rows  # [n_test]
    y_test, p_test = actual[test], pred[test - h]  # [n_test, O]
    naive = actual[test - h]  # persistence's forecast
    s_naive = scores(space, y_test, naive)  # [n_test, O]
    q = cal.quantile_matrix(targets)  # [L, O]
    figures: dict[str, Any] = {}
    for i, level in enumerate(levels):
        lo, hi = bounds(space, p_test, q[i])  # [n_test, O], fixed widths
        lo, hi = lo.astype(np.float32).astype(np.float64), hi.astype(np.float32).astype(np.float64)
        inside = (lo <= y_test) & (y_test <= hi)
        coverage = float(inside.mean())
        s_lo, s_hi = served_lo[i][test - h].astype(np.float64), served_hi[i][test - h].astype(np.float64)
        q_naive = np.array([np.quantile(s_naive[:, j], coverage, method="inverted_cdf") for j in range(o)])
        n_lo, n_hi = bounds(space, naive, q_naive)
        figures[level_name(level)] = {
            "level": level,
            "coverage": coverage,
            "width": float((hi - lo).mean()),
            "served_coverage": float(((s_lo <= y_test) & (y_test <= s_hi)).mean()),
            "served_width": float((s_hi - s_lo).mean()),
            "persistence_width": float((n_hi - n_lo).mean()),
        }
    test_figures = {"rows": int(len(test)), "space": space, "levels": figures, "notes": notes,
                    "how": "coverage and width (mean upper - lower, raw units) of the split-conformal intervals on the "
                           "test part; served_*: the intervals a stream from the series' first row is served (online "
                           "recalibration on); persistence_width: intervals around persistence's forecast sized on its "
                           "own test residuals to cover as many test actuals as the model's"}
    return cal, test_figures, {"lower": served_lo, "upper": served_hi}


def _normalised(space: str, actual: np.ndarray, pred: np.ndarray, h: int, val: np.ndarray, targets: list[str],
                levels: tuple[float, ...]) -> Normalised | None:
    """Normalised scores' calibration: per target, the scale a new session starts from (the validation part's mean
    score) and per level the split conformal quantile of the validation scores over the scale their forecast was
    issued with, the session's scale after the actual of that row (:func:`scale_path` over every scored row from
    the series' first, as a stream from there holds it). None when some target's validation scores give no positive
    finite scale or quantile (the session then tracks the half-width itself)."""
    n = len(actual)
    s = np.full((n, len(targets)), np.nan)  # [N, O]: row p scores the forecast made at p - h (NaN: none made)
    made = pred[:n - h]
    with np.errstate(invalid="ignore"):
        s[h:] = np.where(np.isfinite(made), scores(space, actual[h:], made), np.nan)
    scale, quantiles = {}, {}
    for j, target in enumerate(targets):
        start = float(np.mean(s[val, j]))
        if not (math.isfinite(start) and start > 0):
            return None
        path = scale_path(s[:, j], start)  # [N]: the scale after each row
        q = tuple(conformal_quantile(s[val, j] / path[val - h], level) for level in levels)
        if not all(math.isfinite(v) for v in q):
            return None
        scale[target], quantiles[target] = start, q
    return Normalised(scale, quantiles)
