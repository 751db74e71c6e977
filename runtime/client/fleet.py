"""One open ``Fleet`` RPC: many sessions per message (made by ``Client.fleet`` / ``AsyncClient.fleet``).

::

    with client.fleet("sunspots") as fleet:
        r = fleet.push(["pump-1", "pump-2", "pump-3"], [[41.0], [7.5], [12.0]])   # [N, F]: one sample each
        r.y                      # [3, 1, O] raw-unit predictions (NaN rows for failed entries)
        r.errors                 # {row: EddyError} for the sessions that failed (their state unchanged)

Each push is one message carrying every session's samples (``[N, k, F]``,
``[N, F]`` or, for one feature, ``[N]``) and one answer; ``pipeline``
keeps several messages in flight (a replay, or a gateway that should not wait
for each round trip) and yields their results in order. The ids are sent only
when they differ from the previous push's (the server keeps the roster), so a
gateway stepping the same sessions every tick pays for them once. A session
the fleet has not stepped yet is created (``resume=False``: it must not exist)
or resumed (``resume=True``: it must exist), as with ``client.stream``; the
fleet then holds it until it is closed, and a Stream, an OIP sequence or a
later fleet can resume it afterwards. A refused message raises the matching
:class:`~eddy.runtime.core.errors.EddyError` and changes nothing.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import grpc
import grpc.aio
import numpy as np

from eddy.v1 import inference_pb2 as pb

from ..core.errors import EddyError, FailedPrecondition, InvalidInput
from ..core.samples import as_fleet_samples
from ..grpc.status import error_from_status
from ..grpc.tensors import Encoding, array_to_tensor, decode_float32, tensor_to_bounds
from ._wire import rpc_error

__all__ = ["AsyncRemoteFleet", "FleetResult", "RemoteFleet"]

_END = object()  # request-queue sentinel: half-close the stream
T = TypeVar("T")


@dataclass(frozen=True)
class FleetResult:
    """The answer to one fleet push."""

    y: np.ndarray  # [N, k, O] float32 raw-unit predictions; NaN rows for failed entries
    offsets: np.ndarray  # [N] int64: each session's position before this push
    errors: dict[int, EddyError]  # row -> why that session failed (its state unchanged), ascending rows
    lower: dict[float, np.ndarray] = field(default_factory=dict)  # level -> [N, k, O] (fleets opened with intervals)
    upper: dict[float, np.ndarray] = field(default_factory=dict)  # level -> [N, k, O]

    @property
    def ok(self) -> np.ndarray:
        """``[N]`` bool: the sessions that were answered."""
        mask = np.ones(len(self.offsets), np.bool_)
        mask[list(self.errors)] = False
        return mask


class _FleetCodec:
    """What the sync and asyncio fleets share: the open message, requests, and reading answers."""

    def __init__(self, encoding: Encoding) -> None:
        self.encoding: Encoding = encoding
        self.model, self.version = "", 0
        self.features: list[str] = []
        self.targets: list[str] = []
        self.interval_levels: tuple[float, ...] = ()  # the model's calibrated levels
        self._ids: list[str] | None = None  # the server's roster after the messages sent so far (None: send ids)

    @property
    def n_features(self) -> int:
        return len(self.features)

    def _opened(self, response: pb.FleetResponse) -> None:
        o = response.opened
        self.model, self.version = o.model, o.version
        self.features, self.targets = list(o.features), list(o.targets)
        self.interval_levels = tuple(o.interval_levels)

    def _request(self, session_ids: Sequence[str], samples: Any,
                 resume: bool) -> tuple[pb.FleetRequest, list[str], int]:
        """The ``samples`` request, its ids (a copy) and k; the ids travel only when the roster changed."""
        if isinstance(session_ids, str):
            raise InvalidInput("session_ids must be a sequence of ids, not one string")
        ids = list(session_ids)  # a copy: the caller may change theirs
        x = as_fleet_samples(samples, len(ids), self.n_features)  # [N, k, F]
        same = ids == self._ids
        self._ids = ids  # the server's roster once it has taken this message
        request = pb.FleetRequest(samples=pb.FleetSamples(session_ids=() if same else ids,
                                                          samples=array_to_tensor(x, self.encoding), resume=resume))
        return request, ids, x.shape[1]

    def _result(self, response: pb.FleetResponse, ids: list[str], k: int) -> FleetResult:
        n = len(ids)
        kind = response.WhichOneof("kind")
        if kind == "error":  # refused as a whole: the server forgot the roster, the next message names it again
            self._ids = None
            raise error_from_status(response.error.code, response.error.message)
        if kind != "predictions":
            raise _ProtocolError(f"protocol error: expected `predictions`, got `{kind}`")
        p = response.predictions
        try:
            y, _ = decode_float32(list(p.outputs.shape), p.outputs.values, p.outputs.raw, len(self.targets),
                                  lead=("N", "k"), what="predictions", finite=False)  # failed rows are NaN
        except InvalidInput as e:
            raise _ProtocolError(f"protocol error: malformed predictions from the server: {e.message}") from None
        if y.shape[:2] != (n, k) or len(p.offsets) != 8 * n:
            raise _ProtocolError(f"protocol error: {n} session(s) x {k} sample(s) sent, predictions shaped "
                                 f"{list(y.shape)} with {len(p.offsets) // 8} offset(s) received")
        errors = {e.index: error_from_status(e.code, e.message) for e in p.errors}
        try:
            lower, upper = tensor_to_bounds(p.intervals, y.shape)
        except InvalidInput as e:
            raise _ProtocolError(f"protocol error: malformed intervals from the server: {e.message}") from None
        return FleetResult(y, np.frombuffer(p.offsets, "<u8").astype(np.int64), errors, lower, upper)


class _ProtocolError(EddyError):
    """The server's answer does not fit the request (the fleet is then cancelled)."""


