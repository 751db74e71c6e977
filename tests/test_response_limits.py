"""An answer that cannot be delivered is never computed: the session stays where it was.

The server sizes every answer before running the step: past its own
``max_message_bytes`` or the limit the client advertised, the request is
refused with RESOURCE_EXHAUSTED and the session is unchanged.
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from _serving import served
from conftest import MODEL

from eddy.runtime.client import Client
from eddy.runtime.core.errors import ResourceExhausted
from eddy.runtime.grpc.headers import RESPONSE_LIMIT_HEADER
from eddy.runtime.grpc.status import code_name
from eddy.runtime.grpc.stream_handler import StreamHandler
from eddy.runtime.grpc.tensors import array_to_tensor
from eddy.runtime.serving.config import ServeConfig
from eddy.runtime.serving.dataplane import FRAMING_BYTES, DataPlane
from eddy.runtime.serving.repository import ModelRepository
from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc


def _most(limit: int, n_targets: int = 1) -> int:
    """The most samples whose answer fits ``limit`` bytes."""
    return (limit - FRAMING_BYTES) // (4 * n_targets)


def test_server_limit_refuses_before_the_step(models_dir, model, series):
    """Driven without a socket: the data plane's check, with the server's configured limit."""
    limit = 1000

    async def run():
        plane = DataPlane(ModelRepository(models_dir), ServeConfig(max_message_bytes=limit))
        h = StreamHandler(plane)
        await h.handle(pb.StreamRequest(open=pb.OpenStream(model=MODEL)))
        first = await h.handle(pb.StreamRequest(samples=array_to_tensor(series[:5])))
        too_many = series[5:5 + _most(limit) + 1]
        refused = await h.handle(pb.StreamRequest(samples=array_to_tensor(too_many)))
        assert refused.WhichOneof("kind") == "error"
        assert code_name(refused.error.code) == "RESOURCE_EXHAUSTED" and f"at most {_most(limit)}" in \
            refused.error.message
        assert h.position == 5  # nothing was run
        fits = series[5:5 + _most(limit)]
        after = await h.handle(pb.StreamRequest(samples=array_to_tensor(fits)))
        await h.release()
        await plane.close()
        return first, after, fits

    first, after, fits = asyncio.run(run())
    reference = model.stream()
    reference.push(series[:5])
    assert after.predictions.offset == 5
    got = np.frombuffer(after.predictions.outputs.raw, "<f4").reshape(len(fits), -1)
    np.testing.assert_array_equal(got, reference.push(fits))  # the refused message left no trace


def test_predict_past_the_server_limit_is_refused(models_dir, series):
    limit = 16 * 1024
    x = np.repeat(series[None, :1], 100, axis=0)  # [100, 1, 1]: a 400-byte payload, ~250 KB of answer (states)
    with served(models_dir, max_message_bytes=limit) as live, Client(live.address) as client:
        with pytest.raises(ResourceExhausted, match=f"over the {limit}-byte message limit"):
            client.predict(MODEL, x)
        y, states = client.predict(MODEL, x[:5])  # a smaller answer goes through (~2.5 KB of state each)
        assert y.shape == (5, 1, 1) and len(states) == 5


def test_client_limit_is_told_to_the_server(server, model, series):
    """A client receiving less than the server sends: the server refuses first, the stream stays usable."""
    limit = 4096
    n = _most(limit) + 1  # the request (4n bytes + framing) still fits the client's send limit
    x = np.resize(series, (n, 1)).astype(np.float32)
    with Client(server.address, max_message_bytes=limit) as client:
        with client.stream(MODEL) as rs:
            rs.push(series[:3])
            with pytest.raises(ResourceExhausted, match=f"over the {limit}-byte message limit"):
                rs.push(x)
            assert rs.position == 3 and not rs.closed
            reference = model.stream()
            reference.push(series[:3])
            np.testing.assert_array_equal(rs.push(x[:-1]), reference.push(x[:-1]))  # state was unchanged
        with pytest.raises(ResourceExhausted, match=f"over the {limit}-byte message limit"):
            client.predict(MODEL, np.repeat(series[None, :1], 100, axis=0))


def test_a_client_without_a_limit_gets_the_servers():
    with Client("127.0.0.1:1") as client:  # no connection is made
        assert client.max_message_bytes == ServeConfig().max_message_bytes


@pytest.mark.parametrize("value", ["abc", "0", "-5"])
def test_a_malformed_advertised_limit_is_invalid_argument(server, value):
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.InferenceStub(channel)
        call = stub.Stream(iter([pb.StreamRequest(open=pb.OpenStream(model=MODEL))]),
                           metadata=((RESPONSE_LIMIT_HEADER, value),), timeout=10)
        with pytest.raises(grpc.RpcError) as e:
            list(call)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and RESPONSE_LIMIT_HEADER in e.value.details()
        request = pb.PredictRequest(model=MODEL, inputs=array_to_tensor(np.zeros((1, 1, 1), np.float32)))
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request, metadata=((RESPONSE_LIMIT_HEADER, value),), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
