"""eddy's runtime: load exported recurrent models and stream samples through them.

Needs onnxruntime and numpy (grpcio for the server and client), never
tensorflow. ``eddy.runtime.load(path)`` is the entry point; see :mod:`eddy.runtime.core.model`.

``Model``, ``Stream`` and ``load`` are imported on first use (module
``__getattr__``), so ``import eddy.runtime.client`` does not load onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core.errors import EddyError, FailedPrecondition, InvalidInput, ModelLoadError, NotFound, ResourceExhausted

if TYPE_CHECKING:
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

_LAZY = {"Model": ".core.model", "Stream": ".core.model", "load": ".core.model"}  # name -> module (onnxruntime)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
