"""eddy's exceptions. Each carries the gRPC status code it maps to.

The code is kept as the status *name* (``"INVALID_ARGUMENT"``) so the
in-process runtime never needs grpc to raise or inspect an error; the server
turns it into ``grpc.StatusCode[name]``.

A message that repeats what the caller sent (a model name, a version, a
header) goes through :func:`shown`, so it stays short whatever was sent.
"""

from __future__ import annotations

import re

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
    "busy_lease",
    "session_busy",
    "MAX_SHOWN",
    "shown",
]

MAX_SHOWN = 64  # characters of caller-sent text an error message repeats; the rest is cut (its length said)


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


def session_busy(session_id: str, lease_s: float | None = None) -> FailedPrecondition:
    """The refusal of a session another stream drives.

    ``lease_s``: the holder may be a crashed replica, whose lease lets go of the session within that many seconds
    (a session store's ``--lease-s``); None: the holder is a stream of the refusing server itself.
    """
    where = "" if lease_s is None else \
        f" (here or on another replica; a crashed replica's lease expires within {lease_s:g} s)"
    return FailedPrecondition(f"session {session_id} is in use by another stream{where}")


_BUSY = re.compile(r"session .+ is in use by another stream(?: \(here or on another replica; a crashed replica's "
                   r"lease expires within ([0-9.e+-]+) s\))?")


def busy_lease(message: str) -> float | None:
    """For a :func:`session_busy` refusal: the seconds its holder's lease may still last (0.0: a stream of the
    refusing server holds it); None for any other message."""
    m = _BUSY.fullmatch(message)
    if m is None:
        return None
    try:
        return float(m[1]) if m[1] else 0.0
    except ValueError:
        return None


def shown(text: object, limit: int = MAX_SHOWN, *, quote: bool = True) -> str:
    """``repr(text)`` (``quote=False``: the text itself) for an error message, cut to its first ``limit``
    characters if longer, with its length said."""
    value = text if isinstance(text, str) else str(text)
    if len(value) <= limit:
        return repr(value) if quote else value
    return f"{value[:limit]!r}... ({len(value)} characters)" if quote else f"{value[:limit]}... ({len(value)} characters)"
