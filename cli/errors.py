"""The one table from error to exit status, and the one message format: ``eddy <command>: <message>``.

Every ``eddy`` command ends through :func:`report`, so the same problem
exits the same way from every command, whether a local check or a server
found it:

====  ==========================================================================
2     bad usage or bad input: flags, a CSV, a file or model directory that is
      missing, unreadable, broken or tampered, data the trainer refuses, TLS
      flags that do not fit the server; from a server, the statuses that say
      the request was wrong (:data:`CLIENT_STATUSES`: INVALID_ARGUMENT,
      NOT_FOUND, ALREADY_EXISTS, OUT_OF_RANGE, UNAUTHENTICATED,
      PERMISSION_DENIED)
1     the server or the model failed (every other status: UNAVAILABLE,
      RESOURCE_EXHAUSTED, FAILED_PRECONDITION, DEADLINE_EXCEEDED, INTERNAL, ...;
      training diverged, export failed, cannot bind a port)
130   interrupted (Ctrl-C)
141   standard output closed by its reader (``eddy info --json | head``): the
      command stops quietly, as a shell reports a process ended by SIGPIPE
====  ==========================================================================

An :class:`~eddy.runtime.core.errors.EddyError` carries its gRPC status name
(``error.code``) whether it was raised here or came back from a server, so
an unknown model is NOT_FOUND, exit 2, over ``--server`` and ``--local`` alike.
"""

from __future__ import annotations

import os
import select
import sys

from eddy.runtime.core.errors import EddyError, ModelLoadError

__all__ = ["BROKEN_PIPE", "CLIENT_STATUSES", "FAILED", "INTERRUPTED", "STATUS_EXIT", "USAGE", "UsageError",
           "exit_status", "message", "report", "stdout_closed"]

USAGE = 2  # bad flags, data or input files (nothing was done)
FAILED = 1  # the server, the model or the run failed
INTERRUPTED = 130  # SIGINT, as a shell reports it
BROKEN_PIPE = 141  # stdout's reader went away (| head): 128 + SIGPIPE, as a shell reports `cat` ended by it


class UsageError(Exception):
    """Bad arguments or input named by the user (a missing file, a bad CSV cell)."""


# Every gRPC status name -> exit status (an EddyError's code, raised here or sent by a server).
STATUS_EXIT: dict[str, int] = {
    "INVALID_ARGUMENT": USAGE,  # malformed input, a bad CSV, a model eddy cannot export
    "NOT_FOUND": USAGE,  # an unknown model, version or session
    "ALREADY_EXISTS": USAGE,  # a session id that is taken
    "OUT_OF_RANGE": USAGE,
    "UNAUTHENTICATED": USAGE,  # a missing or wrong token, forged state bytes
    "PERMISSION_DENIED": USAGE,  # another tenant's state bytes
    "CANCELLED": FAILED,
    "UNKNOWN": FAILED,
    "DEADLINE_EXCEEDED": FAILED,
    "RESOURCE_EXHAUSTED": FAILED,  # a server limit (sessions, streams, message size)
    "FAILED_PRECONDITION": FAILED,  # the server's state (a session busy or taken over); a broken local directory: 2
    "ABORTED": FAILED,
    "UNIMPLEMENTED": FAILED,
    "INTERNAL": FAILED,  # training diverged, export failed, a server bug
    "UNAVAILABLE": FAILED,  # no server there, a store down
    "DATA_LOSS": FAILED,
}
CLIENT_STATUSES = frozenset(code for code, status in STATUS_EXIT.items() if status == USAGE)  # the request was wrong

_BY_CLASS: tuple[tuple[type[BaseException], int], ...] = (  # first match wins, before the status table
    (KeyboardInterrupt, INTERRUPTED),
    (UsageError, USAGE),
    (ModelLoadError, USAGE),  # a model directory the user named is broken or tampered (FAILED_PRECONDITION)
    (FileNotFoundError, USAGE),
)


def exit_status(error: BaseException) -> int:
    """The exit status for ``error``: its class in the table above, else its status in :data:`STATUS_EXIT`
    (EddyErrors; the trainer's DataError and UnsupportedModelError are INVALID_ARGUMENT), else :data:`FAILED`."""
    for cls, status in _BY_CLASS:
        if isinstance(error, cls):
            return status
    if isinstance(error, EddyError):
        return STATUS_EXIT.get(error.code, FAILED)
    return FAILED


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
    """Print ``eddy <command>: <message>`` on stderr; returns the exit status. A write to a standard output whose
    reader went away (``| head``) ends quietly instead: :data:`BROKEN_PIPE`, nothing printed."""
    if isinstance(error, BrokenPipeError) and stdout_closed():
        return BROKEN_PIPE
    print(f"eddy {command}: {message(error)}", file=sys.stderr, flush=True)
    return exit_status(error)


def stdout_closed() -> bool:
    """True if standard output is a pipe whose reader has gone; then it is pointed at /dev/null, so what is still
    buffered (flushed at exit) goes nowhere instead of raising again (the recipe of Python's ``signal`` docs)."""
    try:
        fd = sys.stdout.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        gone = any(events & select.POLLERR for _, events in poll.poll(0))  # a pipe's write end, readers gone
    except (AttributeError, OSError, ValueError):  # no real file descriptor (e.g. captured output)
        return False
    if gone:
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return gone
