"""The Open Inference Protocol (KServe v2 gRPC) with Triton's sequence extension: translate and delegate.

Served on the same port as ``eddy.v1.Inference`` under the service name
Triton and KServe clients call, ``inference.GRPCInferenceService``, over the
same :class:`~eddy.runtime.serving.dataplane.DataPlane`: the same sessions,
cross-stream batching, limits and exactness. Messages convert in
:mod:`~eddy.runtime.grpc.oip_codec`; sequences map onto sessions in
:mod:`~eddy.runtime.serving.sequences` (sequence 42 is session ``"42"``).

RPCs: ServerLive, ServerReady, ModelReady (ready while the server serves,
false for an unknown model or version), ServerMetadata, ModelMetadata,
ModelConfig, RepositoryIndex, ModelStatistics (eddy's own per-version
figures, :mod:`~eddy.runtime.serving.stats`), ModelInfer and
ModelStreamInfer. :mod:`~eddy.runtime.grpc.oip_service` registers them and
answers the others (load/unload, shared memory, trace, log settings)
UNIMPLEMENTED with the reason.

Errors: an :class:`~eddy.runtime.core.errors.EddyError` ends a unary call with
its status (INVALID_ARGUMENT, NOT_FOUND, ...); in ModelStreamInfer it comes
back in-band as ``error_message`` (with the request's ``id``) and the stream
stays open. A rejected request changes no session.

ModelStreamInfer runs each request as soon as it is read, so one stream can
carry many sequences that batch together; requests of one sequence run in
order, and answers come back as they complete (match them by ``id``): the
protocol is :class:`~eddy.runtime.grpc.oip_stream.OipStreamHandler`, which a
test drives without a socket. The call itself lives in the one stream
lifecycle (:mod:`~eddy.runtime.grpc.lifecycle`), like an eddy.v1 ``Stream``:
``--max-streams``/``--max-streams-per-tenant`` (RESOURCE_EXHAUSTED before
anything is read), ``--stream-idle-timeout`` (DEADLINE_EXCEEDED), its true
close status in the metrics and its open/close log lines. A request that
does not parse ends the stream with INVALID_ARGUMENT after the requests
before it are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from eddy.v1 import oip_pb2 as pb

from .. import __version__
from ..core.errors import EddyError, InvalidInput, NotFound, shown
from ..core.layout import OUTPUT
from ..serving.dataplane import DataPlane
from ..serving.sequences import Sequences, SequenceStep
from .lifecycle import StreamCall, StreamGate
from .oip_codec import (
    forecast_response_bytes,
    infer_input,
    infer_response_bytes,
    interval_request,
    model_config,
    model_metadata,
    model_statistics,
    repository_index,
    sequence_step,
)
from .oip_stream import OipStreamHandler
from .security import TENANT
from .unary import run_unary
from .wire import Malformed, RateLimitedLog, is_malformed

__all__ = ["EXTENSIONS", "OIP_SERVICE", "OipServicer"]

OIP_SERVICE = "inference.GRPCInferenceService"  # the wire name; our messages live in package eddy.v1.oip
EXTENSIONS = ["model_configuration", "sequence", "statistics"]  # ServerMetadata.extensions

T = TypeVar("T")

log = logging.getLogger("eddy.servicer")


class OipServicer:
    """``inference.GRPCInferenceService`` over a :class:`DataPlane`; ``ready()`` says whether the server serves."""

    def __init__(self, plane: DataPlane, ready: Callable[[], bool] = lambda: True,
                 gate: StreamGate | None = None) -> None:
        self.plane = plane
        self.sequences = Sequences(plane)
        self.metrics = plane.metrics
        self.ready = ready
        # ModelStreamInfer's limits and idle timeout: the eddy.v1 Stream's own gate when the server passes it
        self.gate = gate or StreamGate.from_config(plane.config, plane.metrics)
        self._faults = RateLimitedLog(log)  # malformed stream requests: a short line, never a flood
        self._version = __version__  # the installed distribution's

    # -- health and metadata ------------------------------------------------
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        async def work() -> pb.ModelReadyResponse:
            try:
                self.plane.model(request.name, request.version)
            except EddyError:  # unknown model or version, malformed version: not ready (Triton answers the same)
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=self.ready())

        return await self._unary("ModelReady", context, work)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="eddy", version=self._version, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        async def work() -> pb.ModelMetadataResponse:
            model = self.plane.model(request.name, request.version)
            return model_metadata(model, self.plane.versions(model.name))

        return await self._unary("ModelMetadata", context, work)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        async def work() -> pb.ModelConfigResponse:
            return model_config(self.plane.model(request.name, request.version), self.plane.config)

        return await self._unary("ModelConfig", context, work)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> pb.ModelStatisticsResponse:
        async def work() -> pb.ModelStatisticsResponse:
            plane = self.plane
            if request.name:
                model = plane.model(request.name, request.version)  # NOT_FOUND for an unknown model or version
                versions = [(model.name, v) for v in ([model.version] if request.version
                                                      else plane.versions(model.name))]
            elif request.version:
                raise InvalidInput("a version needs a model name")
            else:
                versions = [(name, v) for name, vs in sorted(plane.models().items()) for v in vs]
            return model_statistics([plane.stats.get(name, v) for name, v in versions])

        return await self._unary("ModelStatistics", context, work)

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> pb.RepositoryIndexResponse:
        async def work() -> pb.RepositoryIndexResponse:
            if request.repository_name:
                raise NotFound(f"unknown repository {shown(request.repository_name)}; eddy serves one (use \"\")")
            return repository_index(self.plane.models())

        return await self._unary("RepositoryIndex", context, work)

    # -- inference ----------------------------------------------------------
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> bytes:
        return await self._unary("ModelInfer", context, lambda: self.infer(request))  # serialized already

    async def ModelStreamInfer(self, request_iterator: AsyncIterator[pb.ModelInferRequest | Malformed],
                               context: Any) -> None:
        tenant = TENANT.get()
        handler = OipStreamHandler(self.infer, max_bytes=2 * self.plane.config.max_message_bytes)
        async with StreamCall(self.gate, "ModelStreamInfer", context, tenant, fields=handler.log_fields) as call:
            call.opened(rpc="ModelStreamInfer")
            handler.record = call.answered
            call.busy_while(lambda: handler.running > 0)  # idle: nothing sent and nothing being computed
            call.holding(handler.held)
            call.closing(handler.close)
            malformed: list[Malformed] = []  # a request that did not parse: the stream ends after the earlier answers

            async def read() -> None:
                try:
                    async for request in request_iterator:
                        call.received()
                        if is_malformed(request):
                            malformed.append(request)
                            break
                        await handler.submit(request)
                finally:
                    handler.end_input()  # the client half-closed (or sent garbage)

            reader = asyncio.get_running_loop().create_task(read())
            call.closing(lambda: _cancel(reader))
            async for answer in handler.answers():
                await call.write(answer)
            await reader  # re-raise a failed read (e.g. a broken request stream)
            if malformed:
                self._faults.warning("malformed", "ModelStreamInfer: %s (peer %s)", malformed[0].message,
                                     context.peer())
                await call.fail(grpc.StatusCode.INVALID_ARGUMENT, malformed[0].message)
            await call.end_of_input()  # a killed peer's clean close looks like a half-close: see there

    async def infer(self, request: pb.ModelInferRequest, step: SequenceStep | None = None) -> bytes:
        """The serialized ``ModelInferResponse`` to one request (EddyError if it is refused).

        ``step``: the request's sequence parameters, if the caller parsed them already.
        """
        if step is None:
            step = sequence_step(request.parameters)  # InvalidInput for malformed sequence parameters
        model = self.plane.model(request.model_name, request.model_version)
        x = infer_input(request, model, check=self.plane.check_samples)  # [n, F], validated
        levels, names = interval_request(request, model) if request.outputs or request.parameters else ((), [])
        ran, y = await self.sequences.infer(model, request.model_version, step, x, TENANT.get(),
                                            levels)
        if not levels and names in ([], [OUTPUT]):
            return infer_response_bytes(ran, request.id, y)
        return forecast_response_bytes(ran, request.id, y, names)

    async def _unary(self, method: str, context: Any, work: Callable[[], Awaitable[T]]) -> T:
        return await run_unary(method, context, work, self.metrics)



async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
