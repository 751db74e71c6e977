"""A synchronous Python client for ``eddy serve``.

::

    from eddy.runtime.client import Client
    with Client("127.0.0.1:50051") as client:
        print(client.list_models())                 # {"sunspots": [1]}
        with client.stream("sunspots") as stream:   # same push/close as a local Stream
            y = stream.push(42.0)                   # [1, O] raw-unit predictions

Errors come back as the :mod:`eddy.runtime.core.errors` class matching the status
(INVALID_ARGUMENT -> :class:`InvalidInput`, NOT_FOUND -> :class:`NotFound`,
UNAVAILABLE -> :class:`Unavailable`, ...), whether the server sent them in-band or
ended the RPC with them. Codes without their own class (INTERNAL, ...) raise a plain
:class:`EddyError` whose ``code`` is the status name.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator
from typing import Any, NoReturn

import grpc
import numpy as np

from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc

from ..core.errors import EddyError, FailedPrecondition, InvalidInput
from ..core.layout import parse_version
from ..core.samples import as_samples
from ..grpc.headers import RESPONSE_LIMIT_HEADER
from ..grpc.status import error_from_status
from ..grpc.tensors import Encoding, array_to_tensor, tensor_to_samples, tensor_to_sequences
from ..serving.config import ServeConfig

__all__ = ["SESSION_HEADER", "Client", "RemoteStream"]

# Sent with every stream and session call: a load balancer in front of several replicas hashes on it
# (deploy/envoy.yaml: RING_HASH), so a session's stream and unary calls land on one replica.
SESSION_HEADER = "x-eddy-session"

_END = object()  # request-queue sentinel: half-close the stream


def _version(version: str | int | None) -> str:
    """The wire form of a requested version: "" for the latest, else checked by the one version rule."""
    return "" if version is None or version == "" else str(parse_version(version))


def _rpc_error(e: grpc.RpcError) -> EddyError:
    code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (e.details() if isinstance(e, grpc.Call) else None) or str(e)
    return error_from_status(code, details)


class RemoteStream:
    """One open ``Stream`` RPC. Use :meth:`Client.stream` to create it.

    :meth:`push` sends one message and waits for its response, so calls are
    strictly in order; not thread-safe (one caller at a time, like a local
    :class:`~eddy.runtime.core.model.Stream`).
    """

    def __init__(self, stub: pb_grpc.InferenceStub, model: str, version: str | int | None = None,
                 *, encoding: Encoding = "raw", timeout: float | None = None, session_id: str | None = None,
                 state: bytes | None = None, resume: bool = False, max_response_bytes: int | None = None) -> None:
        self.encoding: Encoding = encoding
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        open_ = pb.OpenStream(model=model, version=_version(version), session_id=session_id or "",
                              state=state or b"", resume=resume)
        self._requests.put(pb.StreamRequest(open=open_))
        metadata = [(SESSION_HEADER, session_id)] if session_id else []
        if max_response_bytes:  # the server refuses, session unchanged, an answer we could not receive
            metadata.append((RESPONSE_LIMIT_HEADER, str(max_response_bytes)))
        self._call = stub.Stream(self._request_iter(), timeout=timeout, metadata=metadata)
        self._responses: Iterator[pb.StreamResponse] = self._call
        opened = self._next("opened")
        self.model: str = opened.opened.model
        self.version: int = opened.opened.version
        self.features: list[str] = list(opened.opened.features)
        self.targets: list[str] = list(opened.opened.targets)
        self.session_id: str = opened.opened.session_id
        self.resumed: bool = opened.opened.resumed
        self.position: int = opened.opened.position  # the session's position (samples consumed)

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
            raise _rpc_error(e) from None
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
        return len(self.features)

    @property
    def closed(self) -> bool:
        """True once the RPC is over (closed, cancelled, or ended by the server)."""
        return self._closed

    def push(self, samples: Any) -> np.ndarray:
        """Send raw samples (``[n, F]``, ``[F]`` or a float); returns raw ``[n, O]`` float32.

        Input is checked locally first (same rules and errors as a local
        stream); the server's verdict is raised as the matching error class.
        A rejected message leaves the remote state unchanged.
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
            self.position += len(x)
            return y

    def reset(self) -> None:
        """Back to zero state and position 0 on the server (same session id)."""
        self._control(pb.Control.RESET)

    def export_state(self) -> bytes:
        """The session's state as portable bytes (open a stream from them with ``state=``)."""
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

    def send_raw(self, request: pb.StreamRequest) -> pb.StreamResponse:
        """Send any request as is and return the response unchecked (for tests and tools)."""
        with self._lock:
            if self._closed:
                raise FailedPrecondition("stream is closed")
            self._requests.put(request)
            try:
                return next(self._responses)
            except grpc.RpcError as e:
                self._ended()
                raise _rpc_error(e) from None

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
                raise _rpc_error(e) from None

    def __enter__(self) -> RemoteStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)

    def __repr__(self) -> str:
        return f"<RemoteStream {self.model}/{self.version} at {self.position}>"


