"""Prediction intervals: the manifest's calibration, and the one definition of scores and bounds.

A calibration is made at training (or ``eddy export --data``) by split
conformal prediction: the exported step graph is streamed over the series
from its first row, state carried (what a served stream returns), and the
*validation* rows' residuals give, per target and level, the
``ceil((n + 1) * level)``-th smallest score (:func:`conformal_quantile`).
Under exchangeability of the scores, an interval built from it covers the
next actual with probability at least ``level`` (marginally: over rows, not
for a given row, see the README).

The score lives in the space where residuals are comparable from row to row
for the model's target transform (:func:`space_for`):

- ``absolute`` (level, delta, seasonal_delta, double_delta): ``|y - yhat|``; the interval is
  ``yhat -/+ w``;
- ``relative`` (log_delta, a model of relative changes): ``max(y/yhat, yhat/y) - 1``
  (a monotone function of ``|log(y/yhat)|``, with no logarithm to take); the
  interval is ``[yhat / (1 + w), yhat * (1 + w)]``, asymmetric in raw units.

``w`` is the half-width in score space: the calibration's quantile at first,
then what the session's online recalibration (:mod:`eddy.runtime.core.monitor`)
makes of it.

**Normalised scores.** Calibrations record, besides those quantiles, the
quantiles of *normalised* validation scores (:class:`Normalised`): each score
over the session's *scale* when its forecast was issued, the exponentially
weighted mean of the scores before it (:func:`scale_path`, weight
:data:`SCALE_RATE` on the newest, each score capped at :data:`SCALE_CLIP`
scales). A session then issues ``w = q x scale``: when the errors' scale
jumps, the scale follows within a few samples and the tracked ``q`` barely
has to move (the monitor's docstring has the measured effect). Numpy only; the trainer uses the same functions for its test
figures so that training and serving agree on every definition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["GAMMA", "LEVELS", "SCALE_CLIP", "SCALE_RATE", "SPACES", "WINDOW", "Calibration", "Normalised", "bounds",
           "conformal_quantile", "level_name", "scale_path", "scores", "space_for"]

SPACES = ("absolute", "relative")  # score spaces (see the module docstring)
LEVELS = (0.8, 0.95)  # levels calibrated unless told otherwise (eddy train --intervals)
GAMMA = 0.1  # online recalibration step: each miss widens by exp(GAMMA * level), each hit narrows by exp(-GAMMA * (1 - level))
WINDOW = 100  # samples: a session's live accuracy is their exponentially weighted mean (plain mean before WINDOW)
FLOOR = 0.01  # online recalibration never narrows an interval below this fraction of its calibrated width
MAX_LEVELS = 8  # levels one calibration may hold (each is state in every session)
SCALE_RATE = 0.1  # normalised scores: the scale is the exponentially weighted mean of scores, this weight on the newest
SCALE_CLIP = 4.0  # a score enters the scale at most this many scales large (one outlier moves it by at most 30 %)


def space_for(transform: str) -> str:
    """The score space for a model's target transform: ``relative`` for log_delta, else ``absolute``."""
    return "relative" if transform == "log_delta" else "absolute"


def level_name(level: float) -> str:
    """``0.8`` -> ``"80"``, ``0.975`` -> ``"97.5"``: a level in percent, as output names and labels write it."""
    return f"{round(level * 100, 6):g}"


