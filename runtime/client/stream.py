"""One open ``Stream`` RPC, driven synchronously: :class:`RemoteStream` (made by :meth:`Client.stream`)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import grpc

from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc

from ..core.errors import EddyError, FailedPrecondition, InvalidInput
from ..core.samples import as_samples
from ..grpc.headers import RESPONSE_LIMIT_HEADER, session_header
from ..grpc.status import error_from_status
from ..grpc.tensors import Encoding, array_to_tensor, tensor_to_samples
from ._wire import forecast_of, rpc_error, version_field

__all__ = ["RemoteStream"]

_END = object()  # request-queue sentinel: half-close the stream


class RemoteStream:
    """One open `Stream` RPC driving one session on the server. Made by `Client.stream`.

    `push` sends one message and waits for its answer, so calls are strictly in order; not thread-safe (one
    caller at a time, like a local `eddy.runtime.Stream`). `with client.stream(...) as s:` closes it; the
    session stays on the server, resumable, until it is closed or idle past the server's session TTL.

    Attributes:
        model: the model's name.
        version: the model version the session runs.
        features: input column names (F of them).
        targets: predicted column names (O of them).
        session_id: the session's id (to resume it later).
        resumed: the session existed already.
        position: samples the session has consumed (the next sample's index).
    """

    def __init__(self, stub: pb_grpc.InferenceStub, model: str, version: str | int | None = None,
                 *, encoding: Encoding = "raw", timeout: float | None = None, session_id: str | None = None,
                 state: bytes | None = None, resume: bool = False, max_response_bytes: int | None = None,
                 intervals: Sequence[float] = (),
                 metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.encoding: Encoding = encoding
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        open_ = pb.OpenStream(model=model, version=version_field(version), session_id=session_id or "",
                              state=state or b"", resume=resume, intervals=list(intervals))
        self.intervals: tuple[float, ...] = tuple(intervals)  # levels every push is answered with
        self._requests.put(pb.StreamRequest(open=open_))
        extra = [session_header(session_id)] if session_id else []
        if max_response_bytes:  # the server refuses, session unchanged, an answer we could not receive
            extra.append((RESPONSE_LIMIT_HEADER, str(max_response_bytes)))
        self._call = stub.Stream(self._request_iter(), timeout=timeout, metadata=[*metadata, *extra])
        self._responses: Iterator[pb.StreamResponse] = self._call
        opened = self._next("opened")
        self.model: str = opened.opened.model
        self.version: int = opened.opened.version
        self.features: list[str] = list(opened.opened.features)
        self.targets: list[str] = list(opened.opened.targets)
        self.session_id: str = opened.opened.session_id
        self.resumed: bool = opened.opened.resumed
        self.position: int = opened.opened.position  # the session's position (samples consumed)
        self.interval_levels: tuple[float, ...] = tuple(opened.opened.interval_levels)  # the model's calibrated ones

    def _request_iter(self) -> Iterator[pb.StreamRequest]:
        while (item := self._requests.get()) is not _END:
            yield item

    def _next(self, expect: str) -> pb.StreamResponse:
        try:
            response = next(self._responses)
        except StopIteration:
            self._ended()
            raise EddyError("the server ended the stream without answering") from None
        except grpc.RpcError as e:
            self._ended()
            raise rpc_error(e) from None
        kind = response.WhichOneof("kind")
        if kind == "error":
            raise error_from_status(response.error.code, response.error.message)
        if kind != expect:
            self._fail(f"protocol error: expected `{expect}`, got `{kind}`")
        return response

    def _ended(self) -> None:
        """The RPC is over: release the request iterator and refuse further pushes."""
        if not self._closed:
            self._closed = True
            self._requests.put(_END)

    def _fail(self, message: str) -> NoReturn:
        self.close(cancel=True)
        raise EddyError(message)

    @property
    def n_features(self) -> int:
        """F, the number of input columns."""
        return len(self.features)

    @property
    def closed(self) -> bool:
        """True once the RPC is over (closed, cancelled, or ended by the server)."""
        return self._closed

    def push(self, samples: Any) -> Any:
        """Send raw samples as one message; returns one raw prediction per sample (with their intervals for a
        stream opened with ``intervals``).

        A rejected message leaves the session exactly as it was and the stream open.

        Args:
            samples: `[n, F]` (a chunk), `[F]` (one sample) or a plain number when F = 1, in raw units.

        Returns:
            `float32 [n, O]`: row i predicts the targets `horizon` samples after sample i; bit for bit what a
            local `Stream` fed the same messages returns. For a stream opened with `intervals`, a
            `Forecast` instead: the predictions (`.y`) and each level's bounds (`.lower[0.8]`, `.upper[0.8]`).

        Raises:
            InvalidInput: checked here first with a local stream's rules (not numbers, wrong feature count, no
                samples, NaN or infinity), or refused by the server.
            ResourceExhausted: more samples than the server takes per message, or an answer over a message limit.
            FailedPrecondition: the stream is closed.
            Unavailable: the server's session store cannot be reached (retry the same samples).
        """
        with self._lock:
            if self._closed:
                raise FailedPrecondition("stream is closed")
            x = as_samples(samples, self.n_features)  # [n, F] float32
            self._requests.put(pb.StreamRequest(samples=array_to_tensor(x, self.encoding)))
            response = self._next("predictions")
            out = response.predictions
            if out.offset != self.position:
                self._fail(f"protocol error: server answered offset {out.offset}, expected {self.position}")
            try:
                y, _ = tensor_to_samples(out.outputs, len(self.targets))  # [n, O]
            except InvalidInput as e:
                self._fail(f"protocol error: malformed predictions from the server: {e.message}")
            if len(y) != len(x):
                self._fail(f"protocol error: {len(x)} sample(s) sent, {len(y)} prediction(s) received")
            forecast = None
            if self.intervals:
                try:
                    forecast = forecast_of(out, y, self.intervals)
                except InvalidInput as e:
                    self._fail(e.message)
            self.position += len(x)
            return forecast if forecast is not None else y

    def reset(self) -> None:
        """Back to zero state and position 0 on the server (same session id)."""
        self._control(pb.Control.RESET)

    def export_state(self) -> bytes:
        """The session's state as signed, portable bytes: open a stream from them with `Client.stream(state=...)`,
        here or on a replica serving the same model version (and sharing its `--state-key`)."""
        return self._control(pb.Control.EXPORT_STATE).state

    def close_session(self) -> None:
        """Delete the session on the server; the server then ends the stream."""
        self._control(pb.Control.CLOSE)
        self.close()

    def _control(self, action: int) -> pb.ControlDone:
        with self._lock:
            if self._closed:
                raise FailedPrecondition("stream is closed")
            self._requests.put(pb.StreamRequest(control=pb.Control(action=action)))
            done = self._next("control_done").control_done
            self.position = done.position
            return done

    def _send_raw(self, request: pb.StreamRequest) -> pb.StreamResponse:
        """Send any request as is and return the response unchecked (for tests and tools)."""
        with self._lock:
            if self._closed:
                raise FailedPrecondition("stream is closed")
            self._requests.put(request)
            try:
                return next(self._responses)
            except grpc.RpcError as e:
                self._ended()
                raise rpc_error(e) from None

    def close(self, cancel: bool = False) -> None:
        """Half-close and wait until the server ends the RPC (or cancel it). Idempotent."""
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

    def __enter__(self) -> RemoteStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)

    def __repr__(self) -> str:
        return f"<RemoteStream {self.model}/{self.version} at {self.position}>"
