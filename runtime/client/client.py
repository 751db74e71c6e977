"""A connection to ``eddy serve``: :class:`Client` (unary calls; streams through :class:`RemoteStream`)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc

from ..core.errors import EddyError, InvalidInput
from ..grpc.headers import RESPONSE_LIMIT_HEADER, SESSION_HEADER
from ..grpc.tensors import Encoding, array_to_tensor, tensor_to_sequences
from ..serving.config import ServeConfig
from ._wire import channel_setup, rpc_error, version_field
from .fleet import RemoteFleet
from .stream import RemoteStream

__all__ = ["Client"]


class Client:
    """A connection to an eddy server at ``target`` (``"host:port"``).

    ``max_message_bytes`` bounds every message sent and received (default:
    the server's default, 4 MiB). It is also told to the server, which then
    refuses with RESOURCE_EXHAUSTED, before running anything and with the
    session unchanged, a request whose answer would be larger.

    TLS is used when ``tls`` is true or any of ``tls_ca`` (PEM file of the CA
    that signed the server's certificate; default: the system's roots),
    ``tls_cert``/``tls_key`` (this client's certificate, for servers that
    require one) is given. ``token`` is sent as ``authorization: Bearer``
    on every call (default: ``$EDDY_TOKEN`` if set).
    """

    def __init__(self, target: str, *, timeout: float | None = 30.0,
                 max_message_bytes: int = ServeConfig.max_message_bytes, tls: bool = False,
                 tls_ca: str | Path | None = None, tls_cert: str | Path | None = None,
                 tls_key: str | Path | None = None, token: str | None = None) -> None:
        self.target = target
        self.timeout = timeout  # seconds, for unary calls (streams have no deadline)
        self.max_message_bytes = max_message_bytes
        credentials, options, self._metadata = channel_setup(max_message_bytes, tls, tls_ca, tls_cert, tls_key, token)
        self._limit = (*self._metadata, (RESPONSE_LIMIT_HEADER, str(max_message_bytes)))  # advertises the limit
        self._channel = (grpc.secure_channel(target, credentials, options) if credentials is not None
                         else grpc.insecure_channel(target, options=options))
        self._stub = pb_grpc.InferenceStub(self._channel)

    def list_models(self) -> dict[str, list[int]]:
        """``{name: [versions, ascending]}``."""
        try:
            response = self._stub.ListModels(pb.ListModelsRequest(), timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise rpc_error(e) from None
        return {m.name: list(m.versions) for m in response.models}

    def metadata(self, name: str, version: str | int | None = None) -> pb.ModelMetadata:
        """A model version's ``ModelMetadata`` (latest if ``version`` is omitted)."""
        request = pb.ModelMetadataRequest(model=name, version=version_field(version))
        try:
            return self._stub.GetModelMetadata(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise rpc_error(e) from None

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
                            max_response_bytes=self.max_message_bytes, metadata=self._metadata)

    def fleet(self, name: str, version: str | int | None = None, *, encoding: Encoding = "raw",
              timeout: float | None = None) -> RemoteFleet:
        """Open a fleet on ``name`` (latest version unless given): many sessions per message.

        ``fleet.push(ids, x)`` steps the sessions ``ids`` by ``x[N, k, F]``
        in one message (see :mod:`eddy.runtime.client.fleet`). ``encoding``
        and ``timeout`` as for :meth:`stream`.
        """
        request = pb.FleetOpen(model=name, version=version_field(version))
        metadata = [*self._metadata, (RESPONSE_LIMIT_HEADER, str(self.max_message_bytes))]
        return RemoteFleet(lambda requests: self._stub.Fleet(requests, timeout=timeout, metadata=metadata), request,
                           encoding=encoding)

    def predict(self, name: str, x: Any, version: str | int | None = None, *, states: list[bytes] | None = None,
                encoding: Encoding = "raw") -> tuple[np.ndarray, list[bytes]]:
        """Whole sequences ``x[B, T, F]`` -> (``y[B, T, O]``, B final-state blobs).

        ``states``: none (zero state) or one exported-state blob per sequence.
        """
        arr = np.asarray(x, np.float32)
        request = pb.PredictRequest(model=name, version=version_field(version),
                                    inputs=array_to_tensor(arr, encoding), states=states or [])
        try:
            response = self._stub.Predict(request, timeout=self.timeout, metadata=self._limit)
        except grpc.RpcError as e:
            raise rpc_error(e) from None
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
                                              metadata=(*self._metadata, (SESSION_HEADER, session_id)))
        except grpc.RpcError as e:
            raise rpc_error(e) from None

    def delete_session(self, session_id: str) -> pb.SessionState:
        """Delete an idle session; returns its final state."""
        try:
            return self._stub.DeleteSession(pb.SessionRequest(session_id=session_id), timeout=self.timeout,
                                            metadata=(*self._metadata, (SESSION_HEADER, session_id)))
        except grpc.RpcError as e:
            raise rpc_error(e) from None

    def close(self) -> None:
        """Close the channel (cancels any stream still open)."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