def scores(space: str, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    """Conformity scores of actuals ``y`` against forecasts ``yhat`` (same shapes, float64).

    ``relative``: ``inf`` where either is not positive (no interval of that form holds it).
    """
    y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
    if space == "absolute":
        return np.abs(y - yhat)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.maximum(y / yhat, yhat / y) - 1.0
    return np.where((y > 0) & (yhat > 0), s, np.inf)


def bounds(space: str, yhat: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` of the intervals of half-width ``w`` (score space) around ``yhat`` (broadcast, float64)."""
    if space == "absolute":
        return yhat - w, yhat + w
    grow = 1.0 + w
    return yhat / grow, yhat * grow


def conformal_quantile(s: np.ndarray, level: float) -> float:
    """Split conformal's quantile of scores ``s`` ``[n]``: the ``ceil((n + 1) * level)``-th smallest, ``inf`` when
    that exceeds ``n`` (too few residuals for the level: it needs ``n >= level / (1 - level)``)."""
    s = np.sort(np.asarray(s, np.float64).ravel())
    k = math.ceil((len(s) + 1) * level - 1e-9)  # the 1e-9 keeps (n + 1) * 0.8 = 38.000000000000004 at 38
    return float(s[k - 1]) if k <= len(s) else math.inf


def scale_path(s: np.ndarray, start: float, rate: float = SCALE_RATE, clip: float = SCALE_CLIP,
               floor: float = FLOOR) -> np.ndarray:
    """The session's scale after each of the scores ``s [N]`` (NaN: nothing scored there, the scale stays), from
    ``start``: ``c <- max(c + (min(v, clip c) - c) rate, floor start)``, an infinite or NaN score counting as
    ``clip c``. The recursion the monitor runs, in the same operations."""
    c, low, out = float(start), float(start) * floor, np.empty(len(s))
    for t, v in enumerate(np.asarray(s, np.float64).tolist()):
        if not math.isnan(v):
            cap = c * clip
            v = v if v < cap else cap
            c = c + (v - c) * rate
            c = c if c > low else low
        out[t] = c
    return out


@dataclass(frozen=True)
class Normalised:
    """The calibration's ``normalised`` section: what a session needs to issue ``q x scale`` (see the module
    docstring)."""

    scale: dict[str, float]  # target -> a new session's scale: the validation part's mean score
    quantiles: dict[str, tuple[float, ...]]  # target -> per level, the split conformal quantile of the validation
    # part's scores over the scale their forecast was issued with
    rate: float = SCALE_RATE  # the scale's weight on the newest score
    clip: float = SCALE_CLIP  # a score enters the scale at most this many scales large

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "clip": self.clip, "scale": dict(self.scale),
                "quantiles": {t: list(q) for t, q in self.quantiles.items()}}

    @classmethod
    def from_dict(cls, d: Any, targets: Sequence[str], levels: int) -> Normalised:
        if not isinstance(d, Mapping):
            raise ValueError("calibration.normalised must be an object")
        rate, clip = float(d.get("rate", SCALE_RATE)), float(d.get("clip", SCALE_CLIP))
        if not (0.0 < rate <= 1.0 and 1.0 <= clip < math.inf):
            raise ValueError("calibration.normalised needs rate in (0, 1] and clip >= 1")
        raw_s, raw_q = d.get("scale"), d.get("quantiles")
        if not isinstance(raw_s, Mapping) or set(raw_s) != set(targets) or not isinstance(raw_q, Mapping) \
                or set(raw_q) != set(targets):
            raise ValueError(f"calibration.normalised needs a scale and quantiles per target ({', '.join(targets)})")
        scale = {str(t): float(v) for t, v in raw_s.items()}
        quantiles = {str(t): tuple(float(v) for v in q) for t, q in raw_q.items()}
        if not all(math.isfinite(v) and v > 0 for v in scale.values()):
            raise ValueError("calibration.normalised.scale needs finite values > 0")
        for t, q in quantiles.items():
            if len(q) != levels or not all(math.isfinite(v) and v >= 0 for v in q) or list(q) != sorted(q):
                raise ValueError(f"calibration.normalised.quantiles.{t} needs {levels} finite values >= 0, one per "
                                 "level, not shrinking as the level grows")
        return cls(scale, quantiles, rate, clip)


@dataclass(frozen=True)
class Calibration:
    """The manifest's ``calibration`` section (schema: :meth:`to_dict`)."""

    levels: tuple[float, ...]  # nominal coverages, ascending, each in (0, 1)
    quantiles: dict[str, tuple[float, ...]]  # target -> calibrated half-width per level (score space)
    space: str  # one of SPACES
    rows: int  # residuals the quantiles come from (the validation rows)
    gamma: float = GAMMA  # online recalibration step (see the module constants)
    window: int = WINDOW  # live-accuracy window of a session, samples
    floor: float = FLOOR  # narrowest online width, as a fraction of the calibrated one
    season: int | None = None  # seasonal-naive baseline's season for live accuracy (None: no season)
    mae: dict[str, float] = field(default_factory=dict)  # target -> the validation part's streamed MAE (raw units):
    # the drift test's unit for the model's error level (empty in calibrations made before it was recorded)
    normalised: Normalised | None = None  # normalised scores (None in calibrations made before them: a session then
    # tracks the half-width itself, scale 1)
    extra: dict[str, Any] = field(default_factory=dict)  # descriptive keys kept as written (method, residuals, ...)

    def quantile_matrix(self, targets: Sequence[str]) -> np.ndarray:
        """The calibrated half-widths as ``[L, O]`` float64 (levels x targets, in ``targets`` order)."""
        return np.array([[self.quantiles[t][i] for t in targets] for i in range(len(self.levels))], np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {**self.extra, "levels": list(self.levels), "space": self.space, "rows": self.rows,
                "quantiles": {t: list(q) for t, q in self.quantiles.items()},
                "online": {"gamma": self.gamma, "window": self.window, "floor": self.floor},
                "season": self.season, **({"mae": dict(self.mae)} if self.mae else {}),
                **({"normalised": self.normalised.to_dict()} if self.normalised else {})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], targets: Sequence[str]) -> Calibration:
        """Parse and check; ``ValueError`` naming the problem."""
        if not isinstance(d, Mapping):
            raise ValueError("calibration must be an object")
        levels = tuple(float(v) for v in d["levels"])
        if not 1 <= len(levels) <= MAX_LEVELS or list(levels) != sorted(set(levels)) \
                or not all(0.0 < v < 1.0 for v in levels):
            raise ValueError(f"calibration.levels must be 1-{MAX_LEVELS} distinct ascending values in (0, 1), "
                             f"got {list(levels)}")
        space = str(d["space"])
        if space not in SPACES:
            raise ValueError(f"calibration.space must be one of {', '.join(SPACES)}, got {space!r}")
        raw_q = d["quantiles"]
        if not isinstance(raw_q, Mapping) or set(raw_q) != set(targets):
            raise ValueError(f"calibration.quantiles needs one entry per target ({', '.join(targets)})")
        quantiles = {str(t): tuple(float(v) for v in q) for t, q in raw_q.items()}
        for t, q in quantiles.items():
            if len(q) != len(levels) or not all(math.isfinite(v) and v >= 0 for v in q):
                raise ValueError(f"calibration.quantiles.{t} needs {len(levels)} finite values >= 0, one per level")
            if list(q) != sorted(q):
                raise ValueError(f"calibration.quantiles.{t} must not shrink as the level grows")
        online = d.get("online") or {}
        gamma, window, floor = float(online.get("gamma", GAMMA)), int(online.get("window", WINDOW)), \
            float(online.get("floor", FLOOR))
        if not (math.isfinite(gamma) and 0 <= gamma <= 1) or window < 1 or not 0 < floor <= 1:
            raise ValueError("calibration.online needs gamma in [0, 1], window >= 1 and floor in (0, 1]")
        season = d.get("season")
        if season is not None and (type(season) is not int or season < 1):
            raise ValueError(f"calibration.season must be a positive integer or null, got {season!r}")
        rows = int(d["rows"])
        raw_mae = d.get("mae") or {}
        if not isinstance(raw_mae, Mapping) or not set(raw_mae) <= set(targets):
            raise ValueError("calibration.mae must map targets to their validation MAE")
        mae = {str(t): float(v) for t, v in raw_mae.items()}
        if not all(math.isfinite(v) and v > 0 for v in mae.values()):
            raise ValueError("calibration.mae needs finite values > 0")
        normalised = Normalised.from_dict(d["normalised"], targets, len(levels)) if d.get("normalised") else None
        extra = {k: v for k, v in d.items()
                 if k not in ("levels", "space", "rows", "quantiles", "online", "season", "mae", "normalised")}
        return cls(levels, quantiles, space, rows, gamma, window, floor, season, mae=mae, normalised=normalised,
                   extra=extra)
