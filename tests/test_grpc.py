"""End to end over a real server on 127.0.0.1:<free port>: client, stub, health, errors."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from _serving import samples_request as _samples
from conftest import MODEL
from grpc_health.v1 import health_pb2, health_pb2_grpc

from eddy.runtime.client import Client
from eddy.runtime.core.errors import EddyError, FailedPrecondition, InvalidInput, NotFound
from eddy.runtime.grpc.servicer import InferenceServicer
from eddy.runtime.grpc.tensors import array_to_tensor
from eddy.runtime.serving.dataplane import DataPlane
from eddy.runtime.serving.repository import ModelRepository
from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc

TOL = 1e-5  # relative to the largest prediction (raw units)


@pytest.fixture()
def client(server):
    with Client(server.address) as c:
        yield c


@pytest.fixture()
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.InferenceStub(channel)


def _assert_close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == np.float32
    assert float(np.abs(a - b).max()) <= TOL * max(1.0, float(np.abs(b).max()))


@pytest.mark.parametrize("encoding", ["raw", "values"])
def test_sample_by_sample_equals_local_stream(client, model, series, local, encoding):
    with client.stream(MODEL, encoding=encoding) as rs:
        assert (rs.features, rs.targets) == (model.features, model.targets)
        remote = np.concatenate([rs.push(x) for x in series])
        assert rs.position == len(series)
    _assert_close(remote, local)


def test_chunked_pushes_equal_local_stream(client, series, local):
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.choice(np.arange(1, len(series)), size=20, replace=False))
    with client.stream(MODEL, version=1) as rs:
        remote = np.concatenate([rs.push(chunk) for chunk in np.split(series, cuts)])
    _assert_close(remote, local)


def test_push_accepts_local_stream_shapes(client, series, local):
    with client.stream(MODEL) as rs:
        assert rs.push(float(series[0, 0])).shape == (1, 1)  # a plain float
        assert rs.push(series[1]).shape == (1, 1)  # [F]
        _assert_close(rs.push(series[2:5]), local[2:5])  # [n, F]


def test_unknown_model_or_version_is_not_found(client):
    with pytest.raises(NotFound, match="served models"):
        client.stream("no-such-model")
    with pytest.raises(NotFound, match="no version 999"):
        client.stream(MODEL, version=999)
    with pytest.raises(InvalidInput, match="version"):
        client.stream(MODEL, version="latest-ish")


@pytest.mark.parametrize("bad, code, words", [
    (_samples(shape=[1, 2], values=[1.0, 2.0]), grpc.StatusCode.INVALID_ARGUMENT, "feature"),
    (_samples(shape=[1, 1], values=[float("nan")]), grpc.StatusCode.INVALID_ARGUMENT, "finite"),
    (_samples(shape=[0, 1]), grpc.StatusCode.INVALID_ARGUMENT, "no samples"),
    (_samples(shape=[2, 1], raw=b"\x00" * 7), grpc.StatusCode.INVALID_ARGUMENT, "7 bytes"),
    (pb.StreamRequest(), grpc.StatusCode.INVALID_ARGUMENT, "neither"),
    (pb.StreamRequest(open=pb.OpenStream(model=MODEL)), grpc.StatusCode.FAILED_PRECONDITION, "already open"),
])
def test_bad_message_answered_in_band_and_state_unchanged(client, series, local, bad, code, words):
    with client.stream(MODEL) as rs:
        _assert_close(rs.push(series[:3]), local[:3])
        response = rs._send_raw(bad)
        assert response.WhichOneof("kind") == "error"
        assert response.error.code == code.value[0] and words in response.error.message
        _assert_close(rs.push(series[3:6]), local[3:6])  # as if the bad message never came
        assert rs.position == 6


def test_client_push_rejects_like_a_local_stream(client, series, local):
    with client.stream(MODEL) as rs:
        rs.push(series[:2])
        with pytest.raises(InvalidInput, match="got 7"):  # checked before sending, same rules as local
            rs.push(np.zeros((1, 7), np.float32))
        with pytest.raises(InvalidInput):
            rs.push(np.float32("nan"))
        _assert_close(rs.push(series[2:4]), local[2:4])


def test_offsets_count_samples(client, series):
    with client.stream(MODEL) as rs:
        offsets = [rs._send_raw(pb.StreamRequest(samples=array_to_tensor(series[i:i + 3]))).predictions.offset
                   for i in (0, 3, 6)]
    assert offsets == [0, 3, 6]


def test_first_message_not_open_is_failed_precondition(stub, series):
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Stream(iter([pb.StreamRequest(samples=array_to_tensor(series[:1]))]), timeout=10))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "must be `open`" in e.value.details()


def test_empty_and_cancelled_streams_do_not_break_the_server(stub, client, series, local):
    assert list(stub.Stream(iter([]), timeout=10)) == []  # empty stream: ends cleanly, no response
    call = stub.Stream(iter([pb.StreamRequest(open=pb.OpenStream(model=MODEL))]), timeout=10)
    assert next(call).WhichOneof("kind") == "opened"
    rs = client.stream(MODEL)
    rs.push(series[:5])
    rs.close(cancel=True)  # client cancel mid-stream
    call.cancel()
    with pytest.raises(FailedPrecondition, match="closed"):
        rs.push(series[:1])
    with client.stream(MODEL) as again:  # the server still serves, from zero state
        _assert_close(again.push(series[:4]), local[:4])


class _FaultyPlane(DataPlane):
    """A data plane with a bug: every push raises a library's exception."""

    async def push(self, session, x, **kwargs):
        raise RuntimeError("secret library detail")


def test_unexpected_failure_is_internal_without_details(models_dir, series, caplog):
    """Through the public seam (a servicer over any DataPlane), not by patching the handler's internals."""
    async def run() -> EddyError:
        plane = _FaultyPlane(ModelRepository(models_dir))
        server = grpc.aio.server()
        pb_grpc.add_InferenceServicer_to_server(InferenceServicer(plane), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        plane.start()

        def call() -> EddyError:
            with Client(f"127.0.0.1:{port}") as client, client.stream(MODEL) as rs:
                with pytest.raises(EddyError) as e:
                    rs.push(series[:1])
                return e.value

        try:
            return await asyncio.to_thread(call)
        finally:
            await server.stop(None)
            await plane.close()

    error = asyncio.run(run())
    assert error.code == "INTERNAL" and "secret" not in error.message
    assert "secret library detail" in caplog.text  # the traceback is in the server log only


def test_list_models_and_metadata(client, model):
    models = client.list_models()
    assert model.version in models[MODEL]
    meta = client.metadata(MODEL)
    assert (meta.name, meta.version, meta.cell, meta.units) == (MODEL, max(models[MODEL]), model.manifest.cell,
                                                                 model.manifest.units)
    assert list(meta.features) == model.features and list(meta.targets) == model.targets
    assert [(s.name, list(s.shape)) for s in meta.state] == [(s.name, s.shape) for s in model.manifest.state]
    assert '"format": "eddy.model/1"' in meta.manifest_json
    with pytest.raises(NotFound):
        client.metadata("no-such-model")
    with pytest.raises(NotFound):
        client.metadata(MODEL, 999)


def test_health_reports_serving(server):
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "eddy.v1.Inference"):
            r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as e:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