class RemoteFleet(_FleetCodec):
    """One open ``Fleet`` RPC, driven synchronously; one push at a time (not thread-safe)."""

    def __init__(self, call_factory: Any, request: pb.FleetOpen, *, encoding: Encoding = "raw") -> None:
        super().__init__(encoding)
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._requests.put(pb.FleetRequest(open=request))
        self._call = call_factory(self._request_iter())
        self._responses: Iterator[pb.FleetResponse] = self._call
        response = self._next()
        if response.WhichOneof("kind") != "opened":
            self._fail(f"protocol error: expected `opened`, got `{response.WhichOneof('kind')}`")
        self._opened(response)

    @property
    def closed(self) -> bool:
        """True once the RPC is over (closed, cancelled, or ended by the server)."""
        return self._closed

    def push(self, session_ids: Sequence[str], samples: Any, *, resume: bool = False) -> FleetResult:
        """Step the sessions ``session_ids`` by raw ``samples`` (``[N, k, F]``, ``[N, F]``, or ``[N]`` for F = 1).

        ``resume``: for sessions this fleet has not stepped yet, True
        requires them to exist, False requires them not to (see the module
        docstring). Returns every session's predictions and the entries that
        failed; raises for a message refused as a whole.
        """
        with self._lock:
            if self._closed:
                raise FailedPrecondition("fleet is closed")
            request, ids, k = self._request(session_ids, samples, resume)
            self._requests.put(request)
            try:
                return self._result(self._next(), ids, k)
            except _ProtocolError as e:
                self._fail(e.message)

    def pipeline(self, messages: Iterable[tuple[Sequence[str], Any]], *, resume: bool = False,
                 window: int = 4) -> Iterator[FleetResult]:
        """Push ``(session_ids, samples)`` messages with up to ``window`` in flight; their results, in order.

        The server answers the messages one after another as they arrive,
        so it never waits for a round trip (replaying a recording, say). A
        message refused as a whole raises its error and cancels the fleet
        (answers still in flight are lost; the sessions stay resumable where
        the server left them).
        """
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        with self._lock:
            if self._closed:
                raise FailedPrecondition("fleet is closed")
            pending: deque[tuple[list[str], int]] = deque()
            todo = iter(messages)
            try:
                while True:
                    while len(pending) < window and (m := next(todo, None)) is not None:
                        request, ids, k = self._request(m[0], m[1], resume)
                        self._requests.put(request)
                        pending.append((ids, k))
                    if not pending:
                        return
                    ids, k = pending.popleft()
                    yield self._result(self._next(), ids, k)
            except BaseException:
                if pending:  # answers in flight would be read by the next push: end the fleet
                    self.close(cancel=True)
                raise

    def close(self, cancel: bool = False) -> None:
        """Half-close and wait until the server ends the RPC (its sessions stay resumable), or cancel. Idempotent."""
        if self._closed:
            return
        self._ended()
        if cancel:
            self._call.cancel()
            return
        try:
            for _ in self._responses:  # a well-behaved server sends nothing more
                pass
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                raise rpc_error(e) from None

    def __enter__(self) -> RemoteFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)

    def __repr__(self) -> str:
        return f"<RemoteFleet {self.model}/{self.version}>"

    # -- internals ----------------------------------------------------------
    def _request_iter(self) -> Iterator[pb.FleetRequest]:
        while (item := self._requests.get()) is not _END:
            yield item

    def _next(self) -> pb.FleetResponse:
        try:
            return next(self._responses)
        except StopIteration:
            self._ended()
            raise EddyError("the server ended the fleet without answering") from None
        except grpc.RpcError as e:
            self._ended()
            raise rpc_error(e) from None

    def _ended(self) -> None:
        if not self._closed:
            self._closed = True
            self._requests.put(_END)

    def _fail(self, message: str) -> NoReturn:
        self.close(cancel=True)
        raise EddyError(message)


