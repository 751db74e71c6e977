"""Validate raw samples, and refuse answers that are not finite: numpy only.

The client checks input exactly as a local stream does (no onnxruntime here:
:mod:`eddy.runtime.client` imports this module and must load without it).

A finite input can still be beyond what a model computes in float32: a
log-scale model fed 0 or a negative value takes its logarithm, a change
between two values near ±3.4e38 overflows, and an infinite or NaN value
inside the graph then reaches the answer or, worse, the state, where it
would spoil every later answer. Every path that advances a stream (the
local :class:`~eddy.runtime.core.model.Stream`, the server's batcher, lane,
fleet and ``Predict``) checks each sequence's answer and new state with
:func:`nonfinite_rows` before anything is kept, and refuses that sequence's
samples with :func:`unanswerable` (INVALID_ARGUMENT): the state stays as it
was and a non-finite answer is never sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InvalidInput

__all__ = ["FLOAT32_LE", "FLOAT64_LE", "as_fleet_samples", "as_samples", "nonfinite_rows", "not_finite",
           "unanswerable"]

FLOAT32_LE = np.dtype("<f4")  # float32, little-endian: every byte encoding of floats (wire tensors, state bytes)
FLOAT64_LE = np.dtype("<f8")  # float64, little-endian: a session's monitor row in state bytes and store records


def as_samples(samples: Any, n_features: int) -> np.ndarray:
    """Validate raw samples and return them as float32 ``[n, F]``.

    Accepts ``[n, F]``, ``[F]`` (one sample) or, when ``F == 1``, a plain
    number. Raises :class:`~eddy.runtime.core.errors.InvalidInput` naming the problem.
    """
    if isinstance(samples, (str, bytes)) or isinstance(samples, bool):
        raise InvalidInput(f"samples must be numbers, got {type(samples).__name__}")
    try:
        arr = np.asarray(samples)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise InvalidInput(f"samples must be a rectangular array of numbers: {e}") from None
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidInput(f"samples must be numbers, got dtype {arr.dtype}")
    if arr.ndim == 0:
        if n_features != 1:
            raise InvalidInput(f"a plain number is one sample of 1 feature; this model takes {n_features} features")
        arr = arr.reshape(1, 1)
    elif arr.ndim == 1:
        arr = arr.reshape(1, -1)  # [F]: one sample
    elif arr.ndim != 2:
        raise InvalidInput(f"samples must be shaped [n, {n_features}], got {arr.ndim} dimensions {list(arr.shape)}")
    if arr.shape[0] == 0 or arr.size == 0:
        raise InvalidInput("no samples: expected at least one")
    if arr.shape[1] != n_features:
        hint = " (a 1-D array is one sample; pass [n, F] for several)" if np.ndim(samples) == 1 else ""
        raise InvalidInput(f"expected {n_features} feature(s) per sample, got {arr.shape[1]}{hint}")
    with np.errstate(over="ignore"):  # a finite value beyond float32's range becomes inf: reported below
        f32 = arr.astype(np.float32, copy=True)
    bad = ~np.isfinite(f32)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        value = float(arr[row, col])
        if math.isfinite(value):
            raise InvalidInput(f"sample {row}, feature {col} is {value}: outside float32's range (|x| < 3.4e38)")
        raise InvalidInput(f"sample {row}, feature {col} is {value}: values must be finite")
    return f32


def as_fleet_samples(samples: Any, sessions: int, n_features: int) -> np.ndarray:
    """Raw samples of a fleet message as float32 ``[N, k, F]`` for ``sessions`` (N) sessions.

    Accepts ``[N, k, F]``, ``[N, F]`` (one sample per session) or, when
    ``F == 1``, ``[N]``. Shapes and types are checked here; values are not:
    a non-finite row fails only its session's entry, which the server judges.
    """
    if isinstance(samples, (str, bytes, bool)):
        raise InvalidInput(f"samples must be numbers, got {type(samples).__name__}")
    try:
        arr = np.asarray(samples)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise InvalidInput(f"samples must be a rectangular array of numbers: {e}") from None
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidInput(f"samples must be numbers, got dtype {arr.dtype}")
    if arr.ndim == 1 and n_features == 1:
        arr = arr.reshape(-1, 1, 1)  # [N]: one sample of one feature each
    elif arr.ndim == 2:
        arr = arr.reshape(arr.shape[0], 1, arr.shape[1])  # [N, F]: one sample each
    if arr.ndim != 3 or arr.shape[0] != sessions or arr.shape[1] < 1 or arr.shape[2] != n_features:
        raise InvalidInput(f"samples must be shaped [N={sessions}, k >= 1, {n_features}] (or [N, {n_features}] for "
                           f"one sample each) for {sessions} session(s), got {list(np.shape(samples))}")
    with np.errstate(over="ignore"):  # past float32's range: inf, refused by the server for that session
        return arr.astype(np.float32, copy=False)


def not_finite(x: np.ndarray) -> InvalidInput:
    """The error naming the first non-finite value of float samples ``x[n, F]`` (which must hold one)."""
    row, col = (int(i) for i in np.argwhere(~np.isfinite(x))[0])
    return InvalidInput(f"sample {row}, feature {col} is {float(x[row, col])}: values must be finite")


def nonfinite_rows(y: np.ndarray, state: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The rows (axis 0: sequences) whose predictions ``y[B, ...]`` or new graph ``state`` (``[B, ...]`` each)
    hold a non-finite value; None when every value is finite (the usual case, checked first).

    Keys starting with ``#`` are not graph state (the monitor's rows, whose interval bounds may be infinite by
    design: :data:`~eddy.runtime.core.monitor.MONITOR`) and are not checked.
    """
    graph = [v for k, v in state.items() if not k.startswith("#")]
    if np.isfinite(y).all() and all(np.isfinite(v).all() for v in graph):
        return None
    ok = np.isfinite(y).reshape(len(y), -1).all(axis=1)
    for v in graph:
        ok &= np.isfinite(v).reshape(len(v), -1).all(axis=1)
    return np.flatnonzero(~ok)


def unanswerable(y: np.ndarray) -> InvalidInput:
    """The refusal of one sequence's samples whose answer ``y[n, O]`` (or the state after them) is not finite."""
    y2 = np.asarray(y).reshape(-1, np.shape(y)[-1])  # [n, O]
    bad = np.argwhere(~np.isfinite(y2))
    if len(bad):
        row, col = (int(i) for i in bad[0])
        what = f"the answer to sample {row} would be {float(y2[row, col])}"
    else:
        what = "the state after them would not be finite"
    return InvalidInput(f"the model cannot answer these samples in float32: {what} (values too large for it, "
                        "or outside its domain, e.g. not positive for a log-scale model); nothing changed")
