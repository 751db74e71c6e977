"""Target transforms: what the network sees and predicts, in raw-unit terms (numpy only, float64).

A model is trained in *model space* and served in raw units; the exported
graphs carry the conversion (:mod:`eddy.trainer.graph_io`), so a client sends
raw samples and gets raw predictions. This module is the float64 reference of
that conversion; the graphs reproduce it in float32.

Kinds (``--target-transform``):

- ``level``: the network reads the raw features and predicts the raw target
  (both normalised). Fine for series without trend (sunspots).
- ``delta``: the network reads each feature's change since the previous
  sample and predicts the target's change from its last observed value:
  ``y[t+h] = x[t, target] + change``. A trend becomes a level the network can
  reach. The previous raw sample and a "seen a sample" flag are two extra
  state tensors (:data:`LAST_STATE`, :data:`SEEN_STATE`): the first sample of
  a stream has no predecessor, so its change is 0.
- ``log_delta``: the same on the log scale (relative changes): every used
  column must be positive; ``y[t+h] = x[t, target] * exp(change)``.
- ``seasonal_delta`` (with a season ``S >= horizon``): the network reads each
  feature's change over one season, ``x[t] - x[t-S]``, and predicts the
  target's change from its value one season before the predicted row:
  ``y[t+h] = x[t+h-S, target] + change`` (so seasonal naive is a zero change).
  The last ``S`` raw samples are one extra state tensor (:data:`SEASON_STATE`,
  a shift buffer: ``concat(buf[1:], x[t])``) next to :data:`SEEN_STATE`; a
  stream's first sample fills the buffer, so before a whole season has been
  seen ``x[t-S]`` stands for ``x[0]`` (row 0's change is 0, as for ``delta``).
- ``double_delta`` (with a season ``S >= horizon``): both differences of the airline model (seasonal ARIMA's
  ``d = D = 1``). The network reads each feature's change since the previous sample minus that change one season
  before, ``(x[t] - x[t-1]) - (x[t-S] - x[t-S-1])``, and predicts the target's change from
  ``x[t, target] + x[t+h-S, target] - x[t-S, target]``: the last value plus last season's change over the same
  steps (a zero change is that forecast, which follows both a trend and a seasonal pattern). The shift buffer
  :data:`SEASON_STATE` holds the last ``S + 1`` raw samples; rows before a stream's first stand for row 0.

The delta kinds need every target among the features (its observed value is
the base of the prediction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eddy.runtime.core.manifest import StateSpec

__all__ = ["AUTO", "DELTA_KINDS", "KINDS", "LAST_STATE", "SEASONAL_KINDS", "SEASON_STATE", "SEEN_STATE", "Transform",
           "applicable_kinds"]

KINDS = ("level", "delta", "log_delta", "seasonal_delta", "double_delta")
DELTA_KINDS = KINDS[1:]  # the kinds that predict a change from an observed value (every target must be a feature)
SEASONAL_KINDS = ("seasonal_delta", "double_delta")  # the kinds that need a season S >= horizon
AUTO = "auto"  # --target-transform auto: the kind with the lowest validation loss among the applicable ones
LAST_STATE = "x_last"  # extra state of the delta kinds: the previous raw sample, [F]
SEEN_STATE = "x_seen"  # extra state of the delta kinds: 0 before the first sample, 1 after, [1]
SEASON_STATE = "x_season"  # extra state of the seasonal kinds: the last S (double_delta: S + 1) raw samples, oldest
# first, [S, F] / [S + 1, F]


@dataclass(frozen=True)
class Transform:
    """One kind applied to a model with ``n_features`` inputs; ``target_index`` maps targets to features."""

    kind: str  # one of KINDS
    n_features: int  # F
    target_index: tuple[int, ...] = ()  # feature column of each target (delta kinds), O of them
    season: int = 0  # seasonal kinds: the season S in samples (0 for the other kinds)
    horizon: int = 1  # seasonal kinds: steps ahead the model predicts (the base rows include t + horizon - season)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"target transform must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind != "level" and not self.target_index:
            raise ValueError(f"target transform {self.kind!r} needs every target among the features")
        if self.is_seasonal and not 1 <= self.horizon <= self.season:
            raise ValueError(f"target transform {self.kind!r} needs --season at least the horizon ({self.horizon}), "
                             f"got {self.season or 'none'}")

    @classmethod
    def for_columns(cls, kind: str, features: Sequence[str], targets: Sequence[str], *, season: int | None = None,
                    horizon: int = 1) -> Transform:
        """``kind`` for these columns (``season``/``horizon`` for the seasonal kinds); ``ValueError`` if a delta kind's
        target is not a feature or a seasonal kind has no season of at least ``horizon``."""
        if kind != "level":
            missing = [t for t in targets if t not in features]
            if missing:
                raise ValueError(f"target transform {kind!r} needs every target among the features; "
                                 f"{', '.join(missing)} is not (add it to --features or use level)")
            seasonal = {"season": season or 0, "horizon": horizon} if kind in SEASONAL_KINDS else {}
            return cls(kind, len(features), tuple(list(features).index(t) for t in targets), **seasonal)
        return cls(kind, len(features))

    @property
    def is_delta(self) -> bool:
        return self.kind in DELTA_KINDS

    @property
    def is_log(self) -> bool:
        return self.kind == "log_delta"

    @property
    def is_seasonal(self) -> bool:
        return self.kind in SEASONAL_KINDS

    @property
    def is_double(self) -> bool:
        return self.kind == "double_delta"

    @property
    def buffer_rows(self) -> int:
        """Rows of the seasonal kinds' shift buffer :data:`SEASON_STATE`: S, or S + 1 for double_delta."""
        return self.season + 1 if self.is_double else self.season

    def extra_state(self) -> list[StateSpec]:
        """The state tensors the transform adds after the recurrent ones (none for ``level``)."""
        if self.is_seasonal:
            return [StateSpec(SEASON_STATE, [self.buffer_rows, self.n_features]), StateSpec(SEEN_STATE, [1])]
        if not self.is_delta:
            return []
        return [StateSpec(LAST_STATE, [self.n_features]), StateSpec(SEEN_STATE, [1])]

    def _back(self, rows: np.ndarray, lag: int) -> np.ndarray:
        """The row ``lag`` samples before each of ``rows``; row 0 before a stream's first ``lag`` samples."""
        return np.maximum(np.asarray(rows) - lag, 0)

    def _scale(self, v: np.ndarray) -> np.ndarray:
        return np.log(v) if self.is_log else v

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """Model-space inputs of a series from its start: raw ``[T, F]`` -> ``[T, F]`` float64.

        ``delta``: row 0 is 0 (a fresh stream has no previous sample), row t is ``x[t] - x[t-1]``.
        """
        x = np.asarray(x, np.float64)  # [T, F]
        if not self.is_delta:
            return x.copy()
        rows = np.arange(len(x))
        if self.is_double:  # the change since the previous sample, minus that change one season before
            back = self._back
            return (x - x[back(rows, 1)]) - (x[back(rows, self.season)] - x[back(rows, self.season + 1)])
        if self.is_seasonal:
            return x - x[self._back(rows, self.season)]  # change over one season
        s = self._scale(x)
        return np.concatenate([np.zeros_like(s[:1]), np.diff(s, axis=0)], axis=0)

    def series_from_inputs(self, u: np.ndarray) -> np.ndarray:
        """A raw series ``[T, F]`` whose model-space inputs (:meth:`inputs`) are ``u`` ``[T, F]`` from row 1 on
        (from row ``season`` on for seasonal_delta, ``season + 1`` for double_delta): the inverse of :meth:`inputs`,
        e.g. to draw valid raw inputs for checks (positive for log_delta)."""
        u = np.asarray(u, np.float64)  # [T, F]
        if not self.is_delta:
            return u.copy()
        if self.is_double:  # the seasonal changes are a running sum of u; undo those as seasonal_delta does
            seasonal = Transform("seasonal_delta", self.n_features, self.target_index, self.season, self.horizon)
            return seasonal.series_from_inputs(np.cumsum(u, axis=0))
        if self.is_seasonal:
            x = np.empty_like(u)
            for r in range(min(self.season, len(u))):  # each residue mod S is a running sum of its changes
                x[r :: self.season] = np.cumsum(u[r :: self.season], axis=0)
            return x
        s = np.cumsum(u, axis=0)
        return np.exp(s) if self.is_log else s

    def labels(self, x: np.ndarray, y: np.ndarray, horizon: int) -> np.ndarray:
        """Model-space label of every input row that has one: row t is labelled with the target at ``t + horizon``.

        ``x`` raw ``[T, F]``, ``y`` raw ``[T, O]`` -> ``[T - horizon, O]`` float64.
        """
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        future = y[horizon:]  # [T-h, O]
        if not self.is_delta:
            return future.copy()
        if self.is_seasonal:
            if horizon != self.horizon:
                raise ValueError(f"this {self.kind} transform predicts {self.horizon} step(s) ahead, not {horizon}")
            return future - self._seasonal_base(x, np.arange(len(future)))
        base = x[: len(x) - horizon][:, list(self.target_index)]  # [T-h, O]
        return self._scale(future) - self._scale(base)

    def predictions(self, x: np.ndarray, z: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Raw predictions from model-space outputs ``z`` ``[..., O]``.

        ``x`` raw: ``[..., F]`` at the input rows, or with ``rows`` (``[n]``) the whole series ``[T, F]`` and
        the input row of each of ``z``'s ``n`` rows (seasonal_delta needs the series: its base is a season back).
        """
        z = np.asarray(z, np.float64)
        if not self.is_delta:
            return z.copy()
        x = np.asarray(x, np.float64)
        if self.is_seasonal:
            if rows is None:
                raise ValueError(f"{self.kind} predictions need the whole series and the input rows")
            return self._seasonal_base(x, np.asarray(rows)) + z
        if rows is not None:
            x = x[np.asarray(rows)]  # [n, F]
        base = x[..., list(self.target_index)]  # [..., O]
        return base * np.exp(z) if self.is_log else base + z

    def _seasonal_base(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """What a zero change predicts from input ``rows`` ``[n]`` of raw ``x`` ``[T, F]``, ``[n, O]``: seasonal_delta
        ``x[t+h-S]``; double_delta ``x[t] + x[t+h-S] - x[t-S]``."""
        cols = list(self.target_index)
        ahead = x[self._back(rows + self.horizon, self.season)][:, cols]  # one season before each target row
        if not self.is_double:
            return ahead
        return x[rows][:, cols] + (ahead - x[self._back(rows, self.season)][:, cols])

    def check(self, x: np.ndarray, where: str) -> str | None:
        """Why the kind cannot be used on raw ``x`` ``[T, F]`` (``None`` if it can)."""
        if self.is_log and not (np.asarray(x) > 0).all():
            return f"{where}: log_delta needs every feature value positive"
        return None


def applicable_kinds(features: Sequence[str], targets: Sequence[str], x: np.ndarray,
                     season: int | None = None) -> list[str]:
    """The kinds ``auto`` may choose from for these columns and raw inputs ``x`` ``[T, F]``; seasonal_delta when a
    ``season`` is given (one at least the horizon). Not double_delta, which is there to ask for: on short series its
    validation score misleads (docs/guides/training.md, "Target transform and the streamed score")."""
    kinds = ["level"]
    if all(t in features for t in targets):
        kinds.append("delta")
        if (np.asarray(x) > 0).all():
            kinds.append("log_delta")
        if season:
            kinds.append("seasonal_delta")
    return kinds
