"""An asyncio client for ``eddy serve`` on grpc.aio: :class:`AsyncClient` and :class:`AsyncRemoteStream`.

::

    from eddy.runtime.client import AsyncClient
    async with AsyncClient("127.0.0.1:50051") as client:
        async with client.stream("sunspots") as stream:
            y = await stream.push(42.0)     # [1, O] raw-unit predictions

Same rules, errors and wire format as the synchronous
:class:`~eddy.runtime.client.Client`, without its threads: each push is one
write and one read on the event loop's own call (the sync streaming API hands
every message across threads and costs about twice the client CPU).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import grpc
import grpc.aio
import numpy as np

from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc

from ..core.errors import EddyError, FailedPrecondition, InvalidInput
from ..core.samples import as_samples
from ..grpc.headers import RESPONSE_LIMIT_HEADER, session_header
from ..grpc.status import error_from_status
from ..grpc.tensors import Encoding, array_to_tensor, tensor_to_samples, tensor_to_sequences
from ..serving.config import ServeConfig
from ._wire import ResumeRetry, channel_setup, forecast_of, rpc_error, status_error, version_field
from .fleet import AsyncRemoteFleet

__all__ = ["AsyncClient", "AsyncRemoteStream"]


class AsyncClient:
    """An asyncio connection to an eddy server (grpc.aio, no threads of its own): `Client`'s methods, awaited.

    Same arguments and errors as `Client`. Create it inside the event loop that will use it (grpc.aio channels
    belong to one loop); `async with AsyncClient(...) as client:` closes it. `stream(...)` can be awaited or
    used as `async with client.stream(...) as s:`.
    """

    def __init__(self, target: str, *, timeout: float | None = 30.0,
                 max_message_bytes: int = ServeConfig.max_message_bytes, tls: bool = False,
                 tls_ca: str | Path | None = None, tls_cert: str | Path | None = None,
                 tls_key: str | Path | None = None, token: str | None = None) -> None:
        self.target, self.timeout, self.max_message_bytes = target, timeout, max_message_bytes
        credentials, options, self._metadata = channel_setup(max_message_bytes, tls, tls_ca, tls_cert, tls_key, token)
        self._limit = (*self._metadata, (RESPONSE_LIMIT_HEADER, str(max_message_bytes)))
        self._channel = (grpc.aio.secure_channel(target, credentials, options) if credentials is not None
                         else grpc.aio.insecure_channel(target, options=options))
        self._stub = pb_grpc.InferenceStub(self._channel)

    async def list_models(self) -> dict[str, list[int]]:
        """``{name: [versions, ascending]}``."""
        try:
            r = await self._stub.ListModels(pb.ListModelsRequest(), timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise rpc_error(e) from None
        return {m.name: list(m.versions) for m in r.models}

    def stream(self, name: str, version: str | int | None = None, *, encoding: Encoding = "raw",
               timeout: float | None = None, session_id: str | None = None, state: bytes | None = None,
               resume: bool = False, intervals: Sequence[float] = ()) -> _Opening:
        """Open a stream on ``name``: ``async with client.stream(...) as s`` or ``s = await client.stream(...)``.

        Arguments, and the retries of a refused resume, as :meth:`Client.stream
        <eddy.runtime.client.Client.stream>`.
        """
        open_ = pb.OpenStream(model=name, version=version_field(version), session_id=session_id or uuid.uuid4().hex,
                              state=state or b"", resume=resume, intervals=list(intervals))
        metadata = (*self._metadata, session_header(open_.session_id),
                    (RESPONSE_LIMIT_HEADER, str(self.max_message_bytes)))
        return _Opening(lambda: AsyncRemoteStream(self._stub.Stream(timeout=timeout, metadata=metadata), encoding),
                        open_)

    def fleet(self, name: str, version: str | int | None = None, *, encoding: Encoding = "raw",
              timeout: float | None = None, intervals: Sequence[float] = ()) -> _Opening:
        """Open a fleet on ``name``: ``async with client.fleet(...) as f`` or ``f = await client.fleet(...)``.

        Arguments as :meth:`Client.fleet <eddy.runtime.client.Client.fleet>`; ``await f.push(ids, x)``.
        """
        metadata = (*self._metadata, (RESPONSE_LIMIT_HEADER, str(self.max_message_bytes)))
        return _Opening(lambda: AsyncRemoteFleet(self._stub.Fleet(timeout=timeout, metadata=metadata), encoding),
                        pb.FleetOpen(model=name, version=version_field(version), intervals=list(intervals)))

    async def predict(self, name: str, x: Any, version: str | int | None = None, *,
                      states: list[bytes] | None = None, encoding: Encoding = "raw") -> tuple[np.ndarray, list[bytes]]:
        """Whole sequences ``x[B, T, F]`` -> (``y[B, T, O]``, B final-state blobs)."""
        request = pb.PredictRequest(model=name, version=version_field(version),
                                    inputs=array_to_tensor(np.asarray(x, np.float32), encoding), states=states or [])
        try:
            r = await self._stub.Predict(request, timeout=self.timeout, metadata=self._limit)
        except grpc.RpcError as e:
            raise rpc_error(e) from None
        shape = list(r.outputs.shape)
        try:
            y, _ = tensor_to_sequences(r.outputs, shape[-1] if shape else 0)
        except InvalidInput as e:
            raise EddyError(f"protocol error: malformed predictions from the server: {e.message}") from None
        return y, list(r.states)

    async def close(self) -> None:
        """Close the channel (cancels any stream still open)."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Opening:
    """What :meth:`AsyncClient.stream` and :meth:`AsyncClient.fleet` return: awaitable, or an async context manager
    closing the stream."""

    def __init__(self, call: Callable[[], Any], request: pb.OpenStream | pb.FleetOpen) -> None:
        self._call, self._request = call, request  # call: a new AsyncRemoteStream / AsyncRemoteFleet, not opened
        self._stream: Any = None

    def __await__(self) -> Generator[Any, None, Any]:
        return self._open().__await__()

    async def __aenter__(self) -> Any:
        return await self._open()

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            await self._stream.close(cancel=exc[0] is not None)

    async def _open(self) -> Any:
        retry, resume = ResumeRetry(), isinstance(self._request, pb.OpenStream) and self._request.resume
        while True:
            try:
                self._stream = await self._call()._open(self._request)
                return self._stream
            except EddyError as e:
                pause = retry.pause(e) if resume else None
                if pause is None:
                    raise
                await asyncio.sleep(pause)


