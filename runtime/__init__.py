"""eddy's runtime: load exported recurrent models and stream samples through them.

Needs onnxruntime and numpy (grpcio for the server and client), never
tensorflow. ``runtime.load(path)`` is the entry point; see :mod:`eddy.runtime.core.model`.
"""

from .core.errors import EddyError, FailedPrecondition, InvalidInput, ModelLoadError, NotFound, ResourceExhausted
from .core.model import Model, Stream, load

__all__ = [
    "EddyError",
    "FailedPrecondition",
    "InvalidInput",
    "Model",
    "ModelLoadError",
    "NotFound",
    "ResourceExhausted",
    "Stream",
    "load",
]

__version__ = "0.1.0"
