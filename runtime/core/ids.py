"""Session ids: THE rule for the ids clients give, checked on every path that takes one (and by eddy's clients).

An id is 1-:data:`MAX_SESSION_ID` printable characters (any script) without
leading or trailing spaces; empty means "make one up" where that is allowed.
"""

from __future__ import annotations

from .errors import InvalidInput

__all__ = ["MAX_SESSION_ID", "check_id"]

MAX_SESSION_ID = 128  # characters; ids come from clients, so they are bounded


def check_id(session_id: str | None) -> str | None:
    """A client-given session id, checked (None for "make one up"); InvalidInput names the rule."""
    if session_id is None or session_id == "":
        return None
    if not isinstance(session_id, str):
        raise InvalidInput(f"session id must be a string, got {type(session_id).__name__}")
    if len(session_id) > MAX_SESSION_ID or not session_id.isprintable() or session_id.strip() != session_id:
        raise InvalidInput(f"session id must be 1-{MAX_SESSION_ID} printable characters without "
                           "leading/trailing spaces")
    return session_id
