"""eddy's exceptions. Each carries the gRPC status code it maps to.

The code is kept as the status *name* (``"INVALID_ARGUMENT"``) so the
in-process runtime never needs grpc to raise or inspect an error; the server
turns it into ``grpc.StatusCode[name]``.
"""

from __future__ import annotations

__all__ = [
    "EddyError",
    "error_for_code",
    "InvalidInput",
    "NotFound",
    "ModelLoadError",
    "ResourceExhausted",
    "FailedPrecondition",
    "Unavailable",
    "AlreadyExists",
    "Unauthenticated",
    "PermissionDenied",
]


class EddyError(Exception):
    """Base class. ``code`` is the gRPC status name this error maps to."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(EddyError, ValueError):
    """The caller sent something malformed: shape, dtype, NaN/inf, empty."""

    code = "INVALID_ARGUMENT"


class NotFound(EddyError, LookupError):
    """Unknown model, version or session."""

    code = "NOT_FOUND"


class ModelLoadError(EddyError):
    """A model directory is missing, broken or has been tampered with."""

    code = "FAILED_PRECONDITION"


class ResourceExhausted(EddyError):
    """A configured limit was reached."""

    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(EddyError):
    """The request is valid but not in the current state (e.g. session busy)."""

    code = "FAILED_PRECONDITION"


class AlreadyExists(EddyError):
    """The resource to create exists already (e.g. a session id opened without ``resume``)."""

    code = "ALREADY_EXISTS"


class Unauthenticated(EddyError):
    """The caller or the bytes it sent could not be authenticated (bad token, bad state MAC)."""

    code = "UNAUTHENTICATED"


class PermissionDenied(EddyError):
    """Authenticated, but the resource belongs to someone else (another tenant's state)."""

    code = "PERMISSION_DENIED"


class Unavailable(EddyError):
    """A service eddy depends on (the shared session store) cannot be reached; retry later."""

    code = "UNAVAILABLE"


# The one table from status name to error class, used by every protocol's client side
# (ModelLoadError shares FAILED_PRECONDITION and comes back as FailedPrecondition).
_BY_CODE: dict[str, type[EddyError]] = {
    cls.code: cls for cls in (InvalidInput, NotFound, ResourceExhausted, FailedPrecondition, Unavailable, AlreadyExists,
                              Unauthenticated, PermissionDenied)
}


def error_for_code(code: str, message: str) -> EddyError:
    """The :class:`EddyError` subclass for a status name, or a plain one carrying ``code`` (e.g. UNAVAILABLE)."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    err = EddyError(message)
    err.code = code
    return err
