"""The eddy.v1 ``Inference`` service on grpc.aio: translate and delegate.

Protocol logic lives in :mod:`runtime.streams`, wire conversions in
:mod:`runtime.converters`, models in :mod:`runtime.repository`. This module
only maps them onto RPCs and errors onto status codes: an
:class:`~runtime.errors.EddyError` becomes its own status with its message;
anything else becomes INTERNAL with a generic message and the traceback in
the log (never a library's raw message).
"""

from __future__ import annotations

import logging
from functools import partial
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from .converters import list_models_response, model_metadata, status_code
from .errors import EddyError
from .proto.eddy.v1 import inference_pb2 as pb
from .proto.eddy.v1 import inference_pb2_grpc as pb_grpc
from .repository import ModelRepository
from .streams import StreamHandler

__all__ = ["InferenceServicer", "SERVICE_NAME"]

log = logging.getLogger("eddy.servicer")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Inference"].full_name  # "eddy.v1.Inference"

T = TypeVar("T")


class InferenceServicer(pb_grpc.InferenceServicer):
    """Serves every model of a :class:`ModelRepository`."""

    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    async def Stream(
        self, request_iterator: AsyncIterator[pb.StreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamResponse]:
        handler = StreamHandler(self.repository)
        try:
            async for request in request_iterator:
                yield await _call(context, "Stream", partial(handler.handle_async, request))
        finally:
            log.info("%s", handler.summary())

    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        async def build() -> pb.ListModelsResponse:
            return list_models_response(self.repository.list())

        return await _call(context, "ListModels", build)

    async def GetModelMetadata(self, request: pb.ModelMetadataRequest,
                               context: grpc.aio.ServicerContext) -> pb.ModelMetadata:
        async def build() -> pb.ModelMetadata:
            version = self.repository.resolve(request.model, request.version)
            model = self.repository.get(request.model, version)
            return model_metadata(request.model, version, model, self.repository.list()[request.model])

        return await _call(context, "GetModelMetadata", build)


async def _call(context: grpc.aio.ServicerContext, rpc: str, work: Callable[[], Awaitable[T]]) -> T:
    """Await ``work``; abort the RPC with the right status if it raises."""
    try:
        return await work()
    except EddyError as e:
        code, message = status_code(e), e.message
    except Exception:
        log.exception("%s failed", rpc)
        code, message = grpc.StatusCode.INTERNAL, "internal error; see the server log"
    await context.abort(code, message)  # raises
    raise RuntimeError("context.abort returned")  # pragma: no cover
