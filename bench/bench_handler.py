"""Python work per served one-sample message, without gRPC (the lean serving path: goal <= 40 us).

Drives :class:`~eddy.runtime.grpc.stream_handler.StreamHandler` over a real
:class:`~eddy.runtime.serving.dataplane.DataPlane` (the committed default
model) with already-parsed ``StreamRequest`` messages, as the servicer does
after grpc has deserialised them, and prints medians of interleaved repeats
(us per message) for each part of the path next to the whole:

- ``handler``: decode, validate, push (batcher inline, one stream), answer;
- ``+ serialize``: the same plus the request parse and response serialisation grpc does;
- ``model push``: ``DataPlane.push`` alone on a decoded sample (the model's share);
- ``decode`` / ``answer``: the sample decoder (``one_raw_sample``, else ``tensor_to_samples``) and the
  response's construction (``array_to_tensor`` in a ``StreamResponse``) alone;
- ``oip infer``: the Open Inference Protocol's request path (``OipServicer.infer``: sequence parameters,
  decode, the sequence's session resumed and released, push, serialized answer) on parsed
  ``ModelInferRequest`` messages of one sequence, and ``+ parse`` with grpc's parse;
- ``model._run_step``: the step graph's call at batch 1 with the model's normalisation, nothing else.

Run: ``.venv/bin/python bench/bench_handler.py [--n 20000] [--repeats 7] [--models DIR]`` (e.g. the
LSTM 64->256 of ``bench_triton.py``: ``--models $TMPDIR/eddy-bench-triton/models``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from eddy.runtime.grpc.oip import OipServicer
from eddy.runtime.grpc.stream_handler import StreamHandler
from eddy.runtime.grpc.tensors import array_to_tensor, one_raw_sample, tensor_to_samples
from eddy.runtime.serving.dataplane import DataPlane
from eddy.runtime.serving.repository import ModelRepository
from eddy.v1 import inference_pb2 as pb
from eddy.v1 import oip_pb2

MODELS = Path(__file__).resolve().parent.parent / "models"


async def _main(n: int, repeats: int, models: Path) -> None:
    plane = DataPlane(ModelRepository(models))
    plane.start()
    name = plane.repository.names()[0]
    h = StreamHandler(plane)
    await h.handle(pb.StreamRequest(open=pb.OpenStream(model=name)))
    session = h.session
    assert session is not None
    f = session.model.n_features
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((n, f)).astype(np.float32)
    requests = [pb.StreamRequest(samples=array_to_tensor(x[None])) for x in xs]
    wire = [r.SerializeToString() for r in requests]
    decoded = [tensor_to_samples(r.samples, f)[0] for r in requests]
    ys = [np.zeros((1, session.model.n_targets), np.float32)] * n
    parse, handle, push = pb.StreamRequest.FromString, h.handle, plane.push

    async def handler() -> None:
        for r in requests:
            await handle(r)

    async def serialized() -> None:
        for b in wire:
            (await handle(parse(b))).SerializeToString()

    async def model_push() -> None:
        for x in decoded:
            await push(session, x)

    async def decode() -> None:
        for r in requests:
            if one_raw_sample(r.samples, f) is None:
                tensor_to_samples(r.samples, f)

    async def answer() -> None:
        for y in ys:
            pb.StreamResponse(predictions=pb.Predictions(offset=1, outputs=array_to_tensor(y, "raw")))

    oip = OipServicer(plane)
    infers = [_infer_request(name, x, i) for i, x in enumerate(xs)]
    infer_wire = [r.SerializeToString() for r in infers]
    await oip.infer(infers[0])  # sequence 7 starts; the measured requests continue it
    model, state = session.model, session.model.zero_state(1)

    async def oip_infer() -> None:
        for r in infers[1:]:
            await oip.infer(r)

    async def oip_parsed() -> None:
        for b in infer_wire[1:]:
            await oip.infer(oip_pb2.ModelInferRequest.FromString(b))

    async def run_step() -> None:
        for x in decoded:
            model._run_step(x, state)

    cases = {"handler": handler, "+ serialize": serialized, "model push": model_push, "decode": decode,
             "answer": answer, "oip infer": oip_infer, "+ parse": oip_parsed, "model._run_step": run_step}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):  # interleaved: load from other processes hits every case alike
        for k, fn in cases.items():
            t0 = time.process_time()  # CPU time: robust to other load on a shared machine
            await fn()
            times[k].append((time.process_time() - t0) / n * 1e6)
    print(f"model {name}/{session.model.version}, {n} one-sample messages x {repeats} repeats, median CPU us/message")
    for k, v in times.items():
        print(f"  {k:<12} {statistics.median(v):7.1f}   (min {min(v):.1f})")
    await h.release()
    await plane.close()


def _infer_request(model: str, x: np.ndarray, i: int) -> oip_pb2.ModelInferRequest:
    """Step ``i`` of sequence 7 as tritonclient sends it: ``x[1, F]`` in ``raw_input_contents``."""
    r = oip_pb2.ModelInferRequest(model_name=model, id=str(i), raw_input_contents=[x[None].tobytes()], inputs=[
        oip_pb2.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, len(x)])])
    r.parameters["sequence_id"].int64_param = 7
    r.parameters["sequence_start"].bool_param = i == 0
    r.parameters["sequence_end"].bool_param = False
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000, help="messages per repeat (default 20000)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved repeats (default 7)")
    p.add_argument("--models", type=Path, default=MODELS, help="model repository; its first model is used "
                   "(default: the committed models/)")
    a = p.parse_args()
    asyncio.run(_main(a.n, a.repeats, a.models))


if __name__ == "__main__":
    main()
