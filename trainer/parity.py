"""Parity checks: the exported graphs against the Keras model, judged against float32's own rounding.

Ground truth is the Keras model computed in float64 (the same weights cast
up, :func:`eddy.trainer.keras_stack.run_stack`), once per check. Keras itself
runs in float32, so it is off the truth by its own rounding, which grows
with the sequence length and with how strongly the trained model amplifies
small differences. An exported graph is float32 too: it is accepted when its
error against the truth stays within :data:`FACTOR` times Keras-float32's own
error, plus a tiny floor::

    error <= FACTOR * keras_float32_error + FLOOR * max(1, max |truth|)

(the floor scales with the outputs' magnitude, so it stays a relative floor
for outputs in raw units). A wrong graph (wrong weights, state wiring,
activation, or normalisation applied twice) is off by orders of magnitude
more than rounding, so it still fails; a correct one no longer fails at
random on a long series. Errors are max abs differences in the graphs' units
(model units: normalised, or raw for a raw-scale model), over every output and final state.

The checks (each recorded in the manifest's ``parity.checks`` with its error,
Keras-float32's error, the limit, the sequence length and the rule that
passed it):

- ``window_vs_predict``: the sequence graph over whole windows ``[N, W, F]``
  from zero state, last output; Keras float32 here is what ``model.predict``
  answers (:func:`eddy.trainer.evaluate.forward`);
- ``chunked_sequence``: a series ``[T, F]`` and its reverse (a batch of two)
  cut into random chunks of 1..2W samples, chained sequence-graph calls,
  every output and the final state; up to :data:`PARITY_STEPS` steps, so a
  state wiring bug meets hundreds of chunk boundaries;
- ``chained_step``: the same with one step-graph call per sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _onnx
from .errors import ParityError
from .evaluate import forward

if TYPE_CHECKING:  # importing keras_stack imports tensorflow; this module stays cheap
    import keras

    from .keras_stack import RecurrentStack

__all__ = ["CHECKS", "FACTOR", "FLOOR", "PARITY_STEPS", "RULE", "SEQUENCE_FILE", "STEP_FILE", "check_parity", "judge",
           "verify_parity"]

# A graph may be off the float64 truth by FACTOR times Keras-float32's own error ... (bench/parity_sweep.py:
# over 20 seeds on weekly CO2 correct graphs were 1.2-5.4x Keras' error, log-normal with sd ~0.45, so 20x
# sits ~4.5 sd above the median; deliberately broken graphs were 10^4-10^5 times over the limit)
FACTOR = 20.0
FLOOR = 1e-6  # ... plus this, times max(1, max |truth|): rounding of outputs that Keras happens to hit exactly
PARITY_STEPS = 5000  # longest series the chained checks run (caps export time on long series)
CHECKS = ("window_vs_predict", "chunked_sequence", "chained_step")
RULE = f"error <= {FACTOR:g} x keras_float32_error + {FLOOR:g} x max(1, max|float64 truth|)"
STEP_FILE = "step.onnx"
SEQUENCE_FILE = "sequence.onnx"


def judge(
    name: str, got: Sequence[np.ndarray], f32: Sequence[np.ndarray], truth: Sequence[np.ndarray], steps: int
) -> dict[str, Any]:
    """Judge one check: the graph's arrays ``got`` and Keras-float32's ``f32`` against the float64
    ``truth`` (matching lists of arrays). Returns the check's record; raises
    :class:`~eddy.trainer.errors.ParityError` if the graph's error is over the limit (or not finite)."""
    error, keras_error = _max_abs(got, truth), _max_abs(f32, truth)
    scale = max(1.0, max(float(np.max(np.abs(t), initial=0.0)) for t in truth))
    floor = FLOOR * scale
    limit = FACTOR * keras_error + floor
    if not error <= limit:  # also catches NaN
        raise ParityError(name, error, limit, keras_error, steps)
    rule = ("factor" if error <= FACTOR * keras_error else "floor" if error <= floor else "factor+floor")
    return {"error": error, "keras_float32_error": keras_error, "limit": limit, "steps": steps, "rule": rule}


def verify_parity(
    model: keras.Model,
    out_dir: str | Path,
    windows: np.ndarray,
    series: np.ndarray,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Check the exported graphs in ``out_dir`` against ``model`` (see the module docstring).

    ``windows`` ``[N, W, F]`` and ``series`` ``[T, F]`` are in the graphs'
    (model) units; ``seed`` draws the chunk lengths. Returns the
    manifest's ``parity`` record; raises
    :class:`~eddy.trainer.errors.ParityError` for the first failing check.
    """
    from .keras_stack import inspect_model

    return check_parity(model, inspect_model(model), Path(out_dir), windows, series, seed=seed)


def check_parity(
    model: keras.Model,
    stack: RecurrentStack,
    out_dir: Path,
    windows: np.ndarray,
    series: np.ndarray,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`verify_parity` for an already inspected ``stack`` of ``model``."""
    from .keras_stack import run_stack

    step = _onnx.session(out_dir / STEP_FILE)
    seq = _onnx.session(out_dir / SEQUENCE_FILE)
    checks: dict[str, Any] = {}

    # (a) whole windows: the sequence graph's last output vs Keras' answer (model.predict's), both vs float64.
    windows = np.asarray(windows, np.float32)  # [N, W, F]
    width = windows.shape[1]
    y_seq = seq.run(["y"], {"x": windows, **stack.zero_state(len(windows))})[0]  # [N, W, O]
    truth = run_stack(stack, windows, "float64")[0][:, -1]  # [N, O]
    checks["window_vs_predict"] = judge(
        "window_vs_predict", [y_seq[:, -1]], [forward(model, windows)], [truth], width)

    # The whole series and its reverse, from zero state: Keras float32 and the float64 truth.
    series = np.asarray(series, np.float32)  # [T, F]
    batch = np.stack([series, series[::-1]])  # [2, T, F]
    f32 = run_stack(stack, batch)  # [y [2, T, O], *final states [2, U]]
    truth64 = run_stack(stack, batch, "float64")
    steps = batch.shape[1]

    # (b) random chunks through the sequence graph
    rng = np.random.default_rng(seed)

    def chunk_lengths() -> Iterator[int]:
        while True:
            yield int(rng.integers(1, 2 * width + 1))  # chunk length 1 .. 2W

    y, state = _onnx.run_chunks(seq, stack.state, batch, chunk_lengths())  # [2, T, O]
    checks["chunked_sequence"] = judge("chunked_sequence", [y, *state.values()], f32, truth64, steps)

    # (c) one step-graph call per sample
    y, state = _onnx.run_steps(step, stack.state, batch)  # [2, T, O]
    checks["chained_step"] = judge("chained_step", [y, *state.values()], f32, truth64, steps)
    return {"reference": "keras float64 (same weights)", "rule": RULE, "factor": FACTOR, "floor": FLOOR,
            "units": "model", "checks": checks}


def _max_abs(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float:
    """Max abs difference over matching arrays, in float64 (NaN if any is NaN)."""
    diffs = [np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64)), initial=0.0) for g, w in zip(got, want)]
    return float(np.max(diffs))
