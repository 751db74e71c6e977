"""Live accuracy: a session's figures from its monitor row, and a model version's pooled over its sessions.

Every actual a stream delivers scores the forecast made ``horizon`` samples
earlier (:mod:`eddy.runtime.core.monitor`). Two views of those scores:

- **per session**: exponentially weighted means kept in the session's
  monitor row (window :data:`~eddy.runtime.core.calibration.WINDOW` samples,
  a plain mean before that many), read by :func:`session_figures`;
- **per model version**: :class:`LivePool` pools the scores of every session
  of the version in this process, exponentially weighted over the last
  :data:`POOL_WINDOW` actuals, and runs the drift test on them (combined
  Shewhart-CUSUM, see :data:`~eddy.runtime.core.monitor.CUSUM_K`): when it raises the
  alarm, one warning line on the ``eddy.drift`` logger names the model, the
  version and the figures.

RMSE and MAE are over every observed target (as the manifest's test figures
are); coverage is the fraction of actuals inside the interval issued for them.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .monitor import CUSUM_LIMIT, PREDICTORS, SHEWHART, Monitor, cusum_path

__all__ = ["POOL_WINDOW", "LiveFigures", "LivePool", "reference_figures", "session_figures"]

POOL_WINDOW = 1000  # actuals: a model version's pooled figures are their exponentially weighted mean
_FOLD = 64  # steps queued before they are folded into the pooled figures

log = logging.getLogger("eddy.drift")


@dataclass(frozen=True)
class LiveFigures:
    """Live accuracy of one session or one model version (pooled)."""

    model: str  # "name/version"
    actuals: int  # actuals scored (forecasts whose actual arrived)
    window: int  # the exponential weighting's window, in actuals
    rmse: dict[str, float]  # predictor (model, persistence, seasonal_naive) -> RMSE
    mae: dict[str, float]  # predictor -> MAE
    coverage: dict[float, float]  # level -> fraction of actuals inside their interval
    drift: bool  # the drift test's alarm is raised
    cusum: tuple[float, float]  # the drift test's two statistics (alarm above CUSUM_LIMIT)
    reference: dict[str, Any] = field(default_factory=dict)  # the test part's figures (manifest metrics)
    width: dict[float, list[float]] = field(default_factory=dict)  # sessions: each level's current half-width
    # per target (score space: raw units, or a ratio for the relative space)

    @property
    def error_ratio(self) -> float | None:
        """The model's RMSE over the best naive baseline's (below 1: the model wins)."""
        base = [v for k, v in self.rmse.items() if k != "model" and v > 0]
        model = self.rmse.get("model")
        return None if model is None or not base else model / min(base)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "actuals": self.actuals, "window": self.window, "rmse": self.rmse,
                "mae": self.mae, "error_ratio": self.error_ratio,
                "coverage": {str(k): v for k, v in self.coverage.items()}, "drift": self.drift,
                "cusum": list(self.cusum), "reference": self.reference,
                "width": {str(k): v for k, v in self.width.items()}}


def reference_figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """The test part's figures to show next to live ones: RMSE of the model (streamed when recorded) and of the
    naive baselines live figures score (persistence, seasonal naive), and the intervals' test coverage."""
    streamed = metrics.get("streamed") or {}
    ref: dict[str, Any] = {}
    if isinstance(streamed.get("rmse", metrics.get("rmse")), (int, float)):
        ref["rmse"] = {"model": float(streamed.get("rmse", metrics.get("rmse")))}
        for k, b in (metrics.get("baselines") or {}).items():  # the baselines a stream is scored against
            if k in PREDICTORS and isinstance(b, dict) and isinstance(b.get("rmse"), (int, float)):
                ref["rmse"][k] = float(b["rmse"])
    levels = (metrics.get("intervals") or {}).get("levels") or {}
    cov = {float(f["level"]): float(f["served_coverage"]) for f in levels.values()
           if isinstance(f, dict) and isinstance(f.get("served_coverage"), (int, float)) and "level" in f}
    if cov:
        ref["coverage"] = cov  # level -> the test part's coverage as served (online recalibration on)
    return ref


