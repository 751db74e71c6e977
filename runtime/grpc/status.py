"""Errors <-> gRPC status, for the server and the client alike.

The one mapping: an :class:`~eddy.runtime.core.errors.EddyError` carries its
status *name* (``error.code``); here that name becomes a ``grpc.StatusCode``
(server side, and in-band ``Error`` messages by number) and a status comes
back as the matching error class (client side, through
:func:`~eddy.runtime.core.errors.error_for_code`). Anything that is not an
``EddyError`` is INTERNAL with a generic message; the traceback goes to the log
(at most 5 per 10 s per RPC: a caller that found a bug cannot flood it), never
a library's raw message to the caller. A message longer than
:data:`MAX_MESSAGE` characters is cut: gRPC refuses status details past its
metadata limit, and the caller would get RESOURCE_EXHAUSTED instead.
"""

from __future__ import annotations

import logging

import grpc

from eddy.v1 import inference_pb2 as pb

from ..core.errors import EddyError, error_for_code
from .wire import RateLimitedLog

__all__ = ["MAX_MESSAGE", "code_name", "error_from_status", "error_to_proto", "status_code", "to_status"]

log = logging.getLogger("eddy.servicer")
_unexpected = RateLimitedLog(log)  # tracebacks of unexpected errors, per RPC
MAX_MESSAGE = 1024  # characters of an error message sent to the caller

_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}  # google.rpc.Code number -> StatusCode


def status_code(error: EddyError) -> grpc.StatusCode:
    """The gRPC status an :class:`EddyError` maps to (INTERNAL if its code is not a status name)."""
    return grpc.StatusCode.__members__.get(error.code, grpc.StatusCode.INTERNAL)


def to_status(error: BaseException, rpc: str) -> tuple[grpc.StatusCode, str]:
    """Status and message to end RPC ``rpc`` with; unexpected errors are logged and hidden."""
    if isinstance(error, EddyError):
        return status_code(error), _cut(error.message)
    _unexpected.error(rpc, "%s failed", rpc, exc_info=error)
    return grpc.StatusCode.INTERNAL, "internal error; see the server log"


def error_to_proto(error: EddyError) -> pb.Error:
    """An in-band ``Error`` message: google.rpc.Code number and the message."""
    return pb.Error(code=status_code(error).value[0], message=_cut(error.message))


def code_name(number: int) -> str:
    """The status name of a google.rpc.Code number (``"UNKNOWN"`` if it is none)."""
    code = _BY_NUMBER.get(number)
    return code.name if code is not None else "UNKNOWN"


def error_from_status(code: grpc.StatusCode | int, message: str) -> EddyError:
    """The matching :class:`EddyError` subclass for a status (enum or number).

    Codes without a dedicated class give a plain :class:`EddyError` whose
    ``code`` is the status name (e.g. ``"UNAVAILABLE"``).
    """
    name = code_name(code) if isinstance(code, int) else code.name
    return error_for_code(name, message)


def _cut(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 3] + "..."
