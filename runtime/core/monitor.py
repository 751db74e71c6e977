"""A session's intervals and live accuracy: online recalibration, scores against the naive baselines, drift.

A streaming forecaster gets the truth for free: a sample pushed at row ``t``
carries the actual value of every target that is also a feature, which is
what the forecast made ``horizon`` rows earlier predicted. :class:`Monitor`
uses it, per session and per step, vectorised over a batch of sessions:

1. **Score the forecast made ``h`` steps ago** (``h`` = the horizon): the
   interval issued then covered the actual or not; the model's, persistence's
   (the actual ``h`` rows back) and seasonal naive's (``season`` rows back)
   errors go into the session's live accuracy (exponentially weighted, see
   :data:`~eddy.runtime.core.calibration.WINDOW`).
2. **Recalibrate online** by quantile tracking (Angelopoulos, Candès and
   Tibshirani, *Conformal PID control for time series prediction*, 2023) on
   normalised scores: the half-width is ``q x scale``, where ``scale`` is the
   exponentially weighted mean of the session's recent scores
   (:func:`~eddy.runtime.core.calibration.scale_path`: weight 0.1 on the
   newest, a score capped at 4 scales) and ``q`` is tracked on the logarithm:
   a miss multiplies it by ``exp(gamma * level)``, a hit by
   ``exp(-gamma * (1 - level))``, so the long-run miss rate is ``1 - level``
   whatever the series does (for bounded scores). A jump in the error's scale
   moves ``scale`` within a few samples, so ``q`` barely has to move: tracking
   the half-width itself (what calibrations without normalised scores still
   do, scale 1) follows a jump only geometrically, and over the T forecasts
   after it misses ``log(growth) / (gamma T)`` more than nominal, 7-29 points
   on 59-91 forecasts of the bundled series (docs/guides/intervals.md). Why
   not adaptive conformal inference (Gibbs and Candès 2021), which moves the
   miscoverage rate over the fixed calibration scores: once a change is
   larger than every calibration residual, ACI can only issue an infinite
   interval (its rate goes below 0), and it needs the sorted residuals in
   every session; quantile tracking moves the width itself, one number per
   target and level, always finite.
3. **Issue** this step's intervals from the current widths, and remember the
   forecast and its intervals until their actual arrives.

Steps 1-3 use only elementwise float64 arithmetic (no reductions across
sessions, no transcendental function: the widths' factors are precomputed
constants), so a session's answers and state are bit-identical at any batch
size, in the server or in a local :class:`~eddy.runtime.core.model.Stream`.
Chunks loop over their samples in order, so a chunk gives what the same
samples pushed one by one give (up to the graphs' own differences).

The state of one session is one float64 row (:attr:`Monitor.width` values;
layout :data:`LAYOUT`), carried next to the graph state under the key
:data:`MONITOR`: in the server's slab, in exported state bytes, in the
Redis/Valkey record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .calibration import FLOOR, GAMMA, SCALE_CLIP, SCALE_RATE, WINDOW, Calibration, bounds
from .manifest import Manifest

__all__ = ["CUSUM_CAP", "CUSUM_K", "CUSUM_LIMIT", "LAYOUT", "MONITOR", "PREDICTORS", "SHEWHART", "Monitor", "Advanced",
           "Reference", "cusum_path"]

MONITOR = "#monitor"  # a session's monitor row in a state mapping ('#' is never in a graph input's name)
LAYOUT = "eddy.monitor/2"  # the row's layout; state bytes carry it, another layout starts a fresh row (/2: the
# per-target scale of normalised scores)
PREDICTORS = ("model", "persistence", "seasonal_naive")  # whose live errors are kept (seasonal naive with a season)

# The drift test: a combined Shewhart-CUSUM scheme (Lucas 1982) on two standardised error streams. The CUSUM part is
# Page's (1954) one-sided CUSUM on each: the model's absolute error over its reference MAE (the validation part's when
# the calibration records it, else the test part's), minus 1; and the model's absolute error minus the best naive
# baseline's, over the test MAE, minus the test part's gap between them (see Reference). Each observation adds
# clip(x - mean, -CAP, CAP) - K; an alarm when a sum passes LIMIT (it drains back to 0 at K per observation once
# errors are back in control). The Shewhart part: one error beyond SHEWHART reference MAEs (mean over the observed
# targets) lifts the first sum to at least LIMIT + CAP at once, the alarm rises with it and clears like the CUSUM's.
# It catches what a differencing model follows after one sample (a level shift: one very large error, then none).
CUSUM_K = 0.5  # allowance per observation, in units of the reference MAE: a doubling of the error is detected
CUSUM_CAP = 4.0  # one observation moves a CUSUM sum by at most this (one outlier alone never raises it)
CUSUM_LIMIT = 20.0  # alarm threshold, in units of the reference MAE
SHEWHART = 12.0  # one error beyond this many reference MAEs raises the alarm: e^-12 (1 in 160,000) for Laplace errors
_SHEWHART_X = SHEWHART - 1.0  # the same, on the first statistic (|error| / MAE - 1)
_LIFT = CUSUM_LIMIT + CUSUM_CAP  # where a Shewhart signal lifts the first sum: above the limit, drained in 48 actuals


@dataclass(frozen=True)
class Reference:
    """The figures the drift test compares live errors with (the manifest's calibration and test metrics)."""

    mae: np.ndarray  # [O'] the model's test MAE per observed target (the unit of the baseline statistic)
    baseline: str  # the naive baseline with the lowest test MAE: persistence or seasonal_naive
    gap: float  # mean over targets of (model MAE - that baseline's MAE) / model MAE: negative when the model wins
    level: np.ndarray  # [O'] the error level's unit: the validation part's streamed MAE (the test part's for
    # calibrations that do not record it)
    part: str = "test"  # where ``level`` comes from: "validation" or "test"

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any], targets: list[str], observed: list[int],
                     seasonal: bool, validation: Mapping[str, float] | None = None) -> Reference | None:
        """From ``metrics`` (streamed figures when present, else the window ones) and the calibration's validation
        MAE per target (``validation``, when recorded); None when the test figures are missing."""
        streamed = metrics.get("streamed") or {}
        per = streamed.get("per_target") or metrics.get("per_target") or {}
        baselines = metrics.get("baselines") or {}
        try:
            mae = np.array([float(per[targets[j]]["mae"]) if targets[j] in per
                            else float(streamed.get("mae", metrics["mae"])) for j in observed], np.float64)
            options = {"persistence": baselines.get("persistence") or {"mae": metrics["persistence_mae"],
                                                                      "per_target": {}}}
            if seasonal and baselines.get("seasonal_naive"):
                options["seasonal_naive"] = baselines["seasonal_naive"]
            naive = {k: np.array([float(((b.get("per_target") or {}).get(targets[j]) or b)["mae"]) for j in observed])
                     for k, b in options.items()}
        except (KeyError, TypeError, ValueError):
            return None
        if not len(mae) or not (np.isfinite(mae).all() and (mae > 0).all()):
            return None
        best = min(naive, key=lambda k: float(naive[k].mean()))
        gap = float(np.mean((mae - naive[best]) / mae))
        val = [validation.get(targets[j]) for j in observed] if validation else []  # checked by Calibration
        if val and None not in val:
            return cls(mae, best, gap, np.array(val, np.float64), "validation")
        return cls(mae, best, gap, mae)


