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

__all__ = ["DEADLINE_SLACK_S", "ended_early", "run_unary"]

DEADLINE_SLACK_S = 0.05  # a cancel this close to the caller's deadline is the deadline's (see ended_early)

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
        metrics.rpc(method, (ended_early(context, cancelled=True) or grpc.StatusCode.CANCELLED).name)
        raise
    except Exception as e:
        code, message = to_status(e, method)
        metrics.rpc(method, code.name)
        await context.abort(code, message)  # raises
        raise  # pragma: no cover
    metrics.latency(method)(time.perf_counter() - t0)
    metrics.rpc(method, "OK")
    return result


def ended_early(context: grpc.aio.ServicerContext, cancelled: bool = False) -> grpc.StatusCode | None:
    """DEADLINE_EXCEEDED if the caller's deadline passed, CANCELLED if the call was cancelled, else None.

    ``cancelled``: the caller knows the call was cancelled (its task was). A
    client whose deadline passes cancels the call itself, and that cancel
    can reach the server a little before the server's copy of the deadline
    (taken when the call arrived) passes: a cancel within
    :data:`DEADLINE_SLACK_S` of the deadline counts as DEADLINE_EXCEEDED.
    """
    remaining = context.time_remaining()
    cancelled = cancelled or context.cancelled()
    if remaining is not None and (remaining <= 0 or (cancelled and remaining <= DEADLINE_SLACK_S)):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED if cancelled else None

