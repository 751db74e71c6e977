"""A bare grpc.aio server with eddy's wire contract and no model: the transport ceiling.

It implements ``eddy.v1.Inference/Stream`` the way ``eddy serve`` does (one
async-generator servicer, ``async for`` over the requests, one response per
request) but answers ``open`` with a fixed ``StreamOpened`` and each
``samples`` message ``[n, F]`` with a ``Predictions`` of shape ``[n, O]`` in
the same encoding, without decoding, validating or running anything. What is
left is gRPC + protobuf on the same message shapes: the most any Python
eddy server on this stack can deliver. Used by ``bench_serving.py``::

    python bench/echo_server.py --port 0 --outputs 1
    # prints: echo: serving on 127.0.0.1:PORT   (stops on SIGINT/SIGTERM)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator

import grpc

from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc


class EchoServicer(pb_grpc.InferenceServicer):
    """``Stream`` only: every ``samples`` message gets ``outputs`` shaped ``[n, O]``."""

    def __init__(self, n_outputs: int) -> None:
        self.n_outputs = n_outputs

    async def Stream(self, request_iterator: AsyncIterator[pb.StreamRequest],
                     context: grpc.aio.ServicerContext) -> AsyncIterator[pb.StreamResponse]:
        offset = 0
        o = self.n_outputs
        async for request in request_iterator:
            if request.WhichOneof("kind") == "open":
                yield pb.StreamResponse(opened=pb.StreamOpened(
                    model=request.open.model, version=1, features=["x"], targets=[f"y{i}" for i in range(o)]))
                continue
            t = request.samples
            n = int(t.shape[0]) if t.shape else 1
            if t.raw:  # same encoding back; F == O reuses the request's bytes
                raw = t.raw if len(t.raw) == 4 * n * o else bytes(4 * n * o)
                out = pb.Tensor(shape=[n, o], raw=raw)
            else:
                out = pb.Tensor(shape=[n, o], values=[0.0] * (n * o))
            yield pb.StreamResponse(predictions=pb.Predictions(offset=offset, outputs=out))
            offset += n


async def _serve(host: str, port: int, n_outputs: int) -> int:
    server = grpc.aio.server()
    pb_grpc.add_InferenceServicer_to_server(EchoServicer(n_outputs), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        print(f"echo: cannot listen on {host}:{port}", file=sys.stderr)
        return 1
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"echo: serving on {host}:{bound}", flush=True)
    await stop.wait()
    await server.stop(1.0)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default: 0)")
    p.add_argument("--outputs", type=int, default=1, help="O, values per answered sample (default: 1)")
    args = p.parse_args()
    return asyncio.run(_serve(args.host, args.port, args.outputs))


if __name__ == "__main__":
    sys.exit(main())
