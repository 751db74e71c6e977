"""Batching on, served predictions are bit-identical to the in-process stream with the same chunks.

Many concurrent sessions through a real server (grpc.aio on a free loopback
port), each pushing its own series in random chunk sizes, one message in
flight per stream: single samples batch across sessions (the step graph is
row-for-row batch-invariant), chunks run alone at batch 1 (the recurrent
sequence ops are not). Every prediction is compared with ``np.array_equal``.
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
from _serving import reference, served
from conftest import MODEL

import eddy.runtime as runtime
from eddy.runtime.grpc.tensors import array_to_tensor, tensor_to_samples
from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc

SESSIONS = 48
CHUNK_SIZES = [1, 1, 1, 1, 1, 2, 3, 7, 16]  # mostly single samples, so batches form around the chunks


def test_concurrent_random_chunks_are_bit_identical_to_local_streams(models_dir, series):
    model = runtime.load(models_dir / MODEL)
    rng = np.random.default_rng(7)
    plans = []  # per session: its chunks, [n, 1] raw
    for i in range(SESSIONS):
        xs = series[rng.integers(0, 200):][:80] * np.float32(1 + i / 50)  # distinct per session
        cuts, pos = [], 0
        while pos < len(xs):
            pos += int(rng.choice(CHUNK_SIZES))
            cuts.append(min(pos, len(xs)))
        plans.append(np.split(xs, cuts[:-1]))

    async def one(stub: pb_grpc.InferenceStub, i: int) -> list[np.ndarray]:
        call = stub.Stream()
        await call.write(pb.StreamRequest(open=pb.OpenStream(model=MODEL, session_id=f"exact{i}")))
        assert (await call.read()).WhichOneof("kind") == "opened"
        ys = []
        for chunk in plans[i]:
            await call.write(pb.StreamRequest(samples=array_to_tensor(chunk)))
            ys.append(tensor_to_samples((await call.read()).predictions.outputs, model.n_targets)[0])
        await call.done_writing()
        return ys

    async def main(address: str) -> list[list[np.ndarray]]:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.InferenceStub(channel)
            return await asyncio.gather(*(one(stub, i) for i in range(SESSIONS)))

    with served(models_dir, batching=True) as live:
        got = asyncio.run(main(live.address))
        sizes = list(live.server.plane.batcher.recent_batch_sizes)
    for chunks, ys in zip(plans, got):
        want = reference(model, chunks)
        bad = [(j, len(w), float(np.abs(g - w).max())) for j, (g, w) in enumerate(zip(ys, want, strict=True))
               if not np.array_equal(g, w)]
        assert not bad, bad
    assert max(sizes) > 1  # single samples of different sessions did share calls