class AsyncRemoteFleet(_FleetCodec):
    """One open ``Fleet`` RPC on grpc.aio; one push in flight at a time (await each)."""

    def __init__(self, call: grpc.aio.StreamStreamCall, encoding: Encoding) -> None:
        super().__init__(encoding)
        self._call = call
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the RPC is over (closed, cancelled, or ended by the server)."""
        return self._closed

    async def push(self, session_ids: Sequence[str], samples: Any, *, resume: bool = False) -> FleetResult:
        """As :meth:`RemoteFleet.push`, awaited."""
        if self._closed:
            raise FailedPrecondition("fleet is closed")
        request, ids, k = self._request(session_ids, samples, resume)
        try:
            return self._result(await self._ask(request), ids, k)
        except _ProtocolError as e:
            await self.close(cancel=True)
            raise EddyError(e.message) from None

    async def pipeline(self, messages: Iterable[tuple[Sequence[str], Any]] | AsyncIterable[tuple[Sequence[str], Any]],
                       *, resume: bool = False, window: int = 4) -> AsyncIterator[FleetResult]:
        """As :meth:`RemoteFleet.pipeline`: ``async for r in fleet.pipeline(messages)``; ``messages`` may be async."""
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if self._closed:
            raise FailedPrecondition("fleet is closed")
        todo = aiter(messages) if isinstance(messages, AsyncIterable) else _aiter(messages)
        pending: deque[tuple[list[str], int]] = deque()
        more = True
        try:
            while True:
                while more and len(pending) < window:
                    try:
                        m = await anext(todo)
                    except StopAsyncIteration:
                        more = False
                        break
                    request, ids, k = self._request(m[0], m[1], resume)
                    await self._write(request)
                    pending.append((ids, k))
                if not pending:
                    return
                ids, k = pending.popleft()
                yield self._result(await self._read(), ids, k)
        except BaseException:
            if pending:  # answers in flight would be read by the next push: end the fleet
                await self.close(cancel=True)
            raise

    async def close(self, cancel: bool = False) -> None:
        """Half-close and wait until the server ends the RPC (or cancel it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if cancel:
            self._call.cancel()
            return
        try:
            await self._call.done_writing()
            while await self._call.read() is not grpc.aio.EOF:  # a well-behaved server sends nothing more
                pass
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                raise rpc_error(e) from None

    def __repr__(self) -> str:
        return f"<AsyncRemoteFleet {self.model}/{self.version}>"

    async def _open(self, request: pb.FleetOpen) -> AsyncRemoteFleet:
        response = await self._ask(pb.FleetRequest(open=request))
        if response.WhichOneof("kind") != "opened":
            await self.close(cancel=True)
            raise EddyError(f"protocol error: expected `opened`, got `{response.WhichOneof('kind')}`")
        self._opened(response)
        return self

    async def _ask(self, request: pb.FleetRequest) -> pb.FleetResponse:
        await self._write(request)
        return await self._read()

    async def _write(self, request: pb.FleetRequest) -> None:
        try:
            await self._call.write(request)
        except grpc.RpcError as e:
            self._closed = True
            raise rpc_error(e) from None
        except grpc.aio.UsageError:  # the RPC already ended (write after the server's status): read says why
            pass

    async def _read(self) -> pb.FleetResponse:
        try:
            response = await self._call.read()
        except grpc.RpcError as e:
            self._closed = True
            raise rpc_error(e) from None
        if response is grpc.aio.EOF:
            self._closed = True
            code = await self._call.code()
            if code != grpc.StatusCode.OK:
                raise error_from_status(code, await self._call.details())
            raise EddyError("the server ended the fleet without answering")
        return response


async def _aiter(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item