class AsyncRemoteStream:
    """One open `Stream` RPC on grpc.aio: `RemoteStream`'s attributes and methods, awaited.

    One message in flight at a time (await each `push`).
    """

    def __init__(self, call: grpc.aio.StreamStreamCall, encoding: Encoding) -> None:
        self._call, self.encoding = call, encoding
        self._closed = False
        self.model, self.version, self.session_id = "", 0, ""
        self.features: list[str] = []
        self.targets: list[str] = []
        self.resumed, self.position = False, 0
        self.intervals: tuple[float, ...] = ()  # levels every push is answered with
        self.interval_levels: tuple[float, ...] = ()  # the model's calibrated levels

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def closed(self) -> bool:
        """True once the RPC is over (closed, cancelled, or ended by the server)."""
        return self._closed

    async def push(self, samples: Any) -> Any:
        """Send raw samples (`[n, F]`, `[F]`, or a number when F = 1); returns raw `float32 [n, O]`, or a
        `Forecast` for a stream opened with `intervals`.

        Same checks, answers and errors as `RemoteStream.push`.
        """
        if self._closed:
            raise FailedPrecondition("stream is closed")
        x = as_samples(samples, len(self.features))  # [n, F] float32
        out = (await self._ask(pb.StreamRequest(samples=array_to_tensor(x, self.encoding)), "predictions")).predictions
        if out.offset != self.position:
            await self._fail(f"protocol error: server answered offset {out.offset}, expected {self.position}")
        try:
            y, _ = tensor_to_samples(out.outputs, len(self.targets))  # [n, O]
        except InvalidInput as e:
            await self._fail(f"protocol error: malformed predictions from the server: {e.message}")
        if len(y) != len(x):
            await self._fail(f"protocol error: {len(x)} sample(s) sent, {len(y)} prediction(s) received")
        forecast = None
        if self.intervals:
            try:
                forecast = forecast_of(out, y, self.intervals)
            except InvalidInput as e:
                await self._fail(e.message)
        self.position += len(x)
        return forecast if forecast is not None else y

    async def reset(self) -> None:
        """Back to zero state and position 0 on the server (same session id)."""
        await self._control(pb.Control.RESET)

    async def export_state(self) -> bytes:
        """The session's state as portable bytes."""
        return (await self._control(pb.Control.EXPORT_STATE)).state

    async def close_session(self) -> None:
        """Delete the session on the server; the server then ends the stream."""
        await self._control(pb.Control.CLOSE)
        await self.close()

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
        return f"<AsyncRemoteStream {self.model}/{self.version} at {self.position}>"

    # -- internals ----------------------------------------------------------
    async def _open(self, request: pb.OpenStream) -> AsyncRemoteStream:
        o = (await self._ask(pb.StreamRequest(open=request), "opened")).opened
        self.model, self.version, self.session_id = o.model, o.version, o.session_id
        self.features, self.targets = list(o.features), list(o.targets)
        self.resumed, self.position = o.resumed, o.position
        self.intervals, self.interval_levels = tuple(request.intervals), tuple(o.interval_levels)
        return self

    async def _control(self, action: int) -> pb.ControlDone:
        if self._closed:
            raise FailedPrecondition("stream is closed")
        done = (await self._ask(pb.StreamRequest(control=pb.Control(action=action)), "control_done")).control_done
        self.position = done.position
        return done

    async def _ask(self, request: pb.StreamRequest, expect: str) -> pb.StreamResponse:
        try:
            await self._call.write(request)
            response = await self._call.read()
        except grpc.RpcError as e:
            self._closed = True
            raise rpc_error(e) from None
        except (grpc.aio.UsageError, asyncio.InvalidStateError):  # the RPC already ended: its status says why
            self._closed = True
            response = grpc.aio.EOF
        if response is grpc.aio.EOF:
            self._closed = True
            code = await self._call.code()
            if code != grpc.StatusCode.OK:
                raise status_error(code, await self._call.details())
            raise EddyError("the server ended the stream without answering")
        kind = response.WhichOneof("kind")
        if kind == "error":
            raise error_from_status(response.error.code, response.error.message)
        if kind != expect:
            await self._fail(f"protocol error: expected `{expect}`, got `{kind}`")
        return response

    async def _fail(self, message: str) -> NoReturn:
        await self.close(cancel=True)
        raise EddyError(message)
