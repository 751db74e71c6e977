"""``inference.GRPCInferenceService`` on a grpc.aio server: handlers, the RPCs eddy does not serve, reflection.

:func:`add_oip_to_server` registers an :class:`~eddy.runtime.grpc.oip.OipServicer`'s
RPCs under ``/inference.GRPCInferenceService/<Method>``, and answers the
protocol's other RPCs (model load/unload, shared memory, trace and log
settings) with UNIMPLEMENTED and the reason, counted in ``eddy_rpcs_total``
like any other RPC.

Reflection. eddy's OIP messages live in its own proto package
(``eddy.v1.oip``) so that they load next to tritonclient's ``inference.*``
in one process, and ``oip.proto`` declares no service (a generated stub would
use that package's name on the wire). :func:`reflection_pool` therefore
builds, in a descriptor pool of its own (never the default one, so nothing
can clash with tritonclient's files), a small file declaring the service
``inference.GRPCInferenceService`` with the served methods over eddy's
messages, next to copies of the other services' files. Reflection clients
(grpcurl) then list the service under its wire name and can call it: the
messages' field numbers and types are the protocol's, only their package
name differs from Triton's.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

from eddy.v1 import oip_pb2 as pb

from .oip import OIP_SERVICE, OipServicer
from .wire import safe_parser

__all__ = ["NOT_SERVED", "UNARY", "add_oip_to_server", "reflection_pool"]

UNARY = {  # served unary method -> (request type, response type)
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelConfig": (pb.ModelConfigRequest, pb.ModelConfigResponse),
    "ModelStatistics": (pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}
_MODELS = "eddy serves the versions under --models (rescanned with --poll-models); it does not load or unload on request"
_SHM = "eddy takes tensors in the request (raw_input_contents or contents); it has no shared-memory regions"
NOT_SERVED = {  # protocol RPC -> why eddy answers it UNIMPLEMENTED
    "RepositoryModelLoad": _MODELS, "RepositoryModelUnload": _MODELS,
    "SystemSharedMemoryStatus": _SHM, "SystemSharedMemoryRegister": _SHM, "SystemSharedMemoryUnregister": _SHM,
    "CudaSharedMemoryStatus": _SHM, "CudaSharedMemoryRegister": _SHM, "CudaSharedMemoryUnregister": _SHM,
    "TraceSetting": "eddy has no request tracing; see its metrics (--metrics-port) and logs",
    "LogSettings": "eddy's logging is set when it starts (Python logging); it cannot be changed over the protocol",
}


def _serialize(message: Any) -> bytes:
    """Responses are messages, or already serialized on the inference hot path."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def _not_served(servicer: OipServicer, method: str) -> Any:
    reason = f"{OIP_SERVICE}/{method} is not implemented by eddy: {NOT_SERVED[method]}"

    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> None:
        servicer.metrics.rpc(method, grpc.StatusCode.UNIMPLEMENTED.name)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, reason)

    return refuse


def add_oip_to_server(servicer: OipServicer, server: grpc.aio.Server) -> None:
    """Register ``servicer``'s RPCs under ``/inference.GRPCInferenceService/<Method>`` (and refuse the rest)."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name), request_deserializer=req.FromString,
                                                  response_serializer=_serialize)
        for name, (req, _resp) in UNARY.items()
    }
    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(  # parses to a Malformed marker, never raises
        servicer.ModelStreamInfer, request_deserializer=safe_parser(pb.ModelInferRequest, "inference.ModelInferRequest"),
        response_serializer=_serialize)
    for name in NOT_SERVED:  # the request is never parsed: whatever it holds, the answer is the same
        handlers[name] = grpc.unary_unary_rpc_method_handler(_not_served(servicer, name),
                                                             request_deserializer=bytes)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(OIP_SERVICE, handlers),))
    if hasattr(server, "add_registered_method_handlers"):  # grpcio >= 1.65: no per-call lookup by name
        server.add_registered_method_handlers(OIP_SERVICE, handlers)


def _oip_service_file() -> descriptor_pb2.FileDescriptorProto:
    """``service GRPCInferenceService`` in package ``inference`` over eddy's messages (the served methods)."""
    package, service = OIP_SERVICE.rsplit(".", 1)
    f = descriptor_pb2.FileDescriptorProto(name="eddy/v1/oip_service_reflection.proto", package=package,
                                           syntax="proto3", dependency=[pb.DESCRIPTOR.name])
    s = f.service.add(name=service)
    for name, (req, resp) in UNARY.items():
        s.method.add(name=name, input_type="." + req.DESCRIPTOR.full_name, output_type="." + resp.DESCRIPTOR.full_name)
    s.method.add(name="ModelStreamInfer", input_type="." + pb.ModelInferRequest.DESCRIPTOR.full_name,
                 output_type="." + pb.ModelStreamInferResponse.DESCRIPTOR.full_name, client_streaming=True,
                 server_streaming=True)
    return f


def reflection_pool(services: list[str]) -> descriptor_pool.DescriptorPool:
    """A private pool holding ``services``' files (from the default pool) and the OIP service file."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dep in file.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
        added.add(file.name)

    default = descriptor_pool.Default()
    for name in services:
        if name != OIP_SERVICE:
            add(default.FindServiceByName(name).file)
    add(pb.DESCRIPTOR)
    pool.Add(_oip_service_file())
    return pool
