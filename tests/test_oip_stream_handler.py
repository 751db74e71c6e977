"""The OIP ModelStreamInfer protocol driven without a socket: OipStreamHandler over a real DataPlane and model."""

from __future__ import annotations

import asyncio

import numpy as np
from conftest import MODEL

from eddy.runtime.grpc.oip import OipServicer
from eddy.runtime.grpc.oip_stream import OipStreamHandler
from eddy.runtime.serving.dataplane import DataPlane
from eddy.runtime.serving.repository import ModelRepository
from eddy.v1 import oip_pb2 as pb


def _request(x: np.ndarray, sid: object, rid: str, *, start: bool = False) -> pb.ModelInferRequest:
    inp = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)
    key = "int64_param" if isinstance(sid, int) else "string_param"
    params = {"sequence_id": pb.InferParameter(**{key: sid}), "sequence_start": pb.InferParameter(bool_param=start)}
    return pb.ModelInferRequest(model_name=MODEL, id=rid, inputs=[inp], parameters=params,
                                raw_input_contents=[x.astype("<f4").tobytes()])


def _parse(answer: object) -> pb.ModelStreamInferResponse:
    return pb.ModelStreamInferResponse.FromString(answer) if isinstance(answer, bytes) else answer


def test_sequences_run_in_order_concurrently_and_refusals_come_back_in_band(models_dir, model, series):
    async def run() -> tuple[dict[str, pb.ModelStreamInferResponse], OipStreamHandler, int]:
        plane = DataPlane(ModelRepository(models_dir))
        handler = OipStreamHandler(OipServicer(plane).infer)
        try:
            for i in range(6):  # two sequences interleaved, each request one chunk
                await handler.submit(_request(series[2 * i:2 * i + 2], "a", f"a{i}", start=i == 0))
                await handler.submit(_request(series[3 * i:3 * i + 3], 7, f"b{i}", start=i == 0))
            await handler.submit(_request(series[:1], -3, "negative"))  # one parser: refused, in-band
            await handler.submit(_request(series[:1], 0, "zero"))  # id 0: no sequence (stateless), as everywhere
            handler.end_input()
            answers = {(r := _parse(a)).infer_response.id: r async for a in handler.answers()}
            return answers, handler, plane.sessions.get("7").position
        finally:
            await handler.close()
            await plane.close()

    answers, handler, position_b = asyncio.run(run())
    a_ref, b_ref = model.stream(), model.stream()
    for i in range(6):
        for rid, ref, x in ((f"a{i}", a_ref, series[2 * i:2 * i + 2]), (f"b{i}", b_ref, series[3 * i:3 * i + 3])):
            r = answers[rid]
            assert not r.error_message, r.error_message
            assert np.array_equal(np.frombuffer(r.infer_response.raw_output_contents[0], "<f4").reshape(-1, 1),
                                  ref.push(x))
    assert answers["negative"].error_message == "sequence_id must not be negative, got -3"
    assert not answers["zero"].error_message
    assert np.array_equal(np.frombuffer(answers["zero"].infer_response.raw_output_contents[0], "<f4"),
                          model.stream().push(series[:1]).ravel())
    assert position_b == 18 and handler.requests == 14 and handler.rejected == 1 and handler.running == 0


def test_a_stream_holds_a_bounded_amount_until_its_answers_are_taken(models_dir, series):
    async def run() -> None:
        plane = DataPlane(ModelRepository(models_dir))
        x = np.full((256, 1), 50.0, np.float32)  # ~1 KiB requests and answers
        handler = OipStreamHandler(OipServicer(plane).infer, max_bytes=8 * 1024, max_held=100)
        try:
            submitted = 0

            async def submit_all() -> None:
                nonlocal submitted
                for i in range(20):
                    await handler.submit(_request(x, f"s{i}", f"r{i}", start=True))
                    submitted += 1

            feeder = asyncio.get_running_loop().create_task(submit_all())
            while not (handler.held().full and handler.running == 0):  # everything it took is computed
                await asyncio.sleep(0)
            held = handler.held()
            assert 0 < submitted < 20 and held.messages == submitted and held.bytes <= 8 * 1024, (submitted, held)
            before = submitted
            await anext(handler.answers())  # one answer taken (handed to gRPC): room for another request
            while submitted == before:
                await asyncio.sleep(0)
            assert handler.held().peak_bytes <= 8 * 1024
            feeder.cancel()
        finally:
            await handler.close()
            await plane.close()

    asyncio.run(run())
