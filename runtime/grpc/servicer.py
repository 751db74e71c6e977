"""The eddy.v1 ``Inference`` service on grpc.aio: translate and delegate.

The Stream protocol lives in :mod:`~eddy.runtime.grpc.stream_handler`, the
streaming call's lifecycle (admission, idle, end of input, final status,
metrics, the open/close log lines) in :mod:`~eddy.runtime.grpc.lifecycle`;
sessions, batching and limits in :mod:`~eddy.runtime.serving.dataplane`
(plain values); protobuf conversions in :mod:`~eddy.runtime.grpc.tensors`
and :mod:`~eddy.runtime.grpc.responses`; errors -> status in
:mod:`~eddy.runtime.grpc.status`. This module maps them onto RPCs: an
:class:`~eddy.runtime.core.errors.EddyError` becomes its own status with its
message; anything else becomes INTERNAL with a generic message and the
traceback in the log (never a library's raw message).

Log lines are ``key=value`` pairs on the ``eddy.streams`` logger, e.g.::

    event=stream_open tenant=acme session=4f0c... model=sunspots version=1 resumed=False position=0
    event=stream_close tenant=acme session=4f0c... model=sunspots version=1 resumed=False start=0 samples=309 ...
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc

from ..core.errors import InvalidInput
from ..serving.dataplane import DataPlane
from .fleet_handler import FleetHandler
from .headers import client_limit
from .lifecycle import StreamCall, StreamGate
from .responses import list_models_response, live_accuracy, model_metadata, predict_response, session_state
from .security import TENANT
from .status import code_name
from .stream_handler import StreamHandler
from .tensors import tensor_to_sequences
from .unary import run_unary
from .wire import RateLimitedLog, is_malformed

__all__ = ["InferenceServicer", "SERVICE_NAME"]

log = logging.getLogger("eddy.servicer")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Inference"].full_name  # "eddy.v1.Inference"

T = TypeVar("T")


class InferenceServicer(pb_grpc.InferenceServicer):
    """Serves every model of a :class:`DataPlane`'s repository."""

    def __init__(self, plane: DataPlane, gate: StreamGate | None = None) -> None:
        self.plane = plane
        self.metrics = plane.metrics
        # Stream limits and idle timeout, shared with the OIP's ModelStreamInfer when the server passes its gate
        self.gate = gate or StreamGate.from_config(plane.config, plane.metrics)
        self._faults = RateLimitedLog(log)  # client faults worth a line: never a traceback, never a flood

    async def Stream(self, request_iterator: AsyncIterator[pb.StreamRequest],
                     context: grpc.aio.ServicerContext) -> None:
        tenant = TENANT.get()
        handler = StreamHandler(self.plane, tenant=tenant)
        async with StreamCall(self.gate, "Stream", context, tenant, fields=handler.log_fields) as call:
            call.closing(handler.release)  # the session stays idle and resumable, whatever happened
            handler.client_limit = client_limit(context.invocation_metadata())  # INVALID_ARGUMENT if malformed
            async for request in request_iterator:
                call.received()
                was_open, t0 = handler.opened, time.perf_counter()
                if is_malformed(request):
                    self._faults.warning("malformed", "Stream: %s (peer %s)", request.message, context.peer())
                    raise InvalidInput(request.message)
                response = await handler.handle(request)  # an EddyError here ends the RPC with its status
                if not was_open:
                    call.answered(None, "OK", time.perf_counter() - t0)
                    call.opened(session=handler.session_id, model=handler.model_name, version=handler.model_version,
                                resumed=handler.resumed, position=handler.position)
                elif response.WhichOneof("kind") == "error":
                    call.answered(handler.model_name, code_name(response.error.code), time.perf_counter() - t0)
                else:
                    call.answered(handler.model_name, "OK", time.perf_counter() - t0)
                await call.write(response)
                if handler.finished:
                    break
            if not handler.finished:  # the input ended: a half-close, or a peer that vanished (then cancelled here)
                await call.end_of_input()

    async def Fleet(self, request_iterator: AsyncIterator[pb.FleetRequest],
                    context: grpc.aio.ServicerContext) -> None:
        tenant = TENANT.get()
        handler = FleetHandler(self.plane, tenant=tenant)
        async with StreamCall(self.gate, "Fleet", context, tenant, fields=handler.log_fields) as call:
            call.closing(handler.release)  # every session it held stays idle and resumable, whatever happened
            handler.client_limit = client_limit(context.invocation_metadata())  # INVALID_ARGUMENT if malformed
            async for request in request_iterator:
                call.received()
                was_open, t0 = handler.opened, time.perf_counter()
                if is_malformed(request):
                    self._faults.warning("malformed", "Fleet: %s (peer %s)", request.message, context.peer())
                    raise InvalidInput(request.message)
                response = await handler.handle(request)  # an EddyError here ends the RPC with its status
                if not was_open:
                    call.answered(None, "OK", time.perf_counter() - t0)
                    call.opened(fleet=True, model=handler.model_name, version=handler.model_version)
                elif response.WhichOneof("kind") == "error":
                    call.answered(handler.model_name, code_name(response.error.code), time.perf_counter() - t0)
                else:
                    call.answered(handler.model_name, "OK", time.perf_counter() - t0)
                await call.write(response)
            await call.end_of_input()  # a half-close, or a peer that vanished (then cancelled here)

    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        async def work() -> pb.ListModelsResponse:
            return list_models_response(self.plane.models())

        return await self._unary("ListModels", context, work, request)

    async def GetModelMetadata(self, request: pb.ModelMetadataRequest,
                               context: grpc.aio.ServicerContext) -> pb.ModelMetadata:
        async def work() -> pb.ModelMetadata:
            model = self.plane.model(request.model, request.version)
            return model_metadata(model, self.plane.versions(model.name))

        return await self._unary("GetModelMetadata", context, work, request)

    async def Predict(self, request: pb.PredictRequest, context: grpc.aio.ServicerContext) -> pb.PredictResponse:
        async def work() -> pb.PredictResponse:
            limit = client_limit(context.invocation_metadata())
            model = self.plane.model(request.model, request.version)
            x, encoding = tensor_to_sequences(request.inputs, model.n_features,
                                              check=self.plane.check_samples)  # [B, T, F]
            prediction = await self.plane.predict(model, x, request.states, client_limit=limit, tenant=TENANT.get())
            return predict_response(prediction, encoding)

        return await self._unary("Predict", context, work, request)

    async def GetSessionState(self, request: pb.SessionRequest,
                              context: grpc.aio.ServicerContext) -> pb.SessionState:
        async def work() -> pb.SessionState:
            return session_state(await self.plane.session_state(request.session_id, TENANT.get()))

        return await self._unary("GetSessionState", context, work, request)

    async def GetLiveAccuracy(self, request: pb.LiveAccuracyRequest,
                              context: grpc.aio.ServicerContext) -> pb.LiveAccuracy:
        async def work() -> pb.LiveAccuracy:
            model, figures = await self.plane.live(request.model, request.version, request.session_id, TENANT.get())
            return live_accuracy(figures, model.name, model.version, request.session_id)

        return await self._unary("GetLiveAccuracy", context, work, request)

    async def DeleteSession(self, request: pb.SessionRequest,
                            context: grpc.aio.ServicerContext) -> pb.SessionState:
        async def work() -> pb.SessionState:
            return session_state(await self.plane.delete_session(request.session_id, TENANT.get()))

        return await self._unary("DeleteSession", context, work, request)

    async def _unary(self, method: str, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]],
                     request: object) -> T:
        return await run_unary(method, context, work, self.metrics, request=request, faults=self._faults)

