"""Trainer errors, in eddy's hierarchy (:mod:`eddy.runtime.core.errors`)."""

from __future__ import annotations

from eddy.runtime.core.errors import EddyError, InvalidInput

__all__ = ["DataError", "ExportError", "ParityError", "TrainingError", "UnsupportedModelError"]


class DataError(InvalidInput):
    """The training data is unusable: missing file, bad CSV, unknown column, too short.

    The message is one line that names the file (or data set) and the problem.
    """


class TrainingError(EddyError):
    """Training went wrong (e.g. the loss became non-finite)."""


class ExportError(EddyError):
    """The trained model could not be exported to ONNX."""


class ParityError(ExportError):
    """An exported graph disagrees with the Keras model by more than float32 rounding explains
    (see :mod:`eddy.trainer.parity` for the rule)."""

    def __init__(self, check: str, error: float, limit: float, keras_error: float | None = None,
                 steps: int | None = None) -> None:
        against = (f" against Keras in float64 exceeds the limit {limit:.3g} (Keras float32's own error "
                   f"{keras_error:.3g}; {steps} steps; model units)" if keras_error is not None
                   else f" exceeds the limit {limit:.3g}")
        super().__init__(f"export parity check {check!r} failed: max abs error {error:.3g}{against}")
        self.check = check  # e.g. "chunked_sequence"
        self.error = error  # the graph's max abs error against the reference
        self.limit = limit  # what the rule allowed
        self.keras_error = keras_error  # Keras float32's max abs error against the float64 truth, if judged so
        self.steps = steps  # sequence length of the check


class UnsupportedModelError(ExportError, InvalidInput):
    """A Keras model eddy cannot export (e.g. Bidirectional, Conv1D, attention); the message names what."""
