"""eddy's own gRPC metadata headers (no onnxruntime: the client imports this).

``x-eddy-session``: the session id, sent with every stream and session call, so
a load balancer in front of several replicas can hash on it
(deploy/envoy.yaml: RING_HASH) and a session's calls land on one replica.
gRPC metadata is printable ASCII: an id with other characters is sent
percent-encoded (UTF-8), see :func:`session_header`. The server never reads it.

``x-eddy-max-response-bytes``: the largest message the client will receive.
The server refuses, before running anything, a request whose answer would be
larger (RESOURCE_EXHAUSTED, session unchanged), instead of advancing a
session and then failing to deliver the answer.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from urllib.parse import quote

from ..core.errors import InvalidInput, shown
from ..core.ids import check_id

__all__ = ["RESPONSE_LIMIT_HEADER", "SESSION_HEADER", "client_limit", "session_header"]

SESSION_HEADER = "x-eddy-session"
RESPONSE_LIMIT_HEADER = "x-eddy-max-response-bytes"
_ASCII = string.ascii_letters + string.digits + string.punctuation + " "  # what a metadata value may hold


def session_header(session_id: str) -> tuple[str, str]:
    """The ``x-eddy-session`` header of ``session_id`` ("" for none); InvalidInput if the id is malformed.

    An ASCII id is sent as it is; any other is percent-encoded (UTF-8), which
    gRPC accepts and a proxy hashes the same way every time.
    """
    sid = check_id(session_id) or ""
    return SESSION_HEADER, sid if sid.isascii() else quote(sid, safe=_ASCII)


def client_limit(metadata: Iterable[tuple[str, str | bytes]] | None) -> int | None:
    """The client's advertised receive limit in ``metadata`` (None if not sent)."""
    for key, value in metadata or ():
        if key == RESPONSE_LIMIT_HEADER:
            text = value.decode() if isinstance(value, bytes) else value
            if not (text.isascii() and text.isdigit() and len(text) <= 18 and int(text) > 0):
                raise InvalidInput(f"metadata {RESPONSE_LIMIT_HEADER} must be a positive integer of at most 18 "
                                   f"digits, got {shown(text)}")
            return int(text)
    return None