@dataclass(frozen=True)
class Advanced:
    """What :meth:`Monitor.advance` returns for ``B`` sessions and ``n`` samples each."""

    block: np.ndarray  # [B, K] float64: the sessions' new monitor rows
    answer: np.ndarray  # [B, n, O * (1 + 2L)] float32: predictions, then lower and upper per level
    observed: np.ndarray | None  # [B, n, E] float64: this step's scored errors (NaN where nothing was scored)


@dataclass(frozen=True)
class Forecast:
    """Predictions with their intervals (what ``Stream.push(..., intervals=...)`` returns)."""

    y: np.ndarray  # [n, O] float32, raw units
    lower: dict[float, np.ndarray]  # level -> [n, O] float32
    upper: dict[float, np.ndarray]  # level -> [n, O] float32


class _Columns:
    """Column access on ``array[B, m]`` for the batch lane: ``c[i]`` is ``array[:, i]`` (or, for an index per row,
    ``array[rows, i]``); assignment writes it."""

    __slots__ = ("array", "rows")

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.rows = np.arange(len(array))

    def __getitem__(self, i: Any) -> np.ndarray:
        return self.array[:, i] if isinstance(i, int) else self.array[self.rows, i]

    def __setitem__(self, i: Any, value: Any) -> None:
        if isinstance(i, int):
            self.array[:, i] = value
        else:
            self.array[self.rows, i] = value


class _ArrayOps:
    """The kernel's operations on ``[B]`` arrays (one lane = B sessions)."""

    where = staticmethod(np.where)
    fmin = staticmethod(np.fmin)  # the smaller, and the other where one is NaN: ``v if v < cap else cap``
    isfinite = staticmethod(np.isfinite)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)


_F32_MAX = float(np.finfo(np.float32).max)  # bounds are clipped to float32's range (never infinite)
_SMALL_BATCH = 16  # up to this many sessions run one by one on Python floats (cheaper than numpy's per-call cost)


