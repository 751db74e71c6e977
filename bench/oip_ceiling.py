"""The ceiling: a minimal grpc.aio Open Inference Protocol server that computes nothing.

Not part of eddy (``bench/bench_triton.py`` starts it as a third server).
It answers ``ModelInfer`` and ``ModelStreamInfer`` under
``inference.GRPCInferenceService`` with a constant output of the right shape
(``y`` FP32 ``[1, 1]``, carrying the request's ``id``): the requests are
parsed (any server must) and the answers are pre-serialized bytes, so what is
left is grpc.aio's own cost per call on this machine. ``ServerReady``,
``ServerMetadata``, ``ModelMetadata`` and ``ModelConfig`` (a sequence model
with ``--features`` inputs, the shapes eddy reports) let tritonclient and
perf_analyzer drive it; it keeps no statistics (and does not list them). Driven by the same load
generator as eddy and Triton, its steps/s bound what any Python grpc.aio
server can answer here; eddy's fraction of it is its overhead.

``--batched``: each unary request waits for its answer from one task that answers every request pending after
one event-loop turn, as a server that batches steps of different requests must (the handler suspends and is
resumed); still nothing is computed. Its cost over the plain ceiling is what batching unary calls costs in
grpc.aio itself.

    python bench/oip_ceiling.py --port 8001 [--batched]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import grpc
import numpy as np

from eddy.v1 import oip_pb2 as pb

SERVICE = "inference.GRPCInferenceService"


def _template(model: str) -> bytes:
    """A ``ModelInferResponse`` without ``id``: ``y`` = [[0.0]] in ``raw_output_contents``."""
    return pb.ModelInferResponse(
        model_name=model, model_version="1",
        outputs=[pb.ModelInferResponse.InferOutputTensor(name="y", datatype="FP32", shape=[1, 1])],
        raw_output_contents=[np.zeros((1, 1), "<f4").tobytes()]).SerializeToString()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def handlers(model: str, features: int = 64, batched: bool = False) -> grpc.GenericRpcHandler:
    template = _template(model)
    pending: list[tuple[asyncio.Future[bytes], pb.ModelInferRequest]] = []

    def answer(request: pb.ModelInferRequest) -> bytes:
        if not request.id:
            return template
        rid = request.id.encode()
        return template + b"\x1a" + _varint(len(rid)) + rid  # field 3 (id): fields may come in any order

    async def ready(request: pb.ServerReadyRequest, context: object) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    async def infer(request: pb.ModelInferRequest, context: object) -> bytes:
        if not batched:
            return answer(request)
        future = asyncio.get_running_loop().create_future()
        pending.append((future, request))
        if len(pending) == 1:
            asyncio.get_running_loop().create_task(answer_pending())
        return await future

    async def answer_pending() -> None:
        await asyncio.sleep(0)  # one loop turn: the requests grpc hands over meanwhile join
        batch = pending[:]
        pending.clear()
        for future, request in batch:
            if not future.done():
                future.set_result(answer(request))

    async def stream(requests: AsyncIterator[pb.ModelInferRequest], context: object) -> AsyncIterator[bytes]:
        async for request in requests:
            body = answer(request)
            yield b"\x12" + _varint(len(body)) + body  # ModelStreamInferResponse.infer_response (field 2)

    def same(b: bytes) -> bytes:
        return b

    def constant(request_type: type, answer: object) -> grpc.RpcMethodHandler:
        async def handler(request: object, context: object) -> object:
            return answer

        return grpc.unary_unary_rpc_method_handler(handler, request_deserializer=request_type.FromString,
                                                   response_serializer=type(answer).SerializeToString)

    tensor = pb.ModelMetadataResponse.TensorMetadata
    return grpc.method_handlers_generic_handler(SERVICE, {
        "ServerReady": grpc.unary_unary_rpc_method_handler(
            ready, request_deserializer=pb.ServerReadyRequest.FromString,
            response_serializer=pb.ServerReadyResponse.SerializeToString),
        "ServerMetadata": constant(pb.ServerMetadataRequest, pb.ServerMetadataResponse(
            name="ceiling", version="0", extensions=["model_configuration", "sequence"])),
        "ModelMetadata": constant(pb.ModelMetadataRequest, pb.ModelMetadataResponse(
            name=model, versions=["1"], platform="ceiling", inputs=[tensor(name="x", datatype="FP32",
                                                                           shape=[-1, features])],
            outputs=[tensor(name="y", datatype="FP32", shape=[-1, 1])])),
        "ModelConfig": constant(pb.ModelConfigRequest, pb.ModelConfigResponse(config=pb.ModelConfig(
            name=model, platform="ceiling", max_batch_size=256,
            input=[pb.ModelInput(name="x", data_type=pb.TYPE_FP32, dims=[features])],
            output=[pb.ModelOutput(name="y", data_type=pb.TYPE_FP32, dims=[1])],
            sequence_batching=pb.ModelSequenceBatching()))),
        "ModelInfer": grpc.unary_unary_rpc_method_handler(
            infer, request_deserializer=pb.ModelInferRequest.FromString, response_serializer=same),
        "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
            stream, request_deserializer=pb.ModelInferRequest.FromString, response_serializer=same),
    })


class _PassThrough(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation, details):  # type: ignore[no-untyped-def]
        return await continuation(details)


async def main(port: int, model: str, features: int, interceptor: bool = False, batched: bool = False) -> None:
    server = grpc.aio.server(interceptors=[_PassThrough()] if interceptor else None)
    server.add_generic_rpc_handlers((handlers(model, features, batched),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", default="lstm")
    p.add_argument("--features", type=int, default=64, help="input width its ModelConfig reports (default 64)")
    p.add_argument("--interceptor", action="store_true", help="with a pass-through server interceptor (what one costs)")
    p.add_argument("--batched", action="store_true", help="unary answers from one task per loop turn (what batching "
                   "requests costs)")
    a = p.parse_args()
    asyncio.run(main(a.port, a.model, a.features, a.interceptor, a.batched))
