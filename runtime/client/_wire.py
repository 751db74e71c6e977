"""What the client's halves share: version field, channel options and credentials, gRPC error -> EddyError."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from ..core.errors import EddyError
from ..core.layout import parse_version
from ..grpc.status import error_from_status

__all__ = ["channel_setup", "rpc_error", "version_field"]


def version_field(version: str | int | None) -> str:
    """The wire form of a requested version: "" for the latest, else checked by the one version rule."""
    return "" if version is None or version == "" else str(parse_version(version))


def channel_setup(max_message_bytes: int, tls: bool, tls_ca: str | Path | None, tls_cert: str | Path | None,
                  tls_key: str | Path | None, token: str | None,
                  ) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, int]], tuple[tuple[str, str], ...]]:
    """(credentials or None for plaintext, channel options, per-call metadata) for a client's arguments."""
    if max_message_bytes < 1:
        raise ValueError(f"max_message_bytes must be >= 1, got {max_message_bytes}")
    token = token if token is not None else os.environ.get("EDDY_TOKEN") or None
    metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes)]
    credentials = None
    if tls or tls_ca is not None or tls_cert is not None or tls_key is not None:
        from ..grpc.security import client_credentials

        credentials = client_credentials(tls_ca, tls_cert, tls_key)
    return credentials, options, metadata


def rpc_error(e: grpc.RpcError) -> EddyError:
    """The :class:`EddyError` subclass matching a failed call's status (sync or grpc.aio)."""
    has_status = isinstance(e, grpc.Call) or isinstance(e, grpc.aio.AioRpcError)
    code = e.code() if has_status else grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
    details = (e.details() if has_status else None) or str(e)  # type: ignore[attr-defined]
    return error_from_status(code, details)
