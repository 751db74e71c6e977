"""Per-stream guards: how many streams may be open (overall, per tenant) and how long one may sit idle.

:class:`StreamLimits` counts open streaming RPCs; :meth:`StreamLimits.enter`
refuses one past ``max_streams`` or past ``max_streams_per_tenant`` with
RESOURCE_EXHAUSTED before anything is read. :class:`IdleWatch` ends a stream
that has sent nothing for ``timeout`` seconds while not being answered: one
timer per stream, re-armed only when it fires (the per-message cost is one
float store), which cancels the handler's task; the stream's lifecycle
(:mod:`~eddy.runtime.grpc.lifecycle`) then ends the RPC with
DEADLINE_EXCEEDED and the session stays resumable.

:class:`StreamGate` puts both together for every streaming RPC on the port:
the server builds one and hands it to the eddy.v1 ``Stream`` and the Open
Inference Protocol's ``ModelStreamInfer`` alike, so streams of both
protocols count against the same ``--max-streams`` and
``--max-streams-per-tenant``, idle the same way, and are recorded the same
way (``eddy_open_streams``, ``eddy_rpcs_total`` with the true close code).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import grpc

from ..core.errors import EddyError, ResourceExhausted
from ..serving.config import ServeConfig
from ..serving.metrics import Metrics
from .status import status_code

__all__ = ["IdleWatch", "StreamGate", "StreamLimits"]


class StreamLimits:
    """Open-stream counts with an overall and a per-tenant cap."""

    def __init__(self, max_streams: int, max_per_tenant: int | None = None) -> None:
        self.max_streams = max_streams
        self.max_per_tenant = max_per_tenant  # None: only the overall cap
        self.open = 0
        self._by_tenant: Counter[str] = Counter()

    def enter(self, tenant: str) -> None:
        """Count one more stream of ``tenant``, or raise :class:`ResourceExhausted` (nothing counted)."""
        if self.open >= self.max_streams:
            raise ResourceExhausted(f"stream limit reached: {self.open} open streams (--max-streams "
                                    f"{self.max_streams}); retry later")
        if self.max_per_tenant is not None and self._by_tenant[tenant] >= self.max_per_tenant:
            raise ResourceExhausted(f"stream limit reached for this tenant: {self._by_tenant[tenant]} open "
                                    f"(--max-streams-per-tenant {self.max_per_tenant}); close one first")
        self.open += 1
        self._by_tenant[tenant] += 1

    def leave(self, tenant: str) -> None:
        """The stream counted by :meth:`enter` ended."""
        self.open -= 1
        self._by_tenant[tenant] -= 1
        if self._by_tenant[tenant] <= 0:
            del self._by_tenant[tenant]


class IdleWatch:
    """Cancels ``task`` once no message arrived for ``timeout`` seconds while nothing was being answered."""

    def __init__(self, timeout: float | None, task: asyncio.Task[object] | None = None) -> None:
        self.timeout = timeout
        self.expired = False  # True once it cancelled the task
        self.busy = False  # a message is being answered: not idle
        self.busy_fn: Callable[[], bool] | None = None  # if set, judges busyness instead of `busy`
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()  # when the last message arrived
        self._task = task or asyncio.current_task()
        self._timer = self._loop.call_later(timeout, self._check) if timeout else None

    def _check(self) -> None:
        now = self._loop.time()
        idle_for = now - self.last
        busy = self.busy if self.busy_fn is None else self.busy_fn()
        if busy or idle_for < self.timeout:  # type: ignore[operator]
            self._timer = self._loop.call_later(self.timeout - (0 if busy else idle_for), self._check)  # type: ignore[operator]
            return
        self.expired = True
        self._timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def loop_time(self) -> float:
        return self._loop.time()

    @property
    def message(self) -> str:
        """What the caller of an expired stream is told."""
        return f"no message for {self.timeout:g}s (--stream-idle-timeout); the session stays resumable"

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class StreamGate:
    """Admission, idle timeout and accounting shared by every streaming RPC on the port (one per server)."""

    def __init__(self, limits: StreamLimits, idle_timeout: float | None, metrics: Metrics | None = None) -> None:
        self.limits = limits
        self.idle_timeout = idle_timeout  # seconds a stream may send nothing (None: forever)
        self.metrics = metrics or Metrics()

    @classmethod
    def from_config(cls, config: ServeConfig, metrics: Metrics | None = None) -> StreamGate:
        """The gate ``eddy serve`` builds: ``--max-streams``, ``--max-streams-per-tenant``, ``--stream-idle-timeout``."""
        return cls(StreamLimits(config.max_streams, config.max_streams_per_tenant), config.stream_idle_timeout,
                   metrics)

    async def enter(self, method: str, tenant: str, context: grpc.aio.ServicerContext) -> IdleWatch:
        """Admit one stream of ``tenant`` and watch the calling task for idleness.

        Past a limit the RPC is counted with RESOURCE_EXHAUSTED and ended with it
        (``context.abort`` raises) before anything is read.
        """
        try:
            self.limits.enter(tenant)
        except EddyError as e:
            self.metrics.rpc(method, e.code)
            await context.abort(status_code(e), e.message)
        self.metrics.stream_opened()
        return IdleWatch(self.idle_timeout)

    def leave(self, method: str, tenant: str, idle: IdleWatch, code: grpc.StatusCode) -> None:
        """The stream admitted by :meth:`enter` ended with ``code``: uncount it and record its status."""
        idle.close()
        self.limits.leave(tenant)
        self.metrics.stream_closed()
        self.metrics.rpc(method, code.name)
