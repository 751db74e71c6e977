"""One streaming RPC's life, the same for every protocol: admission, idle, cancellation, end of input, final status.

Each streaming RPC on the port (eddy.v1 ``Stream``, the Open Inference
Protocol's ``ModelStreamInfer``) is a thin translator inside one
:class:`StreamCall`, written in grpc.aio's reader/writer style (the handler
is a coroutine that awaits :meth:`StreamCall.write`, not an async
generator)::

    async def Stream(self, request_iterator, context) -> None:
        async with StreamCall(self.gate, "Stream", context, TENANT.get(), fields=handler.log_fields) as call:
            call.closing(handler.release)         # runs at the end, whatever happened
            async for request in request_iterator:
                call.received()                   # a message arrived: busy, not idle
                response = await handler.handle(request)   # an EddyError here ends the RPC with its status
                call.answered(model, "OK", seconds)        # metrics; idle clock runs again
                await call.write(response)
            await call.end_of_input()             # a half-close (OK) or a peer that vanished (CANCELLED)

The call owns, once for every protocol:

- **admission**: the server's one :class:`StreamGate` (``--max-streams``,
  ``--max-streams-per-tenant``, both protocols together): RESOURCE_EXHAUSTED
  before anything is read;
- **idle**: ``--stream-idle-timeout`` ends a stream that sent nothing for
  that long while nothing of it was being computed (by default: between
  :meth:`StreamCall.received` and :meth:`StreamCall.answered`; concurrent
  protocols say what busy means with :meth:`StreamCall.busy_while`): the
  stream ends with DEADLINE_EXCEEDED;
- **ending from outside** (:meth:`StreamCall.stop`, used by the idle timeout;
  :meth:`StreamGate.stop_where` for e.g. a revoked token): the handler's task
  is cancelled wherever it waits, the final status is handed to gRPC at once
  (queued behind answers the client has not read yet, so a slow reader gets
  them and then the status; nothing waits for a client that never reads)
  and the stream's slot, session and queues are freed;
- **end of input**: :meth:`StreamCall.end_of_input` tells a half-close (OK)
  from a killed peer (CANCELLED) by grpc's queue order, not by timing;
- **final status**: an :class:`~eddy.runtime.core.errors.EddyError` raised in
  the block ends the RPC with its status and message, anything else with
  INTERNAL (traceback in the log), a cancellation by the client with
  CANCELLED (or DEADLINE_EXCEEDED when the client's deadline passed);
  :meth:`StreamCall.fail` ends it with a chosen status. The status is counted
  in ``eddy_rpcs_total{method, code}``, the stream in ``eddy_open_streams``;
- **clean-up**: callbacks given to :meth:`StreamCall.closing` run at the end
  whatever happened (release the session, cancel running requests);
- **log lines**: ``event=stream_open`` (when the protocol calls
  :meth:`StreamCall.opened`) and ``event=stream_close`` on the
  ``eddy.streams`` logger, ``key=value`` pairs, both naming the ``tenant=``
  (``-`` without tokens), the close line carrying the protocol's
  ``fields()`` and ``status=`` (the true end, as counted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, NamedTuple, NoReturn

import grpc

from ..core.errors import EddyError
from ..serving.config import ServeConfig
from ..serving.metrics import Metrics
from .limits import IdleWatch, StreamLimits
from .security import CREDENTIAL
from .status import status_code, to_status
from .unary import ended_early

__all__ = ["Held", "StreamCall", "StreamGate", "kv", "settle_end_of_input"]

stream_log = logging.getLogger("eddy.streams")

_SENDING: set[asyncio.Task[None]] = set()  # final statuses handed to gRPC, until gRPC is done with them
# How long a call ended from outside waits for its final status to leave before it lets go (its slot, session and
# queues): at once when nothing is queued before it; never, for a client that stopped reading an answer being
# written, whose status stays queued in gRPC behind that answer.
FINAL_STATUS_WAIT_S = 1.0


class Held(NamedTuple):
    """What one stream holds in eddy: requests received and answers not yet handed to gRPC."""

    messages: int = 0  # requests running, and answers waiting to be sent
    bytes: int = 0  # their size (requests by their wire size, answers by theirs)
    peak_bytes: int = 0  # the most bytes held at once so far
    full: bool = False  # reading has stopped until it holds less: the client's sends wait on flow control


class StreamGate:
    """Admission, idle timeout, accounting and the open calls of every streaming RPC on the port (one per server)."""

    def __init__(self, limits: StreamLimits, idle_timeout: float | None, metrics: Metrics | None = None) -> None:
        self.limits = limits
        self.idle_timeout = idle_timeout  # seconds a stream may send nothing (None: forever)
        self.metrics = metrics or Metrics()
        self._calls: set[StreamCall] = set()  # open calls, admitted and not yet ended

    @classmethod
    def from_config(cls, config: ServeConfig, metrics: Metrics | None = None) -> StreamGate:
        """The gate ``eddy serve`` builds: ``--max-streams``, ``--max-streams-per-tenant``, ``--stream-idle-timeout``."""
        return cls(StreamLimits(config.max_streams, config.max_streams_per_tenant), config.stream_idle_timeout,
                   metrics)

    @property
    def calls(self) -> list[StreamCall]:
        """The open streaming calls (a copy)."""
        return list(self._calls)

    def stop_where(self, condition: Callable[[StreamCall], bool], code: grpc.StatusCode, message: str) -> int:
        """End every open call for which ``condition(call)`` holds with ``code``; returns how many."""
        stopped = [c for c in self._calls if condition(c)]
        for call in stopped:
            call.stop(code, message)
        return len(stopped)

    async def _admit(self, call: StreamCall) -> None:
        try:
            self.limits.enter(call.tenant)
        except EddyError as e:  # counted and ended before anything is read
            self.metrics.rpc(call.method, e.code)
            await call.context.abort(status_code(e), e.message)
        self.metrics.stream_opened()
        self._calls.add(call)

    def _leave(self, call: StreamCall) -> None:
        self._calls.discard(call)
        self.limits.leave(call.tenant)
        self.metrics.stream_closed()
        self.metrics.rpc(call.method, call.code.name)


class StreamCall:
    """The lifecycle of one streaming RPC (``async with``); see the module docstring."""

    def __init__(self, gate: StreamGate, method: str, context: grpc.aio.ServicerContext, tenant: str = "", *,
                 fields: Callable[[], dict[str, object]] = dict) -> None:
        self.gate = gate
        self.method = method  # RPC name in metrics and logs, e.g. "Stream"
        self.context = context
        self.tenant = tenant  # the authenticated caller ("" without tokens)
        self.credential = CREDENTIAL.get()  # the digest of the caller's token ("" without tokens)
        self.code = grpc.StatusCode.OK  # the status the RPC ends with, as far as known
        self.writing = False  # a write is waiting for gRPC (e.g. for a client that does not read)
        self._fields = fields  # the close log line's fields, read when the stream ends
        self._closing: list[Callable[[], Awaitable[None] | None]] = []
        self._busy = False
        self._busy_fn: Callable[[], bool] = lambda: self._busy
        self._stop: tuple[grpc.StatusCode, str] | None = None  # why the call was ended from outside
        self._ending = False  # the block was left: clean-up runs, nothing may cancel it any more
        self._task: asyncio.Task[Any] | None = None
        self._idle: IdleWatch | None = None
        self._latency = gate.metrics.latency(method)  # looked up once per stream, not per message
        self._counters: dict[tuple[str, str], Callable[[], None]] = {}
        self._held: Callable[[], Held] = Held

    async def __aenter__(self) -> StreamCall:
        await self.gate._admit(self)  # aborts past --max-streams / --max-streams-per-tenant
        try:
            # The headers now, not with the first answer: a final status sent while that answer's write was
            # interrupted would send them again, which gRPC refuses (TOO_MANY_OPERATIONS) and the status is lost.
            await self.context.send_initial_metadata(())
        except BaseException:
            self.code = ended_early(self.context, cancelled=True) or grpc.StatusCode.CANCELLED
            self.gate._leave(self)
            raise
        self._task = asyncio.current_task()
        idle = self._idle = IdleWatch(self.gate.idle_timeout, self._idle_for_too_long, lambda: self._busy_fn())
        self._loop_time = idle.loop_time
        return self

    # -- per message ----------------------------------------------------------
    def received(self) -> None:
        """A message arrived: the stream is busy (not idle) until :meth:`answered`."""
        self._idle.last = self._loop_time()  # type: ignore[union-attr]
        self._busy = True

    def answered(self, model: str | None, outcome: str, seconds: float) -> None:
        """One message answered in ``seconds`` with ``outcome`` ("OK" or the in-band error's status name).

        ``model`` None: not counted per model (e.g. the message that opened the stream).
        """
        self._busy = False
        self._latency(seconds)
        if model is not None:
            counter = self._counters.get((model, outcome))
            if counter is None:
                counter = self._counters[model, outcome] = self.gate.metrics.stream_messages(model, outcome)
            counter()

    async def write(self, message: object) -> None:
        """Send one message (waits while the client does not read: gRPC's flow control)."""
        self.writing = True
        await self.context.write(message)
        self.writing = False

    def holding(self, held: Callable[[], Held]) -> None:
        """Say what the stream holds (:meth:`held`); by default nothing beyond the message being answered."""
        self._held = held

    def held(self) -> Held:
        """What the stream holds now (e.g. an OIP stream's unsent answers)."""
        return self._held()

    def busy_while(self, busy: Callable[[], bool]) -> None:
        """Judge idleness by ``busy()`` instead of :meth:`received`/:meth:`answered` (concurrent protocols)."""
        self._busy_fn = busy

    # -- the end ----------------------------------------------------------------
    def closing(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Run ``callback()`` (awaited if it returns an awaitable) when the stream ends, last added first."""
        self._closing.append(callback)

    def opened(self, **fields: object) -> None:
        """Log the ``event=stream_open`` line: the tenant, then ``fields``."""
        stream_log.info("%s", kv("stream_open", tenant=self.tenant or "-", **fields))

    def stop(self, code: grpc.StatusCode, message: str) -> None:
        """End the call from outside its task with ``code`` and ``message`` (no-op once it is ending)."""
        if self._stop is None and not self._ending and self._task is not None:
            self._stop = (code, message)
            self._task.cancel()

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
        self._ending = True
        if self._idle is not None:
            self._idle.close()
        gone = False  # the call failed under us: the peer left (or the server is stopping)
        try:
            if exc is None or isinstance(exc, grpc.aio.AbortError):
                pass  # `code` already says why
            elif isinstance(exc, asyncio.CancelledError):
                if self._stop is not None:  # ended from outside (idle timeout, revoked token), not by the peer
                    await self._send_final(*self._stop)
                else:
                    self.code = ended_early(self.context, cancelled=True) or grpc.StatusCode.CANCELLED
            elif isinstance(exc, grpc.aio.BaseError):  # e.g. a write failed: the client cancelled while it waited
                self.code, gone = ended_early(self.context, cancelled=True) or grpc.StatusCode.CANCELLED, True
            elif isinstance(exc, Exception):  # an EddyError that ends the RPC, or a bug (INTERNAL)
                await self.fail(*to_status(exc, self.method))
        finally:
            await self._close()
        if gone:  # what gRPC makes of a call its peer cancelled: no status to send, nothing to log
            raise asyncio.CancelledError from exc

    def _idle_for_too_long(self) -> None:
        self.stop(grpc.StatusCode.DEADLINE_EXCEEDED, self._idle.message)  # type: ignore[union-attr]

    async def _send_final(self, code: grpc.StatusCode, message: str) -> None:
        """Hand the final status to gRPC without waiting for the client to read what is queued before it.

        ``context.abort`` returns only once the status has left, which is never
        for a client that stopped reading while an answer was being written:
        it runs in a task of its own, whose first step queues the status in
        gRPC (the answers before it are delivered first).
        """
        self.code = code
        task = asyncio.get_running_loop().create_task(_abort(self.context, code, message))
        _SENDING.add(task)
        task.add_done_callback(_SENDING.discard)
        await asyncio.wait((task,), timeout=FINAL_STATUS_WAIT_S)

    async def _close(self) -> None:
        try:
            for callback in reversed(self._closing):
                result = callback()
                if result is not None:
                    await result
        finally:
            self.gate._leave(self)
            stream_log.info("%s", kv("stream_close", tenant=self.tenant or "-", **self._fields(),
                                     status=self.code.name))


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    try:
        await context.abort(code, message)
    except BaseException:  # AbortError once sent; anything else: the call is gone, nothing left to tell
        pass


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
