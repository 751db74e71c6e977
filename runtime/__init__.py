"""eddy's runtime: load exported recurrent models and stream samples through them.

Needs onnxruntime and numpy (grpcio for the server and client), never tensorflow. The public surface:

- `load(path)` returns a `Model`; `Model.stream()` returns a `Stream`, whose `push` takes raw samples and
  returns raw predictions (`Forecast` with intervals);
- the errors, each carrying the gRPC status name it maps to (`EddyError.code`), raised alike by the in-process
  runtime and by the client (`eddy.runtime.client`) for the status the server answered;
- `__version__`, the installed distribution's version.

`Model`, `Stream`, `load`, `Forecast` and `LiveFigures` are imported on first use (module `__getattr__`), so
`import eddy.runtime.client` does not load onnxruntime.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

from .core.errors import (
    AlreadyExists,
    EddyError,
    FailedPrecondition,
    InvalidInput,
    ModelLoadError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

if TYPE_CHECKING:
    from .core.live import LiveFigures
    from .core.model import Model, Stream, load
    from .core.monitor import Forecast

__all__ = [
    "AlreadyExists",
    "EddyError",
    "FailedPrecondition",
    "Forecast",
    "InvalidInput",
    "LiveFigures",
    "Model",
    "ModelLoadError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Stream",
    "Unauthenticated",
    "Unavailable",
    "__version__",
    "load",
]

try:
    __version__ = metadata.version("eddy-rnn")  # the installed distribution's, as the OIP server reports it
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "unknown"

_LAZY = {"Model": ".core.model", "Stream": ".core.model", "load": ".core.model",  # name -> module (onnxruntime)
         "Forecast": ".core.monitor", "LiveFigures": ".core.live"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