class Monitor:
    """The per-session monitor of one model version (see the module docstring); immutable, shared."""

    def __init__(self, manifest: Manifest) -> None:
        self._setup(f"{manifest.name}/{manifest.version}", list(manifest.targets), list(manifest.features),
                    manifest.horizon, manifest.intervals, manifest.metrics)

    @classmethod
    def of(cls, name: str, targets: list[str], features: list[str], horizon: int, calibration: Calibration | None,
           metrics: Mapping[str, Any]) -> Monitor:
        """A monitor from a model's parts (the trainer's, before its manifest exists)."""
        monitor = cls.__new__(cls)
        monitor._setup(name, targets, features, horizon, calibration, metrics)
        return monitor

    def _setup(self, name: str, targets: list[str], features: list[str], h: int, cal: Calibration | None,
               metrics: Mapping[str, Any]) -> None:
        self.calibration: Calibration | None = cal
        self.levels: tuple[float, ...] = cal.levels if cal else ()
        self.space = cal.space if cal else "absolute"
        self.model = name
        self.targets = targets
        self.observed = [j for j, t in enumerate(self.targets) if t in features]  # targets whose actual arrives
        self._features = [features.index(self.targets[j]) for j in self.observed]  # their feature columns
        self.horizon = h
        season = cal.season if cal else ((metrics.get("baselines") or {}).get("seasonal_naive") or {}).get("season")
        self.season: int | None = season if isinstance(season, int) and season >= h else None
        self.window = cal.window if cal else WINDOW
        self.reference = Reference.from_metrics(metrics, self.targets, self.observed, self.season is not None,
                                                cal.mae if cal else None)
        o, lv, ob = len(self.targets), len(self.levels), len(self.observed)
        self._o, self._l, self._ob = o, lv, ob
        self._r = max(h, self.season or 0)  # actuals remembered: for persistence (h back) and seasonal naive
        self._p = 3 if self.season else 2  # predictors scored
        sizes = {"w": lv * o, "scale": o if lv else 0}  # w: the tracked q per level and target; scale per target
        if ob:
            sizes |= {"pred": h * ob, "lo": h * lv * ob, "hi": h * lv * ob, "hist": self._r * ob, "count": 2,
                      "sq": self._p * ob, "ab": self._p * ob, "cov": lv * ob, "cusum": 2}
        self._at: dict[str, int] = {}
        k = 0
        for name, size in sizes.items():
            self._at[name] = k
            k += size
        self.width = k if (lv or ob) else 0  # float64 values per session; 0: nothing to keep
        at = self._at
        self._w_at, self._pred_at, self._scale_at = at["w"], at.get("pred", 0), at["scale"]
        self._lo_at, self._hi_at, self._hist_at = at.get("lo", 0), at.get("hi", 0), at.get("hist", 0)
        self._count_at, self._sq_at, self._ab_at = at.get("count", 0), at.get("sq", 0), at.get("ab", 0)
        self._cov_at, self._cusum_at = at.get("cov", 0), at.get("cusum", 0)
        self._slot_of = {j: jo for jo, j in enumerate(self.observed)}  # target -> its place among the observed
        self.n_observed = ob * self._p + lv * ob + 2 if ob else 0  # E: values per scored sample
        gamma = cal.gamma if cal else GAMMA
        floor = cal.floor if cal else FLOOR
        norm = cal.normalised if cal else None
        self.normalised = norm is not None  # False: the half-width itself is tracked (scale 1, never moved)
        q = cal.quantile_matrix(self.targets) if cal else np.zeros((0, o))  # [L, O]
        start = np.ones(o)
        if norm is not None:  # targets that never see their actual keep the calibrated width (scale 1)
            for j in self.observed:
                q[:, j] = norm.quantiles[self.targets[j]]
                start[j] = norm.scale[self.targets[j]]
        self._rate = norm.rate if norm else SCALE_RATE
        self._clip = norm.clip if norm else SCALE_CLIP
        self._scale_floor = [float(start[j]) * floor for j in self.observed]  # [O']
        self._scale_slots = [(jo, j, self._scale_floor[jo]) for jo, j in enumerate(self.observed)]
        self._fresh = np.zeros(self.width, np.float64)
        if lv:
            self._fresh[self._at["w"]:self._at["w"] + lv * o] = q.ravel()
            self._fresh[self._scale_at:self._scale_at + o] = start
        self._floor = [[float(q[li, j]) * floor for j in self.observed] for li in range(lv)]  # [L][O']
        self._up = [math.exp(gamma * lvl) for lvl in self.levels]  # a miss widens
        self._down = [math.exp(-gamma * (1.0 - lvl)) for lvl in self.levels]  # a hit narrows
        ref = self.reference
        self._mae = [float(v) for v in ref.mae] if ref is not None else None
        self._level = [float(v) for v in ref.level] if ref is not None else None
        self._base = PREDICTORS.index(ref.baseline) if ref is not None else 1
        self._gap = ref.gap if ref is not None else 0.0
        self.layout = f"{LAYOUT};O={o};L={lv};obs={ob};h={h};season={self.season or 0}"

    @property
    def live(self) -> bool:
        """True when some target is also a feature: the session sees actuals and keeps live accuracy."""
        return bool(self._ob)

    def fresh(self, batch: int = 1) -> np.ndarray:
        """Monitor rows of new sessions: the calibrated widths, nothing scored yet; ``[batch, K]`` float64."""
        return np.tile(self._fresh, (batch, 1))

    def advance(self, block: np.ndarray, position: Any, x: np.ndarray, y: np.ndarray) -> Advanced:
        """``B`` sessions take ``n`` samples each: monitor rows ``block [B, K]`` at ``position [B]`` (samples
        seen before), raw inputs ``x [B, n, F]`` and the graph's predictions ``y [B, n, O]``.

        Pure: ``block`` is not written to. Returns the new rows, the answer (predictions and every level's
        bounds) and the scored errors (for the model version's pooled figures).
        """
        b, n, _ = x.shape
        if not self.width:
            return Advanced(np.zeros((b, 0)), y, None)
        o, lv = self._o, self._l
        if b == 1 and n == 1:  # the commonest call (one sample of one stream): Python floats throughout
            row = block.reshape(-1).tolist()
            a, out = [0.0] * (o * (1 + 2 * lv)), [math.nan] * self.n_observed
            self._sample_floats(row, int(np.reshape(position, -1)[0]), x[0, 0].tolist(), y[0, 0].tolist(), a, out)
            return Advanced(np.array([row]), np.array([[a]], np.float32) if lv else y,
                            np.array([[out]]) if self._ob else None)
        new = np.array(block, np.float64).reshape(b, self.width)  # a copy
        answer = np.empty((b, n, o * (1 + 2 * lv)), np.float32) if lv else y
        observed = np.full((b, n, self.n_observed), np.nan) if self._ob else None
        pos = np.asarray(position, np.int64).reshape(b)
        if b <= _SMALL_BATCH:
            width, e = answer.shape[2], self.n_observed
            for i in range(b):
                if n > 1:  # a chunk: the widths sample by sample, the rest over the whole chunk at once
                    new[i], answer[i], out_i = self._chunk(new[i], int(pos[i]), x[i], y[i])
                    if observed is not None:
                        observed[i] = out_i
                    continue
                row, p = new[i].tolist(), int(pos[i])
                a, out = [0.0] * width, [math.nan] * e
                self._sample_floats(row, p, x[i, 0].tolist(), y[i, 0].tolist(), a, out)
                new[i] = row
                if lv:
                    answer[i, 0] = a
                if observed is not None:
                    observed[i, 0] = out
        else:
            state, a_cols = _Columns(new), None
            for k in range(n):
                if lv:
                    a_cols = _Columns(answer[:, k])
                out = _Columns(observed[:, k]) if observed is not None else None
                self._sample(_ArrayOps, state, pos + k, _Columns(x[:, k]), _Columns(y[:, k]), a_cols, out)
        return Advanced(new, answer, observed)

    # -- the kernel: one sample of one lane -------------------------------------------------------------------------
    def _sample(self, ops: Any, s: Any, p: Any, xk: Any, yk: Any, answer: Any, out: Any) -> None:
        """One sample for one lane (one session on floats, or B sessions on arrays); see the module docstring.

        ``s[i]`` reads and writes the lane's state, ``p`` is its position, ``xk[f]``/``yk[j]`` the sample's features
        and predictions, ``answer[k]`` and ``out[k]`` receive the answer and the scored errors.
        """
        o, lv, ob, h, r = self._o, self._l, self._ob, self.horizon, self._r
        at = self._at
        where = ops.where
        slot = 0 if h == 1 else p % h
        if ob:
            pred, hist = at["pred"], at["hist"]
            valid = p >= h  # a forecast for this row was made h rows ago
            made = []
            for jo in range(ob):
                m = s[pred + slot * ob + jo]
                made.append(m)
                valid = valid & ops.isfinite(m)
            actual = [xk[f] for f in self._features]
            back = 0 if r == 1 else (p - h) % r  # persistence: the actual h rows back
            errors = [[actual[jo] - made[jo] for jo in range(ob)],
                      [actual[jo] - s[hist + back * ob + jo] for jo in range(ob)]]
            ok = [valid, valid]
            count = at["count"]
            n0 = where(valid, s[count] + 1.0, s[count])
            s[count] = n0
            rate = 1.0 / ops.minimum(ops.maximum(n0, 1.0), self.window)  # plain mean, then exponential
            rates = [rate, rate]
            if self.season:
                seasonal = p >= self.season
                back_s = (p - self.season) % r
                errors.append([actual[jo] - s[hist + back_s * ob + jo] for jo in range(ob)])
                ok.append(seasonal)
                n1 = where(seasonal, s[count + 1] + 1.0, s[count + 1])
                s[count + 1] = n1
                rates.append(1.0 / ops.minimum(ops.maximum(n1, 1.0), self.window))
            sq, ab = at["sq"], at["ab"]
            for pi in range(self._p):
                for jo in range(ob):
                    e, k = errors[pi][jo], pi * ob + jo
                    v = s[sq + k]
                    s[sq + k] = where(ok[pi], v + (e * e - v) * rates[pi], v)
                    v = s[ab + k]
                    s[ab + k] = where(ok[pi], v + (abs(e) - v) * rates[pi], v)
                    out[k] = where(ok[pi], e, math.nan)
            if lv:
                lo_at, hi_at, w_at, cov = at["lo"], at["hi"], at["w"], at["cov"]
                for li in range(lv):
                    up, down = self._up[li], self._down[li]
                    for jo, j in enumerate(self.observed):
                        a = actual[jo]
                        covered = (s[lo_at + (slot * lv + li) * ob + jo] <= a) & (a <= s[hi_at + (slot * lv + li) * ob + jo])
                        wi = w_at + li * o + j
                        w = s[wi]
                        s[wi] = where(valid, ops.maximum(w * where(covered, down, up), self._floor[li][jo]), w)
                        hit = where(covered, 1.0, 0.0)
                        ci = cov + li * ob + jo
                        c = s[ci]
                        s[ci] = where(valid, c + (hit - c) * rate, c)
                        out[self._p * ob + li * ob + jo] = where(valid, hit, math.nan)
                if self.normalised:
                    sc_at, srate, clip = self._scale_at, self._rate, self._clip
                    for jo, j in enumerate(self.observed):
                        a, m = actual[jo], made[jo]
                        if self.space == "absolute":
                            v = abs(errors[0][jo])
                        else:  # max(a/m, m/a) - 1 where both are positive, else infinite (capped below)
                            pos = (a > 0.0) & (m > 0.0)
                            a1, m1 = where(pos, a, 1.0), where(pos, m, 1.0)
                            v = where(pos, ops.maximum(a1 / m1, m1 / a1) - 1.0, math.inf)
                        c = s[sc_at + j]
                        v = ops.fmin(v, c * clip)  # an infinite or NaN score counts as the cap
                        s[sc_at + j] = where(valid, ops.maximum(c + (v - c) * srate, self._scale_floor[jo]), c)
            if self._mae is not None:  # the drift test: two standardised errors and the session's own CUSUM
                base = self._base
                base_ok = valid & ok[base]
                x1 = x2 = 0.0
                for jo in range(ob):
                    v = abs(errors[0][jo]) / self._level[jo]
                    x1 = v if jo == 0 else x1 + v
                    u = abs(errors[0][jo]) / self._mae[jo]
                    d = u - abs(errors[base][jo]) / self._mae[jo]
                    x2 = d if jo == 0 else x2 + d
                x1 = x1 / ob - 1.0
                x2 = x2 / ob - self._gap
                cu = at["cusum"]
                c = s[cu]
                lifted = ops.maximum(ops.maximum(c + (ops.minimum(ops.maximum(x1, -CUSUM_CAP), CUSUM_CAP) - CUSUM_K),
                                                 0.0), where(x1 > _SHEWHART_X, _LIFT, 0.0))
                s[cu] = where(valid, lifted, c)
                c = s[cu + 1]
                s[cu + 1] = where(base_ok, ops.maximum(
                    c + (ops.minimum(ops.maximum(x2, -CUSUM_CAP), CUSUM_CAP) - CUSUM_K), 0.0), c)
                out[self.n_observed - 2] = where(valid, x1, math.nan)
                out[self.n_observed - 1] = where(base_ok, x2, math.nan)
            now = 0 if r == 1 else p % r
            for jo in range(ob):
                s[hist + now * ob + jo] = actual[jo]  # after persistence and seasonal naive read the older ones
        if answer is not None:
            for j in range(o):
                answer[j] = yk[j]
        if lv:
            w_at = at["w"]
            scales = [s[self._scale_at + j] for j in range(o)]  # q x scale (the scale stays 1 without normalised scores)
            for li in range(lv):
                for j in range(o):
                    w, yj = s[w_at + li * o + j] * scales[j], yk[j]
                    if self.space == "absolute":
                        lo, hi = yj - w, yj + w
                    else:
                        grow = 1.0 + w
                        lo, hi = yj / grow, yj * grow
                    # the answer is float32: rounded there, as numpy casts; a bound beyond float32's range is its
                    # largest value (every finite float32 actual lies within)
                    answer[o + 2 * li * o + j] = ops.minimum(ops.maximum(lo, -_F32_MAX), _F32_MAX)
                    answer[o + (2 * li + 1) * o + j] = ops.minimum(ops.maximum(hi, -_F32_MAX), _F32_MAX)
                    jo = self.observed.index(j) if j in self.observed else -1
                    if jo >= 0:
                        s[at["lo"] + (slot * lv + li) * ob + jo] = lo
                        s[at["hi"] + (slot * lv + li) * ob + jo] = hi
        if ob:
            for jo, j in enumerate(self.observed):
                s[at["pred"] + slot * ob + jo] = yk[j]

    def _sample_floats(self, s: list[float], p: int, xk: list[float], yk: list[float], answer: list[float],
                       out: list[float]) -> None:
        """:meth:`_sample` for one session on Python floats, written out (no lane operations): the same IEEE
        operations in the same order, so the same bits (a test compares the two on random lanes)."""
        o, lv, ob, h, r = self._o, self._l, self._ob, self.horizon, self._r
        slot = p % h
        if ob:
            pred, hist, nan = self._pred_at, self._hist_at, math.nan
            valid = p >= h
            made = s[pred + slot * ob: pred + slot * ob + ob]
            if valid:
                for m in made:
                    if not math.isfinite(m):
                        valid = False
            actual = [xk[f] for f in self._features]
            back = (p - h) % r
            errors = [[actual[jo] - made[jo] for jo in range(ob)],
                      [actual[jo] - s[hist + back * ob + jo] for jo in range(ob)]]
            ok = [valid, valid]
            count, window = self._count_at, self.window
            if valid:
                s[count] += 1.0
            n0 = s[count]
            rate = 1.0 / min(max(n0, 1.0), window)
            rates = [rate, rate]
            if self.season:
                seasonal = p >= self.season
                back_s = (p - self.season) % r
                errors.append([actual[jo] - s[hist + back_s * ob + jo] for jo in range(ob)])
                ok.append(seasonal)
                if seasonal:
                    s[count + 1] += 1.0
                rates.append(1.0 / min(max(s[count + 1], 1.0), window))
            sq, ab = self._sq_at, self._ab_at
            for pi in range(self._p):
                if not ok[pi]:
                    continue
                rt, row = rates[pi], errors[pi]
                for jo in range(ob):
                    e, k = row[jo], pi * ob + jo
                    v = s[sq + k]
                    s[sq + k] = v + (e * e - v) * rt
                    v = s[ab + k]
                    s[ab + k] = v + (abs(e) - v) * rt
                    out[k] = e
            if lv and valid:
                lo_at, hi_at, w_at, cov, base = self._lo_at, self._hi_at, self._w_at, self._cov_at, self._p * ob
                for li in range(lv):
                    up, down, floor = self._up[li], self._down[li], self._floor[li]
                    for jo, j in enumerate(self.observed):
                        a = actual[jo]
                        at = (slot * lv + li) * ob + jo
                        covered = s[lo_at + at] <= a <= s[hi_at + at]
                        wi = w_at + li * o + j
                        w = s[wi] * (down if covered else up)
                        s[wi] = w if w > floor[jo] else floor[jo]
                        hit = 1.0 if covered else 0.0
                        ci = cov + li * ob + jo
                        c = s[ci]
                        s[ci] = c + (hit - c) * rate
                        out[base + li * ob + jo] = hit
                if self.normalised:
                    self._scale_floats(s, self._scale_at, actual, made)
            if self._mae is not None:
                base_ok = valid and ok[self._base]
                if valid:
                    mae, level, bi = self._mae, self._level, self._base
                    x1 = x2 = 0.0
                    for jo in range(ob):
                        v = abs(errors[0][jo]) / level[jo]
                        u = abs(errors[0][jo]) / mae[jo]
                        d = u - abs(errors[bi][jo]) / mae[jo]
                        if jo == 0:
                            x1, x2 = v, d
                        else:
                            x1, x2 = x1 + v, x2 + d
                    x1 = x1 / ob - 1.0
                    x2 = x2 / ob - self._gap
                    cu = self._cusum_at
                    c = s[cu] + (min(max(x1, -CUSUM_CAP), CUSUM_CAP) - CUSUM_K)
                    c = c if c > 0.0 else 0.0
                    s[cu] = _LIFT if x1 > _SHEWHART_X and c < _LIFT else c
                    out[self.n_observed - 2] = x1
                    if base_ok:
                        c = s[cu + 1] + (min(max(x2, -CUSUM_CAP), CUSUM_CAP) - CUSUM_K)
                        s[cu + 1] = c if c > 0.0 else 0.0
                        out[self.n_observed - 1] = x2
            now = p % r
            for jo in range(ob):
                s[hist + now * ob + jo] = actual[jo]
            del nan
        answer[:o] = yk
        if lv:
            w_at, lo_at, hi_at, relative = self._w_at, self._lo_at, self._hi_at, self.space != "absolute"
            sc_at = self._scale_at
            for li in range(lv):
                for j in range(o):
                    w, yj = s[w_at + li * o + j] * s[sc_at + j], yk[j]
                    if relative:
                        grow = 1.0 + w
                        lo, hi = yj / grow, yj * grow
                    else:
                        lo, hi = yj - w, yj + w
                    answer[o + 2 * li * o + j] = min(max(lo, -_F32_MAX), _F32_MAX)
                    answer[o + (2 * li + 1) * o + j] = min(max(hi, -_F32_MAX), _F32_MAX)
                    jo = self._slot_of.get(j, -1)
                    if jo >= 0:
                        at = (slot * lv + li) * ob + jo
                        s[lo_at + at] = lo
                        s[hi_at + at] = hi
        if ob:
            pred = self._pred_at + slot * ob
            for jo, j in enumerate(self.observed):
                s[pred + jo] = yk[j]

    def _scale_floats(self, s: list[float], sc_at: int, actual: list[float], made: list[float]) -> None:
        """The scale of normalised scores after one scored sample, on Python floats (the operations of the lanes
        kernel and of :func:`~eddy.runtime.core.calibration.scale_path`): target j's at ``s[sc_at + j]``."""
        rate, clip, absolute = self._rate, self._clip, self.space == "absolute"
        for jo, j, low in self._scale_slots:
            a, m = actual[jo], made[jo]
            if absolute:
                v = abs(a - m)
            elif a > 0.0 and m > 0.0:
                r, rr = a / m, m / a
                v = (r if r > rr else rr) - 1.0
            else:
                v = math.inf
            c = s[sc_at + j]
            cap = c * clip
            v = v if v < cap else cap
            v = c + (v - c) * rate
            s[sc_at + j] = v if v > low else low

    def _chunk(self, row: np.ndarray, p0: int, x: np.ndarray,
               y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One session takes ``n`` samples at once (``x [n, F]``, ``y [n, O]``): ``(new row, answer [n, W],
        observed [n, E])``.

        The widths move sample by sample on Python floats, with exactly the operations of :meth:`_sample_floats`,
        so the intervals are bit for bit those of the same samples pushed one by one (given the same
        predictions). The errors, their exponentially weighted means and the drift statistics are computed over
        the whole chunk at once in numpy: the same figures, up to the last bits (summation order).
        """
        o, lv, ob, h, r, pp, season = self._o, self._l, self._ob, self.horizon, self._r, self._p, self.season
        n = len(x)
        s = np.array(row, np.float64)
        w = s[self._w_at:self._w_at + lv * o].reshape(lv, o).tolist()  # [L][O]
        w_used = np.empty((n, lv, o))  # the widths each sample's intervals are issued with
        yall = y.astype(np.float64)  # [n, O]
        if not ob:
            sc = s[self._scale_at:self._scale_at + o].tolist() if lv else []
            w_used[:] = np.array([[wl[j] * sc[j] for j in range(o)] for wl in w]).reshape(lv, o)
            return s, self._answer(y, yall, w_used), None
        pos = p0 + np.arange(n)  # [n]
        actual = x[:, self._features].astype(np.float64)  # [n, O']
        yo = yall[:, self.observed]  # [n, O'] the forecasts of the observed targets
        pred = s[self._pred_at:self._pred_at + h * ob].reshape(h, ob)
        hist = s[self._hist_at:self._hist_at + r * ob].reshape(r, ob)
        made = np.concatenate([pred[(p0 + np.arange(min(h, n))) % h], yo[:max(n - h, 0)]])  # [n, O'] forecast of t

        def back(lag: int) -> np.ndarray:  # the actual lag samples before each one, from the chunk or the history
            early = hist[(p0 + np.arange(min(lag, n)) - lag) % r]
            return np.concatenate([early, actual[:max(n - lag, 0)]])

        valid = (pos >= h) & np.isfinite(made).all(axis=1)  # [n]
        errors = [actual - made, actual - back(h)]  # [n, O'] each
        ok = [valid, valid]
        if season:
            errors.append(actual - back(season))
            ok.append(pos >= season)
        # the widths, sample by sample (see _sample_floats)
        lo_ring = s[self._lo_at:self._lo_at + h * lv * ob].reshape(h, lv, ob).tolist()
        hi_ring = s[self._hi_at:self._hi_at + h * lv * ob].reshape(h, lv, ob).tolist()
        relative = self.space != "absolute"
        sc_at, normalised = self._scale_at, self.normalised and lv
        sc = s[sc_at:sc_at + o].tolist()  # the scale, moved here with normalised scores (_scale_floats), else 1
        made_list = made.tolist()
        valid_list, actual_list, yo_list = valid.tolist(), actual.tolist(), yo.tolist()
        nan, observed_ = math.nan, list(enumerate(self.observed))
        hit_list: list[float] = []  # [n * L * O'] flat: 1 covered, 0 missed, NaN not scored
        w_list: list[float] = []  # [n * L * O] flat: the widths each sample's intervals are issued with
        for t in range(n):
            slot = (p0 + t) % h
            if lv and valid_list[t]:
                a_t, lo_s, hi_s = actual_list[t], lo_ring[slot], hi_ring[slot]
                for li in range(lv):
                    up, down, floor, wl, lo_l, hi_l = self._up[li], self._down[li], self._floor[li], w[li], \
                        lo_s[li], hi_s[li]
                    for jo, j in observed_:
                        covered = lo_l[jo] <= a_t[jo] <= hi_l[jo]
                        hit_list.append(1.0 if covered else 0.0)
                        v = wl[j] * (down if covered else up)
                        wl[j] = v if v > floor[jo] else floor[jo]
                if normalised:
                    self._scale_floats(sc, 0, a_t, made_list[t])
            elif lv:
                hit_list.extend([nan] * (lv * ob))
            if lv:
                y_t, lo_s, hi_s = yo_list[t], lo_ring[slot], hi_ring[slot]
                for li in range(lv):
                    wl, lo_l, hi_l = w[li], lo_s[li], hi_s[li]
                    issued = [a * b for a, b in zip(wl, sc)]
                    w_list.extend(issued)
                    for jo, j in observed_:
                        wj, yj = issued[j], y_t[jo]
                        if relative:
                            grow = 1.0 + wj
                            lo_l[jo], hi_l[jo] = yj / grow, yj * grow
                        else:
                            lo_l[jo], hi_l[jo] = yj - wj, yj + wj
        hits = np.array(hit_list).reshape(n, lv, ob) if lv else np.zeros((n, 0, ob))
        if lv:
            w_used = np.array(w_list).reshape(n, lv, o)
        # the rest, over the chunk at once
        count = self._count_at
        n_model, n_season = s[count], s[count + 1]
        groups = [(valid, n_model), (valid, n_model), (ok[2] if season else valid, n_season)]
        sq, ab, cov = self._sq_at, self._ab_at, self._cov_at
        for pi in range(pp):
            mask, n0 = groups[pi]
            e = errors[pi][mask]
            for at, v in ((sq, e * e), (ab, np.abs(e))):
                s[at + pi * ob:at + (pi + 1) * ob] = _weighted(s[at + pi * ob:at + (pi + 1) * ob], n0, v, self.window)
        if lv:
            s[cov:cov + lv * ob] = _weighted(s[cov:cov + lv * ob], n_model, hits[valid].reshape(-1, lv * ob),
                                             self.window)
        s[count] = n_model + float(valid.sum())
        if season:
            s[count + 1] = n_season + float(ok[2].sum())
        out = np.full((n, self.n_observed), np.nan)
        for pi in range(pp):
            out[:, pi * ob:(pi + 1) * ob] = np.where(ok[pi][:, None], errors[pi], np.nan)
        out[:, pp * ob:(pp + lv) * ob] = hits.reshape(n, lv * ob)
        if self._mae is not None:
            mae = np.asarray(self._mae)
            u = np.abs(errors[0]) / mae
            x1 = (np.abs(errors[0]) / np.asarray(self._level)).mean(axis=1) - 1.0
            x2 = (u - np.abs(errors[self._base]) / mae).mean(axis=1) - self._gap
            base_ok = valid & ok[self._base]
            cu = self._cusum_at
            s[cu] = float(cusum_path(s[cu], x1[valid], shewhart=True)[-1]) if valid.any() else s[cu]
            s[cu + 1] = float(cusum_path(s[cu + 1], x2[base_ok])[-1]) if base_ok.any() else s[cu + 1]
            out[:, -2] = np.where(valid, x1, np.nan)
            out[:, -1] = np.where(base_ok, x2, np.nan)
        # the memory: forecasts and intervals awaiting their actual, the last actuals, the widths
        for t in range(max(n - h, 0), n):
            pred[(p0 + t) % h] = yo[t]
        for t in range(max(n - r, 0), n):
            hist[(p0 + t) % r] = actual[t]
        s[self._pred_at:self._pred_at + h * ob] = pred.ravel()
        s[self._hist_at:self._hist_at + r * ob] = hist.ravel()
        if lv:
            s[self._lo_at:self._lo_at + h * lv * ob] = np.ravel(lo_ring)
            s[self._hi_at:self._hi_at + h * lv * ob] = np.ravel(hi_ring)
            s[self._w_at:self._w_at + lv * o] = np.ravel(w)
            s[sc_at:sc_at + o] = sc
        return s, self._answer(y, yall, w_used), out

    def _answer(self, y: np.ndarray, yall: np.ndarray, w_used: np.ndarray) -> np.ndarray:
        """``[n, O * (1 + 2L)]``: the predictions, then each level's bounds around them (float32)."""
        n, o, lv = len(y), self._o, self._l
        if not lv:
            return y
        lo, hi = bounds(self.space, yall[:, None, :], w_used)  # [n, L, O]
        answer = np.empty((n, o * (1 + 2 * lv)), np.float32)
        answer[:, :o] = y
        answer[:, o:] = np.clip(np.stack([lo, hi], axis=2).reshape(n, 2 * lv * o), -_F32_MAX, _F32_MAX)
        return answer


def _weighted(m0: np.ndarray, n0: float, v: np.ndarray, window: int) -> np.ndarray:
    """The exponentially weighted means ``m0 [C]`` after the values ``v [K, C]``, ``n0`` values seen before:
    ``m <- m + (v - m) / min(count, window)`` applied K times, in closed form."""
    if not len(v):
        return m0
    rate = 1.0 / np.minimum(np.maximum(n0 + np.arange(1, len(v) + 1), 1.0), window)  # [K]
    tail = np.cumprod((1.0 - rate)[::-1])[::-1]  # [K]: prod of (1 - rate) from each value on
    after = np.append(tail[1:], 1.0)  # [K]: ... from the next value on
    return m0 * tail[0] + (rate * after) @ v


def cusum_path(s0: float, x: np.ndarray, shewhart: bool = False) -> np.ndarray:
    """The drift test's statistic after each of the values ``x [N]`` from ``s0``, vectorised: the one-sided CUSUM
    ``s <- max(0, s + clip(x) - K)``, and with ``shewhart`` (the first statistic) ``s <- max(s, LIFT)`` where
    ``x > SHEWHART - 1``. Unrolled: ``s_t = C_t + max(s0, max_{k <= t} (f_k - C_k))`` with ``C`` the cumulative
    increments and ``f_k`` the floor at ``k`` (0, or LIFT on a Shewhart signal)."""
    c = np.cumsum(np.clip(x, -CUSUM_CAP, CUSUM_CAP) - CUSUM_K)
    floor = np.where(x > _SHEWHART_X, _LIFT, 0.0) if shewhart else np.zeros(len(x))
    return c + np.maximum(s0, np.maximum.accumulate(floor - c))