class Client:
    """A connection to an eddy server at ``target`` (``"host:port"``).

    ``max_message_bytes`` bounds every message sent and received (default:
    the server's default, 4 MiB). It is also told to the server, which then
    refuses with RESOURCE_EXHAUSTED, before running anything and with the
    session unchanged, a request whose answer would be larger.
    """

    def __init__(self, target: str, *, timeout: float | None = 30.0,
                 max_message_bytes: int = ServeConfig.max_message_bytes) -> None:
        if max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be >= 1, got {max_message_bytes}")
        self.target = target
        self.timeout = timeout  # seconds, for unary calls (streams have no deadline)
        self.max_message_bytes = max_message_bytes
        self._limit = ((RESPONSE_LIMIT_HEADER, str(max_message_bytes)),)  # metadata advertising it
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ])
        self._stub = pb_grpc.InferenceStub(self._channel)

    def list_models(self) -> dict[str, list[int]]:
        """``{name: [versions, ascending]}``."""
        try:
            response = self._stub.ListModels(pb.ListModelsRequest(), timeout=self.timeout)
        except grpc.RpcError as e:
            raise _rpc_error(e) from None
        return {m.name: list(m.versions) for m in response.models}

    def metadata(self, name: str, version: str | int | None = None) -> pb.ModelMetadata:
        """A model version's ``ModelMetadata`` (latest if ``version`` is omitted)."""
        request = pb.ModelMetadataRequest(model=name, version=_version(version))
        try:
            return self._stub.GetModelMetadata(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise _rpc_error(e) from None

    def stream(self, name: str, version: str | int | None = None, *, encoding: Encoding = "raw",
               timeout: float | None = None, session_id: str | None = None, state: bytes | None = None,
               resume: bool = False) -> RemoteStream:
        """Open a stream on ``name`` (latest version unless given).

        ``session_id`` names the session to create or resume (``None``: a new
        random one, see ``.session_id``; it is made here so that the
        ``x-eddy-session`` header can carry it); ``state`` starts a new
        session from exported bytes; ``resume=True`` requires the session to
        exist. ``encoding`` is how samples travel (``"raw"`` bytes or packed
        ``"values"``); ``timeout`` is a deadline for the whole stream (none by default).
        """
        return RemoteStream(self._stub, name, version, encoding=encoding, timeout=timeout,
                            session_id=session_id or uuid.uuid4().hex, state=state, resume=resume,
                            max_response_bytes=self.max_message_bytes)

    def predict(self, name: str, x: Any, version: str | int | None = None, *, states: list[bytes] | None = None,
                encoding: Encoding = "raw") -> tuple[np.ndarray, list[bytes]]:
        """Whole sequences ``x[B, T, F]`` -> (``y[B, T, O]``, B final-state blobs).

        ``states``: none (zero state) or one exported-state blob per sequence.
        """
        arr = np.asarray(x, np.float32)
        request = pb.PredictRequest(model=name, version=_version(version),
                                    inputs=array_to_tensor(arr, encoding), states=states or [])
        try:
            response = self._stub.Predict(request, timeout=self.timeout, metadata=self._limit)
        except grpc.RpcError as e:
            raise _rpc_error(e) from None
        shape = list(response.outputs.shape)
        try:
            y, _ = tensor_to_sequences(response.outputs, shape[-1] if shape else 0)  # [B, T, O]
        except InvalidInput as e:
            raise EddyError(f"protocol error: malformed predictions from the server: {e.message}") from None
        return y, list(response.states)

    def session_state(self, session_id: str) -> pb.SessionState:
        """An idle session's model, version, position and exported state."""
        try:
            return self._stub.GetSessionState(pb.SessionRequest(session_id=session_id), timeout=self.timeout,
                                              metadata=((SESSION_HEADER, session_id),))
        except grpc.RpcError as e:
            raise _rpc_error(e) from None

    def delete_session(self, session_id: str) -> pb.SessionState:
        """Delete an idle session; returns its final state."""
        try:
            return self._stub.DeleteSession(pb.SessionRequest(session_id=session_id), timeout=self.timeout,
                                            metadata=((SESSION_HEADER, session_id),))
        except grpc.RpcError as e:
            raise _rpc_error(e) from None

    def close(self) -> None:
        """Close the channel (cancels any stream still open)."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
