"""The eddy.v1 ``Inference`` service on grpc.aio: translate and delegate.

Protocol logic lives in :mod:`runtime.streams`, sessions, batching and
limits in :mod:`runtime.dataplane`, wire conversions in
:mod:`runtime.converters`. This module maps them onto RPCs, errors onto
status codes, and records metrics and one log line per stream open/close:
an :class:`~runtime.errors.EddyError` becomes its own status with its
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

from ..core.errors import EddyError
from ..serving.dataplane import DataPlane
from ..serving.metrics import Metrics
from .codecs import list_models_response, model_metadata, status_code
from .stream_handler import StreamHandler

__all__ = ["InferenceServicer", "SERVICE_NAME"]

log = logging.getLogger("eddy.servicer")
stream_log = logging.getLogger("eddy.streams")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Inference"].full_name  # "eddy.v1.Inference"

T = TypeVar("T")
_CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


class InferenceServicer(pb_grpc.InferenceServicer):
    """Serves every model of a :class:`DataPlane`'s repository."""

    def __init__(self, plane: DataPlane, metrics: Metrics | None = None) -> None:
        self.plane = plane
        self.metrics = metrics or Metrics()

    async def Stream(self, request_iterator: AsyncIterator[pb.StreamRequest],
                     context: grpc.aio.ServicerContext) -> AsyncIterator[pb.StreamResponse]:
        handler, m = StreamHandler(self.plane), self.metrics
        latency = m.latency.labels("Stream")  # labelled children looked up once per stream, not per message
        answered_ok = None  # m.stream_messages child for (model, "OK"), once the stream is open
        code = grpc.StatusCode.OK
        m.open_streams.inc()
        try:
            async for request in request_iterator:
                was_open, t0 = handler.opened, time.perf_counter()
                try:
                    response = await handler.handle(request)
                except Exception as e:
                    code, message = _status(e, "Stream")
                    await context.abort(code, message)
                latency.observe(time.perf_counter() - t0)
                if not was_open:
                    stream_log.info("%s", _kv("stream_open", session=handler.session_id,
                                              model=handler.model_name, version=handler.model_version,
                                              resumed=handler.resumed, position=handler.position))
                else:
                    if response.WhichOneof("kind") == "error":
                        outcome = _CODE_NAMES.get(response.error.code, "UNKNOWN")
                        m.stream_messages.labels(handler.model_name, outcome).inc()
                    else:
                        if answered_ok is None:
                            answered_ok = m.stream_messages.labels(handler.model_name, "OK")
                        answered_ok.inc()
                yield response
                if handler.finished:
                    break
        except asyncio.CancelledError:
            remaining = context.time_remaining()
            code = grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 \
                else grpc.StatusCode.CANCELLED
            raise
        finally:
            handler.release()
            m.open_streams.dec()
            m.rpcs.labels("Stream", code.name).inc()
            stream_log.info("%s", _kv("stream_close", **handler.log_fields(), status=code.name))

    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        async def work() -> pb.ListModelsResponse:
            return list_models_response(self.plane.repository.list())

        return await self._unary("ListModels", context, work)

    async def GetModelMetadata(self, request: pb.ModelMetadataRequest,
                               context: grpc.aio.ServicerContext) -> pb.ModelMetadata:
        async def work() -> pb.ModelMetadata:
            repo = self.plane.repository
            model = repo.get(request.model, request.version)
            return model_metadata(model, repo.versions(model.name))

        return await self._unary("GetModelMetadata", context, work)

    async def Predict(self, request: pb.PredictRequest, context: grpc.aio.ServicerContext) -> pb.PredictResponse:
        return await self._unary("Predict", context, lambda: self.plane.predict(request))

    async def GetSessionState(self, request: pb.SessionRequest,
                              context: grpc.aio.ServicerContext) -> pb.SessionState:
        async def work() -> pb.SessionState:
            return self.plane.session_state(request.session_id)

        return await self._unary("GetSessionState", context, work)

    async def DeleteSession(self, request: pb.SessionRequest,
                            context: grpc.aio.ServicerContext) -> pb.SessionState:
        async def work() -> pb.SessionState:
            return self.plane.delete_session(request.session_id)

        return await self._unary("DeleteSession", context, work)

    async def _unary(self, method: str, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]]) -> T:
        """Await ``work`` and record it; abort the RPC with the right status if it raises."""
        t0 = time.perf_counter()
        try:
            result = await work()
        except Exception as e:
            code, message = _status(e, method)
            self.metrics.rpcs.labels(method, code.name).inc()
            await context.abort(code, message)  # raises
            raise  # pragma: no cover
        self.metrics.latency.labels(method).observe(time.perf_counter() - t0)
        self.metrics.rpcs.labels(method, "OK").inc()
        return result


def _status(error: Exception, rpc: str) -> tuple[grpc.StatusCode, str]:
    """Status and message for an exception; unexpected ones are logged and hidden."""
    if isinstance(error, EddyError):
        return status_code(error), error.message
    log.error("%s failed", rpc, exc_info=error)
    return grpc.StatusCode.INTERNAL, "internal error; see the server log"


def _kv(event: str, **fields: object) -> str:
    """``event=... k=v ...``; values with spaces or quotes are quoted."""
    parts = [f"event={event}"]
    for k, v in fields.items():
        text = str(v)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{k}={text}")
    return " ".join(parts)