def session_figures(monitor: Monitor, row: np.ndarray, reference: dict[str, Any] | None = None) -> LiveFigures:
    """A session's live accuracy from its monitor row ``[K]``."""
    ob, lv, p = monitor._ob, monitor._l, monitor._p
    o = monitor._o
    w = row[monitor._w_at: monitor._w_at + lv * o].reshape(lv, o) * row[monitor._scale_at: monitor._scale_at + o] \
        if lv else np.zeros((0, o))  # the half-widths issued now: q x scale
    width = {lvl: w[i].tolist() for i, lvl in enumerate(monitor.levels)}
    if not ob:
        return LiveFigures(monitor.model, 0, monitor.window, {}, {}, {}, False, (0.0, 0.0), reference or {}, width)
    n_model, n_season = (int(v) for v in row[monitor._count_at: monitor._count_at + 2])
    sq = row[monitor._sq_at: monitor._sq_at + p * ob].reshape(p, ob)
    ab = row[monitor._ab_at: monitor._ab_at + p * ob].reshape(p, ob)
    counts = [n_model, n_model, n_season]
    rmse = {PREDICTORS[i]: math.sqrt(float(sq[i].mean())) for i in range(p) if counts[i]}
    mae = {PREDICTORS[i]: float(ab[i].mean()) for i in range(p) if counts[i]}
    cov = row[monitor._cov_at: monitor._cov_at + lv * ob].reshape(lv, ob)
    coverage = {lvl: float(cov[i].mean()) for i, lvl in enumerate(monitor.levels)} if n_model else {}
    cusum = (float(row[monitor._cusum_at]), float(row[monitor._cusum_at + 1]))
    return LiveFigures(monitor.model, n_model, monitor.window, rmse, mae, coverage,
                       max(cusum) > CUSUM_LIMIT, cusum, reference or {}, width)


