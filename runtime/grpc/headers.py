"""eddy's own gRPC metadata headers (no onnxruntime: the client imports this).

``x-eddy-session``: the session id, sent with every stream and session call, so
a load balancer in front of several replicas can hash on it
(deploy/envoy.yaml: RING_HASH) and a session's calls land on one replica.

``x-eddy-max-response-bytes``: the largest message the client will receive.
The server refuses, before running anything, a request whose answer would be
larger (RESOURCE_EXHAUSTED, session unchanged), instead of advancing a
session and then failing to deliver the answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..core.errors import InvalidInput, shown

__all__ = ["RESPONSE_LIMIT_HEADER", "SESSION_HEADER", "client_limit"]

SESSION_HEADER = "x-eddy-session"
RESPONSE_LIMIT_HEADER = "x-eddy-max-response-bytes"


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
