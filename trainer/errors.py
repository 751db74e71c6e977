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
    """An exported graph disagrees with the Keras model beyond the tolerance."""

    def __init__(self, check: str, max_abs_error: float, tolerance: float) -> None:
        super().__init__(
            f"export parity check {check!r} failed: max abs error {max_abs_error:.3g} "
            f"exceeds its limit {tolerance:.3g} (the tolerance scaled by the outputs' magnitude, model units)"
        )
        self.check = check
        self.max_abs_error = max_abs_error
        self.tolerance = tolerance


class UnsupportedModelError(ExportError, InvalidInput):
    """A Keras model eddy cannot export (e.g. Bidirectional, Conv1D, attention); the message names what."""
