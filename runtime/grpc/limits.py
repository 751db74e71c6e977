"""Per-stream guards: how many streams may be open (overall, per tenant) and how long one may sit idle.

:class:`StreamLimits` counts open streaming RPCs; :meth:`StreamLimits.enter`
refuses one past ``max_streams`` or past ``max_streams_per_tenant`` with
RESOURCE_EXHAUSTED. :class:`IdleWatch` calls back once a stream has sent
nothing for ``timeout`` seconds while nothing of it was being answered. The
server's :class:`~eddy.runtime.grpc.lifecycle.StreamGate` uses both for every
streaming RPC on the port (both protocols count against the same limits),
and the stream's :class:`~eddy.runtime.grpc.lifecycle.StreamCall` ends an
idle stream with DEADLINE_EXCEEDED (its session stays resumable).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from ..core.errors import ResourceExhausted
from ..serving.config import TENANT_STREAM_SHARE

__all__ = ["IdleWatch", "StreamLimits"]


class StreamLimits:
    """Open-stream counts with an overall and a per-tenant cap.

    ``max_per_tenant`` None: each token's tenant may hold ``max_streams // TENANT_STREAM_SHARE`` (so no tenant takes
    every slot); the unauthenticated tenant ``""`` (tokens off: every caller) only ``max_streams``.
    """

    def __init__(self, max_streams: int, max_per_tenant: int | None = None) -> None:
        self.max_streams = max_streams
        self.max_per_tenant = max_per_tenant
        self._share = max(1, max_streams // TENANT_STREAM_SHARE)  # the default cap of a token's tenant
        self.open = 0
        self._by_tenant: Counter[str] = Counter()

    def enter(self, tenant: str) -> None:
        """Count one more stream of ``tenant``, or raise :class:`ResourceExhausted` (nothing counted)."""
        if self.open >= self.max_streams:
            raise ResourceExhausted(f"stream limit reached: {self.open} open streams (--max-streams "
                                    f"{self.max_streams}); retry later")
        cap = self.max_per_tenant if self.max_per_tenant is not None else self._share if tenant else None
        if cap is not None and self._by_tenant[tenant] >= cap:
            why = "" if self.max_per_tenant is not None else f", by default 1/{TENANT_STREAM_SHARE} of --max-streams"
            raise ResourceExhausted(f"stream limit reached for this tenant: {self._by_tenant[tenant]} open "
                                    f"(--max-streams-per-tenant {cap}{why}); close one first")
        self.open += 1
        self._by_tenant[tenant] += 1

    def leave(self, tenant: str) -> None:
        """The stream counted by :meth:`enter` ended."""
        self.open -= 1
        self._by_tenant[tenant] -= 1
        if self._by_tenant[tenant] <= 0:
            del self._by_tenant[tenant]


class IdleWatch:
    """Calls ``on_idle()`` once no message arrived for ``timeout`` seconds while ``busy()`` was false.

    One timer per stream, re-armed only when it fires: the per-message cost is
    the store of :attr:`last` (and whatever ``busy`` reads).
    """

    def __init__(self, timeout: float | None, on_idle: Callable[[], None], busy: Callable[[], bool]) -> None:
        self.timeout = timeout  # seconds; None: never idle
        self.busy = busy  # True while a message of the stream is being answered: not idle
        self._on_idle = on_idle
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()  # when the last message arrived
        self._timer = self._loop.call_later(timeout, self._check) if timeout else None

    def _check(self) -> None:
        timeout = self.timeout
        assert timeout is not None
        idle_for = self._loop.time() - self.last
        busy = self.busy()
        if busy or idle_for < timeout:
            self._timer = self._loop.call_later(timeout - (0 if busy else idle_for), self._check)
            return
        self._timer = None
        self._on_idle()

    def loop_time(self) -> float:
        return self._loop.time()

    @property
    def message(self) -> str:
        """What the caller of an idle stream is told."""
        return f"no message for {self.timeout:g}s (--stream-idle-timeout); the session stays resumable"

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
