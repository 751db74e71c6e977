"""What the client's two halves share: version field, gRPC error -> EddyError."""

from __future__ import annotations

import grpc

from ..core.errors import EddyError
from ..core.layout import parse_version
from ..grpc.status import error_from_status

__all__ = ["rpc_error", "version_field"]


def version_field(version: str | int | None) -> str:
    """The wire form of a requested version: "" for the latest, else checked by the one version rule."""
    return "" if version is None or version == "" else str(parse_version(version))


def rpc_error(e: grpc.RpcError) -> EddyError:
    """The :class:`EddyError` subclass matching a failed call's status."""
    code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (e.details() if isinstance(e, grpc.Call) else None) or str(e)
    return error_from_status(code, details)
