"""What the client's halves share: version field, channel options and credentials, gRPC error -> EddyError,
and when to try a refused resume again."""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import numpy as np

from eddy.v1 import inference_pb2 as pb

from ..core.errors import EddyError, InvalidInput, Unavailable, busy_lease
from ..core.layout import parse_version
from ..core.monitor import Forecast
from ..grpc.status import error_from_status
from ..grpc.tensors import tensor_to_bounds
from ..serving.config import ServeConfig

__all__ = ["ResumeRetry", "channel_setup", "forecast_of", "rpc_error", "status_error", "version_field"]

# INTERNAL statuses no server sent: an HTTP/2 reset without a gRPC status, and grpc.aio's verdict on a message
# sent into a call the transport had already ended (the call's real status is lost then)
_CUT = ("RST_STREAM", "Internal error from Core")


def version_field(version: str | int | None) -> str:
    """The wire form of a requested version: "" for the latest, else checked by the one version rule."""
    return "" if version is None or version == "" else str(parse_version(version))


def forecast_of(predictions: pb.Predictions, y: np.ndarray, asked: tuple[float, ...]) -> Forecast:
    """A stream answer's predictions ``y[n, O]`` with the intervals of the ``asked`` levels; InvalidInput naming
    what is wrong when the server's answer does not hold them (the caller ends the stream: a protocol error)."""
    try:
        lower, upper = tensor_to_bounds(predictions.intervals, y.shape)
    except InvalidInput as e:
        raise InvalidInput(f"protocol error: malformed intervals from the server: {e.message}") from None
    if len(lower) != len(asked):
        raise InvalidInput(f"protocol error: {len(asked)} interval level(s) asked, {len(lower)} received")
    return Forecast(y, lower, upper)


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
    return status_error(code, details)


def status_error(code: grpc.StatusCode, details: str) -> EddyError:
    """The :class:`EddyError` for the status a call ended with (see :func:`rpc_error`)."""
    if code == grpc.StatusCode.INTERNAL and any(cut in details for cut in _CUT):
        # No server said INTERNAL: a proxy resets a stream (Envoy: RST_STREAM INTERNAL_ERROR) when the replica behind
        # it goes away, which gRPC reports as INTERNAL by the letter of its spec. To the caller it is a connection
        # lost mid-call, whatever became of the last message.
        return Unavailable(f"the stream was reset without an answer (HTTP/2 RST_STREAM, as a proxy sends when the "
                           f"server behind it goes away; gRPC: {details}); reopen it with resume=True")
    return error_from_status(code, details)


class ResumeRetry:
    """When to try again an ``open`` with ``resume`` that was refused; :meth:`pause` says how long to wait first.

    Tried again within a bound, measured from the first attempt: a session held under a lease, maybe by a replica
    that died (FAILED_PRECONDITION from :func:`~eddy.runtime.core.errors.session_busy` naming the lease), for as
    long as that lease; UNAVAILABLE (no replica reachable yet, e.g. a proxy that has not seen the crash) for the
    default lease, ``ServeConfig.lease_s``. Anything else is final, a session a stream of the refusing server
    itself holds too (that stream is alive as far as the server knows).
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.bound = 0.0  # seconds after ``started`` to keep trying; grows with what the refusals say

    def pause(self, error: EddyError) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise ``error``."""
        lease = busy_lease(error.message) if error.code == "FAILED_PRECONDITION" else None
        if lease:
            wait = lease
        elif error.code == "UNAVAILABLE":
            wait = ServeConfig.lease_s
        else:
            return None
        self.bound = max(self.bound, wait * 1.1 + 0.1)  # a margin for the two clocks
        left = self.started + self.bound - time.monotonic()
        return None if left <= 0 else min(left, max(0.02, wait / 20))  # ~20 tries per lease