class LivePool:
    """A model version's live accuracy over all its sessions in this process, and its drift alarm.

    :meth:`add` takes the scored errors of a step (``Advanced.observed``) and only queues them: every
    :data:`_FOLD` steps, and whenever :meth:`figures` reads them (from any thread: a scrape), the queue is folded
    in, in order, so the per-step cost is a list append. Scores folded together count as simultaneous: the pool
    decays by ``(1 - 1/window)`` per actual. The drift test runs over them in order, so it raises its alarm at
    the fold after the actual that crossed the limit.
    """

    def __init__(self, monitor: Monitor, reference: dict[str, Any] | None = None,
                 window: int = POOL_WINDOW) -> None:
        self.monitor = monitor
        self.window = window
        self.reference = reference or {}
        self._decay = 1.0 - 1.0 / window
        ob, lv, p = monitor._ob, monitor._l, monitor._p
        self._columns = p + lv  # pooled means: squared and absolute error per predictor, then coverage per level
        self._sum = np.zeros((2, self._columns))  # [squared | absolute, column]; coverage in row 0
        self._weight = np.zeros(self._columns)
        self._count = np.zeros(self._columns, np.int64)
        self._cusum = np.zeros(2)
        self.drift = False  # the alarm: raised past CUSUM_LIMIT, cleared when both statistics are back to 0
        self.alarms = 0  # times the alarm was raised
        self._lock = threading.Lock()
        self._ob, self._lv, self._p = ob, lv, p
        self._queue: list[np.ndarray] = []

    def add(self, observed: np.ndarray | None) -> None:
        """Pool one step's scores ``[B, n, E]`` (NaN where nothing was scored)."""
        if observed is None or not observed.size:
            return
        with self._lock:
            self._queue.append(observed)
            full = len(self._queue) >= _FOLD
        if full:
            self.fold()

    def fold(self) -> None:
        """Fold the queued scores into the pooled figures and the drift test (in the order they were added)."""
        with self._lock:
            queue, self._queue = self._queue, []
            if queue:
                self._fold(np.concatenate([q.reshape(-1, q.shape[-1]) for q in queue]))

    def _fold(self, obs: np.ndarray) -> None:
        ob, lv, p = self._ob, self._lv, self._p
        errors = obs[:, : p * ob].reshape(len(obs), p, ob)  # [N, P, O']
        hits = obs[:, p * ob: (p + lv) * ob].reshape(len(obs), lv, ob)  # [N, L, O']
        for c in range(self._columns):
            if c < p:
                e = errors[:, c]
                ok = ~np.isnan(e[:, 0])
                k = int(ok.sum())
                values = (e[ok] ** 2).mean(axis=1), np.abs(e[ok]).mean(axis=1)
            else:
                h = hits[:, c - p]
                ok = ~np.isnan(h[:, 0])
                k = int(ok.sum())
                values = h[ok].mean(axis=1), h[ok].mean(axis=1)
            if not k:
                continue
            keep = self._decay ** k
            self._sum[0, c] = self._sum[0, c] * keep + float(values[0].sum())
            self._sum[1, c] = self._sum[1, c] * keep + float(values[1].sum())
            self._weight[c] = self._weight[c] * keep + k
            self._count[c] += k
        self._test(obs[:, -2:])

    def _test(self, x: np.ndarray) -> None:
        """The pooled drift test over this step's standardised errors, in order (the sessions' recursion, vectorised:
        :func:`~eddy.runtime.core.monitor.cusum_path`)."""
        peak, jump = [0.0, 0.0], False
        for i in range(2):
            v = x[:, i][~np.isnan(x[:, i])]
            if not len(v):
                peak[i] = self._cusum[i]
                continue
            s = cusum_path(float(self._cusum[i]), v, shewhart=i == 0)  # [N]
            jump = jump or (i == 0 and bool((v > SHEWHART - 1.0).any()))
            peak[i] = float(s.max())
            self._cusum[i] = float(s[-1])
        if not self.drift and max(peak) > CUSUM_LIMIT:
            self.drift = True
            self.alarms += 1
            f = self._figures()
            which = (f"one error beyond {SHEWHART:g} reference MAEs" if jump else "error above its reference level") \
                if peak[0] > CUSUM_LIMIT else "losing to its naive baseline"
            ref = (self.reference.get("rmse") or {}).get("model")
            log.warning("drift model=%s statistic=%r live_rmse=%.4g test_rmse=%s error_ratio=%s actuals=%d "
                        "cusum=%.1f,%.1f limit=%g", self.monitor.model, which, f.rmse.get("model", math.nan),
                        "n/a" if ref is None else f"{ref:.4g}",
                        "n/a" if f.error_ratio is None else f"{f.error_ratio:.3g}", f.actuals, *self._cusum,
                        CUSUM_LIMIT)
        elif self.drift and max(self._cusum) <= 0.0:
            self.drift = False
            log.info("drift cleared model=%s", self.monitor.model)

    def figures(self) -> LiveFigures:
        self.fold()
        with self._lock:
            return self._figures()

    def _figures(self) -> LiveFigures:
        p = self._p
        mean = np.divide(self._sum, self._weight, out=np.zeros_like(self._sum), where=self._weight > 0)
        rmse = {PREDICTORS[c]: math.sqrt(float(mean[0, c])) for c in range(p) if self._count[c]}
        mae = {PREDICTORS[c]: float(mean[1, c]) for c in range(p) if self._count[c]}
        coverage = {lvl: float(mean[0, p + i]) for i, lvl in enumerate(self.monitor.levels) if self._count[p + i]}
        return LiveFigures(self.monitor.model, int(self._count[0]) if p else 0, self.window, rmse, mae, coverage,
                           self.drift, (float(self._cusum[0]), float(self._cusum[1])), self.reference)
