"""One way to run a unary RPC on grpc.aio, shared by the eddy.v1 and OIP servicers, and how an RPC really ended.

``run_unary`` awaits the work, records the RPC's true status in the metrics
(OK, the error's own status, CANCELLED or DEADLINE_EXCEEDED when the caller
left) and its latency, and aborts with the mapped status when the work raises
(see :mod:`~eddy.runtime.grpc.status`). ``ended_early`` tells how a call
ended when the caller left (streams: :mod:`~eddy.runtime.grpc.lifecycle`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from ..core.errors import InvalidInput
from .status import to_status
from .wire import RateLimitedLog, is_malformed

__all__ = ["ended_early", "run_unary"]

T = TypeVar("T")


async def run_unary(method: str, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]], metrics: Any, *,
                    request: object = None, faults: RateLimitedLog | None = None) -> T:
    """Await ``work`` and record it; abort the RPC with the right status if it raises.

    A ``request`` that failed to parse (see :func:`~eddy.runtime.grpc.wire.is_malformed`) is refused with
    INVALID_ARGUMENT before any work, with one rate-limited line on ``faults``.
    """
    t0 = time.perf_counter()
    try:
        if request is not None and is_malformed(request):
            message = request.message  # type: ignore[attr-defined]
            if faults is not None:
                faults.warning("malformed", "%s: %s (peer %s)", method, message, context.peer())
            raise InvalidInput(message)
        result = await work()
    except asyncio.CancelledError:
        metrics.rpc(method, (ended_early(context) or grpc.StatusCode.CANCELLED).name)
        raise
    except Exception as e:
        code, message = to_status(e, method)
        metrics.rpc(method, code.name)
        await context.abort(code, message)  # raises
        raise  # pragma: no cover
    metrics.latency(method)(time.perf_counter() - t0)
    metrics.rpc(method, "OK")
    return result


def ended_early(context: grpc.aio.ServicerContext) -> grpc.StatusCode | None:
    """DEADLINE_EXCEEDED if the caller's deadline passed, CANCELLED if the call was cancelled, else None."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED if context.cancelled() else None

