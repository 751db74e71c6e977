"""Finite samples a model cannot answer finitely are refused, on every path, and change nothing.

Two small models whose float32 arithmetic overflows for some finite inputs
(tests/_models.py, no tensorflow): ``big`` (1 feature) multiplies its answer
by 3e38, so an input of -1e6 answers +inf; ``tiny`` (3 features) divides its
inputs by 1e-30, so 1e9 turns its state into NaN. Before, both were answered
(+inf, NaN) and ``tiny``'s session answered NaN for ever after. Now each path
refuses them with INVALID_ARGUMENT naming the sample, and the session's next
answer equals a stream that never saw them, bit for bit: the local Stream
(scalar, row, chunk), Model.predict, and over a real server eddy.v1 Stream
(step, chunk, large chunk through the lane, a batch of several sessions),
Predict, Fleet, and OIP ModelInfer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from _models import make_onnx_rnn
from _serving import served
from _store import Valkey, valkey

import eddy.runtime as runtime
from eddy.runtime.client import Client
from eddy.runtime.core.errors import EddyError, InvalidInput
from eddy.runtime.core.manifest import Normalization
from eddy.runtime.grpc.oip import OIP_SERVICE
from eddy.runtime.serving.dataplane import DataPlane
from eddy.runtime.serving.repository import ModelRepository
from eddy.v1 import oip_pb2 as oip

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy's, on the bad inputs

GOOD = {"big": np.array([[1.0], [2.0], [-3.0]], np.float32), "tiny": np.array([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]],
                                                                              np.float32)}
BAD = {"big": np.array([[-1e6]], np.float32), "tiny": np.array([[1e9, 1e9, 1e9]], np.float32)}
NEXT = {"big": np.array([[4.0], [5.0]], np.float32), "tiny": np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]],
                                                                         np.float32)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("overflowing")
    make_onnx_rnn(root / "big" / "1", features=1, name="big", normalization=Normalization([0.0], [1.0], [0.0], [3e38]))
    make_onnx_rnn(root / "tiny" / "1", features=3, name="tiny",
                  normalization=Normalization([0.0] * 3, [1e-30] * 3, [0.0], [1.0]))
    return root


@pytest.fixture(scope="module")
def models(repo) -> dict[str, runtime.Model]:
    return {name: runtime.load(repo / name / "1") for name in ("big", "tiny")}


def _reference(model: runtime.Model, name: str) -> np.ndarray:
    s = model.stream()
    s.push(GOOD[name])
    return s.push(NEXT[name])


def _chunk(name: str) -> np.ndarray:
    """Good samples around the bad one: the refusal takes the whole message."""
    return np.concatenate([NEXT[name][:1], BAD[name], NEXT[name][:1]])


@pytest.mark.parametrize("name", ["big", "tiny"])
def test_the_local_stream_refuses_and_stays_where_it_was(models, name):
    model, s = models[name], models[name].stream()
    s.push(GOOD[name])
    bad_ones = [BAD[name], _chunk(name)] + ([float(BAD[name][0, 0])] if name == "big" else [])  # scalar, row, chunk
    for bad in bad_ones:
        with pytest.raises(InvalidInput, match="cannot answer these samples in float32"):
            s.push(bad)
    assert s.position == len(GOOD[name])
    assert np.array_equal(s.push(NEXT[name]), _reference(model, name))
    with pytest.raises(InvalidInput, match="sequence 1: the model cannot answer"):
        model.predict(np.stack([GOOD[name][:1], BAD[name]]))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[Valkey]:
    with valkey(tmp_path_factory.mktemp("valkey")) as v:
        yield v


@pytest.mark.parametrize("name, store_kind", [("big", "memory"), ("tiny", "memory"), ("tiny", "valkey")])
def test_every_served_path_refuses_and_the_session_goes_on_exactly(repo, models, name, store_kind, request):
    """Valkey: nothing of a refused step is written to the store either (durable paths write before answering)."""
    want = _reference(models[name], name)
    lane = np.repeat(_chunk(name), 2000, axis=0)  # past the batcher's offload size: the lane's own thread
    config = {"session_store": request.getfixturevalue("store").url} if store_kind == "valkey" else {}
    with served(repo, **config) as s, Client(s.address) as c:
        for i, bad in enumerate([BAD[name], _chunk(name), lane]):
            with c.stream(name, session_id=f"{name}-{i}") as rs:
                rs.push(GOOD[name])
                with pytest.raises(EddyError) as e:
                    rs.push(bad)
                assert e.value.code == "INVALID_ARGUMENT" and "cannot answer these samples" in e.value.message
                assert rs.position == len(GOOD[name])
                assert np.array_equal(rs.push(NEXT[name]), want)  # in-band: the same stream goes on
        with pytest.raises(EddyError) as e:
            c.predict(name, np.stack([GOOD[name][:1], BAD[name]]))
        assert e.value.code == "INVALID_ARGUMENT" and "sequence 1" in e.value.message
        fleet = c.fleet(name)
        fleet.push(["f-0", "f-1"], np.stack([GOOD[name], GOOD[name]]))
        result = fleet.push(["f-0", "f-1"], np.stack([NEXT[name][:1], BAD[name]]))  # one entry refused
        assert list(result.errors) == [1] and result.errors[1].code == "INVALID_ARGUMENT"
        assert np.isnan(result.y[1]).all() and np.isfinite(result.y[0]).all()
        fleet.close()
        with c.stream(name, session_id="f-1", resume=True) as rs:
            assert rs.position == len(GOOD[name])
            assert np.array_equal(rs.push(NEXT[name]), want)
        with grpc.insecure_channel(s.address) as channel:
            infer = channel.unary_unary(f"/{OIP_SERVICE}/ModelInfer",
                                        request_serializer=oip.ModelInferRequest.SerializeToString,
                                        response_deserializer=oip.ModelInferResponse.FromString)
            x = BAD[name]
            request = oip.ModelInferRequest(
                model_name=name, raw_input_contents=[x.tobytes()],
                inputs=[oip.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)],
                parameters={"sequence_id": oip.InferParameter(string_param=f"{name}-0")})
            with pytest.raises(grpc.RpcError) as ge:
                infer(request, timeout=10)
            assert ge.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with Client(s.address) as c2:
            assert c2.session_state(f"{name}-0").position == len(GOOD[name]) + len(NEXT[name])


@pytest.mark.parametrize("name", ["big", "tiny"])
def test_a_batch_refuses_only_the_sessions_it_cannot_answer(repo, models, name):
    """Several sessions' steps in one onnxruntime call: the bad one is refused, the others are answered."""
    async def run() -> list[object]:
        plane = DataPlane(ModelRepository(repo))
        plane.start()
        try:
            sessions = [(await plane.open_session(name, session_id=f"b{i}"))[0] for i in range(4)]
            for s in sessions:
                await plane.push(s, GOOD[name])
            steps = [NEXT[name][:1]] * 4
            steps[2] = BAD[name]
            results = await asyncio.gather(*(plane.push(s, x, alone=False) for s, x in zip(sessions, steps)),
                                           return_exceptions=True)
            assert plane.batcher.recent_batch_sizes[-1] == 4  # one call for the four
            positions = [s.position for s in sessions]
            return [*results, positions]
        finally:
            await plane.close()

    *results, positions = asyncio.run(run())
    assert isinstance(results[2], InvalidInput) and "cannot answer" in results[2].message
    s = models[name].stream()
    s.push(GOOD[name])
    want = s.push(NEXT[name][:1])
    assert all(np.array_equal(results[i], want) for i in (0, 1, 3))
    assert positions == [len(GOOD[name]) + 1] * 2 + [len(GOOD[name])] + [len(GOOD[name]) + 1]
