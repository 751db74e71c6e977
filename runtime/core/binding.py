"""One stream's step graph with pre-bound buffers: the per-sample fast path of ``Stream.push``.

onnxruntime's ``InferenceSession.run`` builds feed and fetch lists, checks
every input and allocates every output on each call (13-17 us for one
SimpleRNN(50) step here); an I/O binding whose inputs and outputs are
numpy buffers bound once costs about half of that. A recurrent step reads
its state and writes the next one, so :class:`StepBinding` keeps two sets of
state buffers and two bindings: binding ``k`` reads set ``k`` and writes set
``1 - k``; after a successful run the current set flips. A failed run leaves
the current set, hence the stream's state, untouched.

For one plain number and one feature (the commonest on-device call)
:meth:`StepBinding.push_scalar` also skips numpy for validation and
normalisation: it works on Python floats, rounding to float32 after every
operation exactly as the numpy path does (float32 ``+ - * /`` computed in
double and rounded once are correctly rounded, since 53 >= 2 * 24 + 2), so
its results are bit-identical to :meth:`StepBinding.push_row`.

Normalisation comes from :class:`~eddy.runtime.core.model.Model`'s
constants, which it reads from the manifest; a graph that normalises
itself simply gets identity constants (mean 0, std 1), which are exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .layout import INPUT, OUTPUT, state_output
from .samples import unanswerable

__all__ = ["SCALAR_TYPES", "StepBinding"]

# Plain numbers push_scalar takes (bool is excluded on purpose: it is an int, not a sample).
SCALAR_TYPES = frozenset({float, int, np.float32, np.float64})
_EXACT_INT = 2**53  # ints up to this convert to float exactly, so one rounding to float32 as numpy does


def _floats(buf: np.ndarray) -> memoryview:
    """A flat float32 memoryview on ``buf``'s memory: item access converts to and from Python floats."""
    return memoryview(buf).cast("B").cast("f")


class StepBinding:
    """The step graph bound to one stream's buffers (batch 1). Not thread-safe.

    ``state_names``/``state_shapes`` follow the manifest order; ``norm`` is
    ``(in_mean [F], in_std [F], out_mean [O], out_std [O])`` as float32 arrays.
    """

    def __init__(self, session: ort.InferenceSession, state_names: Sequence[str],
                 state_shapes: Sequence[Sequence[int]], norm: tuple[np.ndarray, ...]) -> None:
        self.names = list(state_names)
        self._in_mean, self._in_std, self._out_mean, self._out_std = norm
        n_features, n_targets = len(self._in_mean), len(self._out_mean)
        self._x = np.zeros((1, n_features), np.float32)  # [1, F] normalised input
        self._y = np.zeros((1, n_targets), np.float32)  # [1, O] normalised, then raw output
        self._sets = tuple([np.zeros((1, *shape), np.float32) for shape in state_shapes] for _ in range(2))
        self._cur = 0  # index of the set holding the current state
        self._xv, self._yv, self._scratch = _floats(self._x), _floats(self._y), _floats(np.zeros(1, np.float32))
        # Python-float copies of the normalisation constants (exact: they are float32 values)
        self._scalar = n_features == 1
        self._m_in, self._s_in = float(self._in_mean[0]), float(self._in_std[0])
        self._out = [(float(m), float(s)) for m, s in zip(self._out_mean, self._out_std)]
        x, y = ort.OrtValue.ortvalue_from_numpy(self._x), ort.OrtValue.ortvalue_from_numpy(self._y)
        sets = [[ort.OrtValue.ortvalue_from_numpy(a) for a in s] for s in self._sets]
        bindings = []
        for k in (0, 1):
            b = session.io_binding()
            b.bind_ortvalue_input(INPUT, x)
            b.bind_ortvalue_output(OUTPUT, y)
            for name, src, dst in zip(self.names, sets[k], sets[1 - k]):
                b.bind_ortvalue_input(name, src)
                b.bind_ortvalue_output(state_output(name), dst)
            bindings.append(b)
        self._keep = (x, y, sets, bindings)  # the OrtValues must outlive the bindings
        # The C-level call skips the Python wrapper's checks (~0.7 us); fall back if a release renames it.
        inner = getattr(session, "_sess", None)
        raw = [getattr(b, "_iobinding", None) for b in bindings]
        if inner is not None and hasattr(inner, "run_with_iobinding") and None not in raw:
            self._run, self._bindings = inner.run_with_iobinding, tuple(raw)  # called as _run(binding, None)
        else:
            self._run, self._bindings = (lambda b, _: session.run_with_iobinding(b)), tuple(bindings)
        self._one_target = n_targets == 1

    # -- state ----------------------------------------------------------------
    def state(self) -> list[np.ndarray]:
        """The current state buffers, ``[1, *shape]`` each (live views: copy before keeping)."""
        return self._sets[self._cur]

    def set_state(self, values: Mapping[str, np.ndarray]) -> None:
        """Copy checked per-stream arrays (name -> ``[*shape]`` or ``[1, *shape]``) into the current set."""
        for name, buf in zip(self.names, self._sets[self._cur]):
            buf[...] = np.reshape(values[name], buf.shape)

    def zero(self) -> None:
        for buf in self._sets[self._cur]:
            buf.fill(0.0)

    # -- steps ----------------------------------------------------------------
    def push_scalar(self, value: float | int) -> np.ndarray | None:
        """One sample of one feature, given as a plain number: raw ``y[1, O]``.

        Returns None, touching nothing, when the number is not a finite
        float32 (or not exactly representable on the fast path): the caller
        then takes the validating path, which raises the proper error.
        Raises :class:`~eddy.runtime.core.errors.InvalidInput`, touching
        nothing, when the answer or the new state is not finite.
        """
        if not self._scalar or (type(value) is int and not -_EXACT_INT <= value <= _EXACT_INT):
            return None
        f = self._scratch
        try:
            f[0] = value  # rounds to float32 as numpy's astype does; OverflowError past float32's range
        except (OverflowError, TypeError):
            return None
        x = f[0]
        if x - x != 0.0:  # inf or nan
            return None
        f[0] = x - self._m_in
        self._xv[0] = f[0] / self._s_in  # [1, 1] normalised input
        self._run(self._bindings[self._cur], None)
        yv = self._yv  # raw = y * std + mean, float32 after each operation
        if self._one_target:
            m, s = self._out[0]
            yv[0] = yv[0] * s
            yv[0] = yv[0] + m
        else:
            for i, (m, s) in enumerate(self._out):
                yv[i] = yv[i] * s
                yv[i] = yv[i] + m
        self._keep_if_finite(self._y)
        return self._y.copy()  # [1, O]

    def push_row(self, x: np.ndarray) -> np.ndarray:
        """One validated raw sample ``x[1, F]`` (float32): raw ``y[1, O]``."""
        np.divide(x - self._in_mean, self._in_std, out=self._x)  # [1, F]
        self._run(self._bindings[self._cur], None)
        y = (self._y * self._out_std + self._out_mean).astype(np.float32, copy=False)  # [1, O]
        self._keep_if_finite(y)
        return y

    def _keep_if_finite(self, y: np.ndarray) -> None:
        """Make the state the step wrote current, unless it or the answer ``y`` is not finite (InvalidInput)."""
        written = self._sets[1 - self._cur]
        if not np.isfinite(y).all() or not all(np.isfinite(a).all() for a in written):
            raise unanswerable(y)  # the current state stays: the step never happened
        self._cur ^= 1
