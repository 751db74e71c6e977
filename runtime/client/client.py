"""A connection to ``eddy serve``: :class:`Client` (unary calls; streams through :class:`RemoteStream`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc

from ..core.errors import EddyError, InvalidInput
from ..grpc.headers import RESPONSE_LIMIT_HEADER, session_header
from ..grpc.tensors import Encoding, array_to_tensor, tensor_to_sequences
from ..serving.config import ServeConfig
from ._wire import ResumeRetry, channel_setup, rpc_error, version_field
from .fleet import RemoteFleet
from .stream import RemoteStream

__all__ = ["Client"]


class Client:
    """A synchronous connection to an eddy server (eddy.v1); `with Client(...) as client:` closes it.

    Every method raises the `eddy.runtime` error class of the status the server answered (`InvalidInput` for
    INVALID_ARGUMENT, `NotFound`, `AlreadyExists`, `FailedPrecondition`, `ResourceExhausted`, `Unauthenticated`,
    `PermissionDenied`, `Unavailable`; a plain `EddyError` whose `code` is the status name otherwise).

    Args:
        target: `"host:port"`.
        timeout: seconds for each unary call (streams have no deadline unless `stream(timeout=...)`).
        max_message_bytes: the largest message sent or received (default: the server's default, 4 MiB). It is
            also told to the server, which refuses with RESOURCE_EXHAUSTED, before running anything and with
            the session unchanged, a request whose answer would be larger.
        tls: use TLS with the system's root certificates (implied by any of the three below).
        tls_ca: PEM file of the CA that signed the server's certificate.
        tls_cert: this client's certificate (PEM), for servers that require one (mTLS); with `tls_key`.
        tls_key: the key of `tls_cert` (PEM).
        token: sent as `authorization: Bearer TOKEN` on every call (default: `$EDDY_TOKEN` if set).
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
        """The served models: `{name: [versions, ascending]}`."""
        try:
            response = self._stub.ListModels(pb.ListModelsRequest(), timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise rpc_error(e) from None
        return {m.name: list(m.versions) for m in response.models}

    def metadata(self, name: str, version: str | int | None = None) -> pb.ModelMetadata:
        """A model version's `eddy.v1.ModelMetadata` message (latest if `version` is omitted): columns, window,
        horizon, state shapes, versions, test metrics, parity figures and the manifest as JSON.

        Raises:
            NotFound: no such model or version.
        """
        request = pb.ModelMetadataRequest(model=name, version=version_field(version))
        try:
            return self._stub.GetModelMetadata(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise rpc_error(e) from None

    def stream(self, name: str, version: str | int | None = None, *, encoding: Encoding = "raw",
               timeout: float | None = None, session_id: str | None = None, state: bytes | None = None,
               resume: bool = False, intervals: Sequence[float] = ()) -> RemoteStream:
        """Open a `Stream` RPC driving one session of model `name`; returns a `RemoteStream` once it is open.

        Args:
            name: the model.
            version: a version to pin (default: the latest; a resumed session keeps its own).
            encoding: how samples travel: `"raw"` little-endian float32 bytes or packed `"values"`.
            timeout: a deadline in seconds for the whole stream (default: none).
            session_id: the session to create or resume (default: a new random id, made here so that the
                `x-eddy-session` header can carry it; read it back as `.session_id`).
            state: exported state bytes (`export_state`) a new session starts from.
            resume: the session must exist already (else NotFound), instead of being created. A resume refused
                because another replica's lease still holds the session (its replica may have died) or because no
                server answers (UNAVAILABLE) is tried again, for as long as the lease the server names at most
                (`ResumeRetry`).
            intervals: calibrated levels (e.g. `[0.8]`) every push is answered with: `push` then returns a
                `Forecast` (`.y`, `.lower[0.8]`, `.upper[0.8]`).

        Raises:
            NotFound: unknown model or version, or `resume` of a session that does not exist.
            InvalidInput: an interval level the model has not calibrated.
            AlreadyExists: `session_id` exists and `resume` is false.
            FailedPrecondition: the session is driven by another stream (after waiting out its lease), or is on
                another model or version; or intervals asked of a model without a calibration.
            ResourceExhausted: a session or stream limit of the server was reached.
            Unauthenticated: a missing or unknown token, or state bytes whose signature does not verify.
            PermissionDenied: state bytes exported by another tenant.
            InvalidInput: a malformed `session_id`, refused before anything is sent (an id in any script is
                fine: the header carries it percent-encoded).
        """
        session_id = session_id or uuid.uuid4().hex
        retry = ResumeRetry()
        while True:
            try:
                return RemoteStream(self._stub, name, version, encoding=encoding, timeout=timeout,
                                    session_id=session_id, state=state, resume=resume,
                                    max_response_bytes=self.max_message_bytes, metadata=self._metadata,
                                    intervals=intervals)
            except EddyError as e:
                pause = retry.pause(e) if resume else None
                if pause is None:
                    raise
                time.sleep(pause)

    def fleet(self, name: str, version: str | int | None = None, *, encoding: Encoding = "raw",
              timeout: float | None = None, intervals: Sequence[float] = ()) -> RemoteFleet:
        """Open a fleet on ``name`` (latest version unless given): many sessions per message.

        ``fleet.push(ids, x)`` steps the sessions ``ids`` by ``x[N, k, F]``
        in one message (see :mod:`eddy.runtime.client.fleet`). ``encoding``,
        ``timeout`` and ``intervals`` (the results' ``lower``/``upper``) as for :meth:`stream`.
        """
        request = pb.FleetOpen(model=name, version=version_field(version), intervals=list(intervals))
        metadata = [*self._metadata, (RESPONSE_LIMIT_HEADER, str(self.max_message_bytes))]
        return RemoteFleet(lambda requests: self._stub.Fleet(requests, timeout=timeout, metadata=metadata), request,
                           encoding=encoding)

    def predict(self, name: str, x: Any, version: str | int | None = None, *, states: list[bytes] | None = None,
                encoding: Encoding = "raw") -> tuple[np.ndarray, list[bytes]]:
        """Run whole sequences on the server without a session (`Predict`).

        Args:
            name: the model.
            x: raw samples `[B, T, F]`.
            version: a version to pin (default: the latest).
            states: none (zero state) or one exported-state blob per sequence (B of them).
            encoding: as for `stream`.

        Returns:
            `(y, states)`: raw predictions `float32 [B, T, O]` and B state blobs after the last sample, which a
            later `predict` or a stream (`state=`) continues from.

        Raises:
            InvalidInput: `x` is not `[B, T, F]` finite numbers, or `states` is neither empty nor B blobs.
            ResourceExhausted: more than the server's samples per message, or an answer over the message limit.
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
        """An idle session's model, version, position and exported state (`eddy.v1.SessionState`).

        Raises:
            NotFound: no such session (in this tenant).
            FailedPrecondition: a stream is driving the session.
            InvalidInput: a malformed id (1-128 printable characters, no leading/trailing spaces), refused before
                anything is sent.
        """
        try:
            return self._stub.GetSessionState(pb.SessionRequest(session_id=session_id), timeout=self.timeout,
                                              metadata=(*self._metadata, session_header(session_id)))
        except grpc.RpcError as e:
            raise rpc_error(e) from None

    def live_accuracy(self, name: str, version: str | int | None = None, session_id: str = "") -> pb.LiveAccuracy:
        """Live accuracy of model ``name`` (latest version unless given), pooled over its sessions on the server,
        or of one session (``session_id``)."""
        request = pb.LiveAccuracyRequest(model=name, version=version_field(version), session_id=session_id)
        try:
            return self._stub.GetLiveAccuracy(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise rpc_error(e) from None

    def delete_session(self, session_id: str) -> pb.SessionState:
        """Delete an idle session; returns its final `eddy.v1.SessionState`. Raises as `session_state`."""
        try:
            return self._stub.DeleteSession(pb.SessionRequest(session_id=session_id), timeout=self.timeout,
                                            metadata=(*self._metadata, session_header(session_id)))
        except grpc.RpcError as e:
            raise rpc_error(e) from None

    def close(self) -> None:
        """Close the channel (cancels any stream still open)."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
