"""One streaming RPC's life, the same for every protocol: admission, idle, cancellation, end of input, final status.

Each streaming RPC on the port (eddy.v1 ``Stream``, the Open Inference
Protocol's ``ModelStreamInfer``) is a thin translator inside one
:class:`StreamCall`::

    async with StreamCall(gate, "Stream", context, tenant, fields=handler.log_fields) as call:
        async for request in request_iterator:
            call.received()                     # a message arrived: the stream is not idle
            response = await handler.handle(request)
            call.answered(model, "OK", seconds)  # metrics; idle again
            yield response
        await call.end_of_input()               # a half-close, or a peer that vanished (then CANCELLED)

The call owns, once for every protocol:

- **admission**: the server's :class:`~eddy.runtime.grpc.limits.StreamGate`
  (``--max-streams``, ``--max-streams-per-tenant``): RESOURCE_EXHAUSTED before
  anything is read;
- **idle**: ``--stream-idle-timeout`` cancels a stream that sent nothing for
  that long while nothing of it was being computed; it ends with
  DEADLINE_EXCEEDED;
- **end of input**: :meth:`StreamCall.end_of_input` tells a half-close (OK)
  from a killed peer (CANCELLED) by grpc's queue order, not by timing;
- **final status**: an :class:`~eddy.runtime.core.errors.EddyError` raised in
  the block ends the RPC with its status and message, anything else with
  INTERNAL (traceback in the log), a cancellation with CANCELLED (or
  DEADLINE_EXCEEDED when the caller's deadline passed); :meth:`StreamCall.fail`
  ends it with a chosen status. The status is counted in
  ``eddy_rpcs_total{method, code}``;
- **clean-up**: callbacks given to :meth:`StreamCall.closing` run at the end
  whatever happened (e.g. release the session, cancel running requests),
  then the stream is uncounted;
- **log lines**: one ``event=stream_open`` (when the protocol calls
  :meth:`StreamCall.opened`) and one ``event=stream_close`` per stream on the
  ``eddy.streams`` logger, ``key=value`` pairs, the close line carrying the
  protocol's ``fields()`` and ``status=`` (the true end, as counted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import NoReturn

import grpc

from .limits import IdleWatch, StreamGate
from .status import to_status
from .unary import ended_early

__all__ = ["StreamCall", "kv", "settle_end_of_input"]

stream_log = logging.getLogger("eddy.streams")


class StreamCall:
    """The lifecycle of one streaming RPC (``async with``); see the module docstring."""

    def __init__(self, gate: StreamGate, method: str, context: grpc.aio.ServicerContext, tenant: str = "", *,
                 fields: Callable[[], dict[str, object]] = dict) -> None:
        self.gate = gate
        self.method = method  # RPC name in metrics and logs, e.g. "Stream"
        self.context = context
        self.tenant = tenant  # the authenticated caller ("" without tokens)
        self.code = grpc.StatusCode.OK  # the status the RPC ends with, as far as known
        self._fields = fields  # the close log line's fields, read when the stream ends
        self._closing: list[Callable[[], Awaitable[None] | None]] = []
        self._idle: IdleWatch | None = None
        self._latency = gate.metrics.latency(method)  # looked up once per stream, not per message
        self._counters: dict[tuple[str, str], Callable[[], None]] = {}

    async def __aenter__(self) -> StreamCall:
        self._idle = await self.gate.enter(self.method, self.tenant, self.context)  # aborts past --max-streams
        return self

    # -- per message ----------------------------------------------------------
    def received(self) -> None:
        """A message arrived: the stream is busy (not idle) until :meth:`answered`."""
        idle = self._idle
        idle.last, idle.busy = idle.loop_time(), True  # type: ignore[union-attr]

    def answered(self, model: str | None, outcome: str, seconds: float) -> None:
        """One message answered in ``seconds`` with ``outcome`` ("OK" or the in-band error's status name).

        ``model`` None: not counted per model (e.g. the message that opened the stream).
        """
        self._idle.busy = False  # type: ignore[union-attr]
        self._latency(seconds)
        if model is not None:
            counter = self._counters.get((model, outcome))
            if counter is None:
                counter = self._counters[model, outcome] = self.gate.metrics.stream_messages(model, outcome)
            counter()

    def busy_while(self, busy: Callable[[], bool]) -> None:
        """Judge idleness by ``busy()`` instead of :meth:`received`/:meth:`answered` (concurrent protocols)."""
        self._idle.busy_fn = busy  # type: ignore[union-attr]

    # -- the end ----------------------------------------------------------------
    def closing(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Run ``callback()`` (awaited if it returns an awaitable) when the stream ends, last added first."""
        self._closing.append(callback)

    def opened(self, **fields: object) -> None:
        """Log the ``event=stream_open`` line with ``fields``."""
        stream_log.info("%s", kv("stream_open", **fields))

    async def fail(self, code: grpc.StatusCode, message: str) -> NoReturn:
        """End the RPC now with ``code`` and ``message`` (raises grpc's AbortError, which ends the block)."""
        self.code = code
        await self.context.abort(code, message)
        raise AssertionError("unreachable")  # pragma: no cover  (abort raises)

    async def end_of_input(self) -> None:
        """The request iterator ended: raises CancelledError if the peer vanished (see :func:`settle_end_of_input`)."""
        await settle_end_of_input(self.context)
        self.code = ended_early(self.context) or self.code

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if exc is None or isinstance(exc, grpc.aio.AbortError):
                pass  # `code` already says why
            elif isinstance(exc, asyncio.CancelledError):
                idle = self._idle
                if idle is not None and idle.expired:  # ended by the idle timeout, not by the peer
                    await self.fail(grpc.StatusCode.DEADLINE_EXCEEDED, idle.message)
                self.code = ended_early(self.context) or grpc.StatusCode.CANCELLED
            elif isinstance(exc, Exception):  # an EddyError that ends the RPC, or a bug (INTERNAL)
                await self.fail(*to_status(exc, self.method))
        finally:
            await self._close()

    async def _close(self) -> None:
        try:
            for callback in reversed(self._closing):
                result = callback()
                if result is not None:
                    await result
        finally:
            if self._idle is not None:
                self.gate.leave(self.method, self.tenant, self._idle, self.code)
            stream_log.info("%s", kv("stream_close", **self._fields(), status=self.code.name))


def kv(event: str, **fields: object) -> str:
    """``event=... k=v ...``; values with spaces or quotes are quoted."""
    parts = [f"event={event}"]
    for k, v in fields.items():
        text = str(v)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{k}={text}")
    return " ".join(parts)


async def settle_end_of_input(context: grpc.aio.ServicerContext) -> None:
    """Call when a streaming RPC's request iterator ended: raises CancelledError if the peer vanished.

    grpc.aio ends the request iterator the same way when the client half-closes
    and when its connection is gone (a killed process: the kernel closes the
    socket cleanly), so the end of input alone would count a killed client OK.
    Only the second also completes the call's close-on-server operation as
    cancelled, upon which grpc cancels the handler task; that completion is
    queued in grpc's completion queue with (or just after) the end of input.
    One more read, issued now, completes behind it: by the time the read
    returns, a vanished peer's cancellation has been delivered (this await
    raises CancelledError) or there was none (a half-close; it costs one read,
    ~0.1 ms). No timing guess: it follows the queue's order (before, a fixed
    1 ms wait missed the cancellation whenever grpc's poller thread was late).
    """
    try:
        await context.read()  # EOF again at once for a half-closed call
    except grpc.aio.BaseError:  # the RPC already finished or the server stopped: nothing more to learn
        pass
