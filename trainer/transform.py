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

``delta`` kinds need every target among the features (its last observed
value is the base of the prediction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eddy.runtime.core.manifest import StateSpec

__all__ = ["AUTO", "KINDS", "LAST_STATE", "SEEN_STATE", "Transform", "applicable_kinds"]

KINDS = ("level", "delta", "log_delta")
AUTO = "auto"  # --target-transform auto: the kind with the lowest validation loss among the applicable ones
LAST_STATE = "x_last"  # extra state of the delta kinds: the previous raw sample, [F]
SEEN_STATE = "x_seen"  # extra state of the delta kinds: 0 before the first sample, 1 after, [1]


@dataclass(frozen=True)
class Transform:
    """One kind applied to a model with ``n_features`` inputs; ``target_index`` maps targets to features."""

    kind: str  # one of KINDS
    n_features: int  # F
    target_index: tuple[int, ...] = ()  # feature column of each target (delta kinds), O of them

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"target transform must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind != "level" and not self.target_index:
            raise ValueError(f"target transform {self.kind!r} needs every target among the features")

    @classmethod
    def for_columns(cls, kind: str, features: Sequence[str], targets: Sequence[str]) -> Transform:
        """``kind`` for these columns; ``ValueError`` if a delta kind's target is not a feature."""
        if kind != "level":
            missing = [t for t in targets if t not in features]
            if missing:
                raise ValueError(f"target transform {kind!r} needs every target among the features; "
                                 f"{', '.join(missing)} is not (add it to --features or use level)")
            return cls(kind, len(features), tuple(list(features).index(t) for t in targets))
        return cls(kind, len(features))

    @property
    def is_delta(self) -> bool:
        return self.kind != "level"

    @property
    def is_log(self) -> bool:
        return self.kind == "log_delta"

    def extra_state(self) -> list[StateSpec]:
        """The state tensors the transform adds after the recurrent ones (none for ``level``)."""
        if not self.is_delta:
            return []
        return [StateSpec(LAST_STATE, [self.n_features]), StateSpec(SEEN_STATE, [1])]

    def _scale(self, v: np.ndarray) -> np.ndarray:
        return np.log(v) if self.is_log else v

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """Model-space inputs of a series from its start: raw ``[T, F]`` -> ``[T, F]`` float64.

        ``delta``: row 0 is 0 (a fresh stream has no previous sample), row t is ``x[t] - x[t-1]``.
        """
        x = np.asarray(x, np.float64)  # [T, F]
        if not self.is_delta:
            return x.copy()
        s = self._scale(x)
        return np.concatenate([np.zeros_like(s[:1]), np.diff(s, axis=0)], axis=0)

    def labels(self, x: np.ndarray, y: np.ndarray, horizon: int) -> np.ndarray:
        """Model-space label of every input row that has one: row t is labelled with the target at ``t + horizon``.

        ``x`` raw ``[T, F]``, ``y`` raw ``[T, O]`` -> ``[T - horizon, O]`` float64.
        """
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        future = y[horizon:]  # [T-h, O]
        if not self.is_delta:
            return future.copy()
        base = x[: len(x) - horizon][:, list(self.target_index)]  # [T-h, O]
        return self._scale(future) - self._scale(base)

    def predictions(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Raw predictions from model-space outputs: ``x`` raw ``[..., F]`` at the input rows, ``z`` ``[..., O]``."""
        z = np.asarray(z, np.float64)
        if not self.is_delta:
            return z.copy()
        base = np.asarray(x, np.float64)[..., list(self.target_index)]  # [..., O]
        return base * np.exp(z) if self.is_log else base + z

    def check(self, x: np.ndarray, where: str) -> str | None:
        """Why the kind cannot be used on raw ``x`` ``[T, F]`` (``None`` if it can)."""
        if self.is_log and not (np.asarray(x) > 0).all():
            return f"{where}: log_delta needs every feature value positive"
        return None


def applicable_kinds(features: Sequence[str], targets: Sequence[str], x: np.ndarray) -> list[str]:
    """The kinds ``auto`` may choose from for these columns and raw inputs ``x`` ``[T, F]``."""
    kinds = ["level"]
    if all(t in features for t in targets):
        kinds.append("delta")
        if (np.asarray(x) > 0).all():
            kinds.append("log_delta")
    return kinds
