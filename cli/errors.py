"""The one table from error to exit status, and the one message format: ``eddy <command>: <message>``.

Every ``eddy`` command ends through :func:`report`, so the same problem
exits the same way from every command:

====  ==========================================================================
2     bad usage or bad input: flags, a CSV, a file or model directory that is
      missing, unreadable, broken or tampered, data the trainer refuses
1     the server or the model failed (unknown model on a server, UNAVAILABLE,
      training diverged, export failed, cannot bind a port)
130   interrupted (Ctrl-C)
====  ==========================================================================
"""

from __future__ import annotations

import sys

from eddy.runtime.core.errors import EddyError, InvalidInput, ModelLoadError

__all__ = ["FAILED", "INTERRUPTED", "USAGE", "UsageError", "exit_status", "message", "report"]

USAGE = 2  # bad flags, data or input files (nothing was done)
FAILED = 1  # the server, the model or the run failed
INTERRUPTED = 130  # SIGINT, as a shell reports it


class UsageError(Exception):
    """Bad arguments or input named by the user (a missing file, a bad CSV cell)."""


_STATUS: tuple[tuple[type[BaseException], int], ...] = (  # first match wins
    (KeyboardInterrupt, INTERRUPTED),
    (UsageError, USAGE),
    (InvalidInput, USAGE),  # malformed input; the trainer's DataError and UnsupportedModelError are ones
    (ModelLoadError, USAGE),  # a model directory the user named is broken or tampered
    (FileNotFoundError, USAGE),
    (EddyError, FAILED),
    (OSError, FAILED),
)


def exit_status(error: BaseException) -> int:
    """The exit status for ``error`` (:data:`FAILED` for anything the table does not name)."""
    return next((status for cls, status in _STATUS if isinstance(error, cls)), FAILED)


def message(error: BaseException) -> str:
    """One line saying what went wrong, without a traceback."""
    if isinstance(error, EddyError):
        return error.message
    if isinstance(error, KeyboardInterrupt):
        return str(error) or "interrupted"
    if isinstance(error, OSError) and error.strerror:
        return (f"{error.filename}: " if error.filename else "") + error.strerror
    return str(error) or type(error).__name__


def report(command: str, error: BaseException) -> int:
    """Print ``eddy <command>: <message>`` on stderr; returns the exit status."""
    print(f"eddy {command}: {message(error)}", file=sys.stderr, flush=True)
    return exit_status(error)
