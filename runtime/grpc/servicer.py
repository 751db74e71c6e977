"""The eddy.v1 ``Inference`` service on grpc.aio: translate and delegate.

The Stream protocol lives in :mod:`~eddy.runtime.grpc.stream_handler`;
sessions, batching and limits in :mod:`~eddy.runtime.serving.dataplane`
(plain values); protobuf conversions in :mod:`~eddy.runtime.grpc.tensors`
and :mod:`~eddy.runtime.grpc.responses`; errors -> status in
:mod:`~eddy.runtime.grpc.status`. This module maps them onto RPCs and records
metrics and one log line per stream open/close: an
:class:`~eddy.runtime.core.errors.EddyError` becomes its own status with its
message; anything else becomes INTERNAL with a generic message and the
traceback in the log (never a library's raw message).

Log lines are ``key=value`` pairs on the ``eddy.streams`` logger, e.g.::

    event=stream_open session=4f0c... model=sunspots version=1 resumed=False position=0
    event=stream_close session=4f0c... model=sunspots version=1 resumed=False start=0 samples=309 ...
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc

from ..core.errors import EddyError, InvalidInput
from ..serving.dataplane import DataPlane
from .headers import client_limit
from .limits import StreamGate
from .responses import list_models_response, model_metadata, predict_response, session_state
from .security import TENANT
from .status import code_name, status_code, to_status
from .stream_handler import StreamHandler
from .tensors import sample_count, tensor_to_sequences
from .unary import ended_early, run_unary, settle_end_of_input
from .wire import RateLimitedLog, is_malformed

__all__ = ["InferenceServicer", "SERVICE_NAME"]

log = logging.getLogger("eddy.servicer")
stream_log = logging.getLogger("eddy.streams")

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
                     context: grpc.aio.ServicerContext) -> AsyncIterator[pb.StreamResponse]:
        tenant = TENANT.get()
        m = self.metrics
        try:
            limit = client_limit(context.invocation_metadata())
        except EddyError as e:  # a malformed x-eddy-max-response-bytes
            m.rpc("Stream", status_code(e).name)
            await context.abort(status_code(e), e.message)
            return
        handler = StreamHandler(self.plane, client_limit=limit, tenant=tenant)
        latency = m.latency("Stream")  # looked up once per stream, not per message
        answered_ok = None  # the (model, "OK") message counter, once the stream is open
        code = grpc.StatusCode.OK
        idle = await self.gate.enter("Stream", tenant, context)  # RESOURCE_EXHAUSTED past --max-streams
        try:
            async for request in request_iterator:
                idle.last, idle.busy = idle.loop_time(), True
                was_open, t0 = handler.opened, time.perf_counter()
                try:
                    if is_malformed(request):
                        self._faults.warning("malformed", "Stream: %s (peer %s)", request.message, context.peer())
                        raise InvalidInput(request.message)
                    response = await handler.handle(request)
                except Exception as e:
                    code, message = to_status(e, "Stream")
                    await context.abort(code, message)
                idle.busy = False
                latency(time.perf_counter() - t0)
                if not was_open:
                    stream_log.info("%s", _kv("stream_open", session=handler.session_id,
                                              model=handler.model_name, version=handler.model_version,
                                              resumed=handler.resumed, position=handler.position))
                else:
                    if response.WhichOneof("kind") == "error":
                        m.stream_messages(handler.model_name, code_name(response.error.code))()
                    else:
                        if answered_ok is None:
                            answered_ok = m.stream_messages(handler.model_name, "OK")
                        answered_ok()
                yield response
                if handler.finished:
                    break
            if not handler.finished:  # the input ended: a half-close, or a peer that vanished (then cancelled here)
                await settle_end_of_input(context)
            code = ended_early(context) or code
        except asyncio.CancelledError:
            if idle.expired:  # ended by the idle timeout, not by the peer
                code = grpc.StatusCode.DEADLINE_EXCEEDED
                await context.abort(code, idle.message)
            code = ended_early(context) or grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            raise  # `code` already says why
        except Exception as e:  # e.g. a response that cannot be sent
            code, message = to_status(e, "Stream")
            await context.abort(code, message)
        finally:
            await handler.release()
            self.gate.leave("Stream", tenant, idle, code)
            stream_log.info("%s", _kv("stream_close", **handler.log_fields(), status=code.name))

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
            self.plane.check_samples(sample_count(request.inputs))  # before decoding
            x, encoding = tensor_to_sequences(request.inputs, model.n_features)  # [B, T, F]
            prediction = await self.plane.predict(model, x, request.states, client_limit=limit, tenant=TENANT.get())
            return predict_response(prediction, encoding)

        return await self._unary("Predict", context, work, request)

    async def GetSessionState(self, request: pb.SessionRequest,
                              context: grpc.aio.ServicerContext) -> pb.SessionState:
        async def work() -> pb.SessionState:
            return session_state(await self.plane.session_state(request.session_id, TENANT.get()))

        return await self._unary("GetSessionState", context, work, request)

    async def DeleteSession(self, request: pb.SessionRequest,
                            context: grpc.aio.ServicerContext) -> pb.SessionState:
        async def work() -> pb.SessionState:
            return session_state(await self.plane.delete_session(request.session_id, TENANT.get()))

        return await self._unary("DeleteSession", context, work, request)

    async def _unary(self, method: str, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]],
                     request: object) -> T:
        return await run_unary(method, context, work, self.metrics, request=request, faults=self._faults)


def _kv(event: str, **fields: object) -> str:
    """``event=... k=v ...``; values with spaces or quotes are quoted."""
    parts = [f"event={event}"]
    for k, v in fields.items():
        text = str(v)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{k}={text}")
    return " ".join(parts)
