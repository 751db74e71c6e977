"""Parity checks: the exported graphs against the Keras model, with onnxruntime, before publishing.

(See :func:`verify_parity`.) All figures are in normalised units.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _onnx
from .errors import ParityError

if TYPE_CHECKING:  # importing keras_stack imports tensorflow; this module stays cheap
    import keras

    from .keras_stack import RecurrentStack

__all__ = ["PARITY_STEPS", "SEQUENCE_FILE", "STEP_FILE", "TOLERANCE", "check_parity", "verify_parity"]

TOLERANCE = 1e-5  # parity: max abs error allowed per unit of output magnitude, and the absolute floor (model units)
RULE = ("|graph - Keras| <= tolerance * max(1, max |Keras output|) per check: relative to the outputs' magnitude, "
        "with the tolerance itself as the absolute floor (model units: normalised, or raw for a raw-scale model)")
PARITY_STEPS = 5000  # longest sequence the chained parity checks run (caps export time on long series)
STEP_FILE = "step.onnx"
SEQUENCE_FILE = "sequence.onnx"


def verify_parity(
    model: keras.Model,
    out_dir: str | Path,
    windows: np.ndarray,
    series: np.ndarray,
    *,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> dict[str, float]:
    """Check the exported graphs in ``out_dir`` against Keras with onnxruntime.

    - ``window_vs_predict``: for ``windows`` ``[N, W, F]``, the sequence graph's
      last output from zero state vs ``model.predict``;
    - ``chunked_sequence``: ``series`` ``[T, F]`` (and its reverse, as a batch
      of two) cut into random chunks, chained sequence-graph calls vs Keras'
      per-step outputs over the whole sequence from zero state;
    - ``chained_step``: the same with one step-graph call per sample.

    The chained checks compare the final state too. Returns each check's max
    abs error and the tolerance; raises :class:`~eddy.trainer.errors.ParityError`
    for the first check over ``tolerance``.
    """
    from .keras_stack import inspect_model

    return check_parity(model, inspect_model(model), Path(out_dir), windows, series, tolerance=tolerance, seed=seed)


def check_parity(
    model: keras.Model,
    stack: RecurrentStack,
    out_dir: Path,
    windows: np.ndarray,
    series: np.ndarray,
    *,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`verify_parity` for an already inspected ``stack`` of ``model``."""
    from .keras_stack import run_stack
    step = _onnx.session(out_dir / STEP_FILE)
    seq = _onnx.session(out_dir / SEQUENCE_FILE)
    figures: dict[str, Any] = {"tolerance": tolerance, "rule": RULE, "limits": {}}

    def check(name: str, got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> None:
        err = max(float(np.max(np.abs(g - w), initial=0.0)) for g, w in zip(got, want))
        limit = tolerance * max(1.0, float(np.max(np.abs(want[0]), initial=0.0)))  # want[0]: the outputs y
        if not err <= limit:  # also catches NaN
            raise ParityError(name, err, limit)
        figures[name] = err
        figures["limits"][name] = limit

    # (a) whole windows vs model.predict
    windows = np.asarray(windows, np.float32)  # [N, W, F]
    y_seq = seq.run(["y"], {"x": windows, **stack.zero_state(len(windows))})[0]  # [N, W, O]
    check("window_vs_predict", [y_seq[:, -1, :]], [np.asarray(model.predict(windows, verbose=0))])

    # Keras reference over the whole sequence: the twin layers in TensorFlow, from zero state.
    series = np.asarray(series, np.float32)  # [T, F]
    batch = np.stack([series, series[::-1]])  # [2, T, F]
    want = run_stack(stack, batch)  # [y [2, T, O], *final states [2, U]]

    # (b) random chunks through the sequence graph
    rng = np.random.default_rng(seed)

    def chunk_lengths() -> Iterator[int]:
        while True:
            yield int(rng.integers(1, 2 * windows.shape[1] + 1))  # chunk length 1 .. 2W

    y, state = _onnx.run_chunks(seq, stack.state, batch, chunk_lengths())  # [2, T, O]
    check("chunked_sequence", [y, *state.values()], want)

    # (c) one step-graph call per sample
    y, state = _onnx.run_steps(step, stack.state, batch)  # [2, T, O]
    check("chained_step", [y, *state.values()], want)
    return figures
