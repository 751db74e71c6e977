"""Wire robustness over a real server: malformed protobuf, a bounded fuzz of raw bytes, idle streams,
stream limits, and true status codes for abnormal stream ends. Every case checks an honest session
afterwards: same position, exact next answer."""

from __future__ import annotations

import logging
import queue
import threading

import grpc
import numpy as np
import pytest
from _serving import reference, served
from conftest import MODEL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eddy.runtime.client import Client
from eddy.runtime.core.errors import EddyError
from eddy.runtime.grpc.tensors import array_to_tensor
from eddy.v1 import inference_pb2 as pb

HONEST = "honest"
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


@pytest.fixture(scope="module")
def live(models_dir):
    with served(models_dir, stream_idle_timeout=0.5, max_streams=64) as s:
        yield s


@pytest.fixture(scope="module")
def honest(live, series):
    """An honest session at position 3, idle between tests."""
    with Client(live.address) as c, c.stream(MODEL, session_id=HONEST) as rs:
        rs.push(series[:3])
    return series


def _check_honest(live, model, series) -> None:
    live.until_idle(HONEST)
    with Client(live.address) as c, c.stream(MODEL, session_id=HONEST, resume=True) as rs:
        assert rs.position == 3
        y = rs.push(series[3:5])
        rs.reset()  # back to where every test expects it: replay the first three samples
        rs.push(series[:3])
    assert np.array_equal(y, reference(model, [series[:3], series[3:5]])[1])


def _raw_stream(address: str, messages: list[bytes], timeout: float = 10) -> tuple[grpc.StatusCode, str, int]:
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream("/eddy.v1.Inference/Stream")(iter(messages), timeout=timeout)
        answered = 0
        try:
            for _ in call:
                answered += 1
        except grpc.RpcError as e:
            return e.code(), e.details() or "", answered
        return grpc.StatusCode.OK, "", answered


def _raw_unary(address: str, method: str, data: bytes) -> tuple[grpc.StatusCode, str]:
    path = f"/{method}" if "/" in method else f"/eddy.v1.Inference/{method}"
    with grpc.insecure_channel(address) as channel:
        try:
            channel.unary_unary(path)(data, timeout=10)
        except grpc.RpcError as e:
            return e.code(), e.details() or ""
        return grpc.StatusCode.OK, ""


OPEN = pb.StreamRequest(open=pb.OpenStream(model=MODEL)).SerializeToString()
SAMPLE = pb.StreamRequest(samples=array_to_tensor(np.ones((1, 1), np.float32))).SerializeToString()


def test_malformed_protobuf_is_invalid_argument_and_logged_briefly(live, honest, model, caplog):
    caplog.set_level(logging.WARNING, logger="eddy")
    for messages in ([b"\xff\xff\xff"], [OPEN, b"\x0a\xff\xff\xff\x0f"], [OPEN, SAMPLE, b"\x12\x80"]):
        code, details, answered = _raw_stream(live.address, messages)
        assert (code, answered) == (grpc.StatusCode.INVALID_ARGUMENT, len(messages) - 1)
        assert details.startswith("malformed request") and len(details) < 100
    for method in ("Predict", "GetSessionState", "DeleteSession", "ListModels", "GetModelMetadata"):
        code, details = _raw_unary(live.address, method, b"\x0a\xff\xff\xff\x0f")
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed request" in details
    for method in ("/inference.GRPCInferenceService/ModelInfer", "/inference.GRPCInferenceService/ModelReady",
                   "/grpc.health.v1.Health/Check"):  # the other services on the port: the same answer
        with grpc.insecure_channel(live.address) as channel:
            with pytest.raises(grpc.RpcError) as e:
                channel.unary_unary(method)(b"\x0a\xff\xff\xff\x0f", timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "malformed request" in e.value.details()
    for method in ("/inference.GRPCInferenceService/ModelStreamInfer",
                   "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"):
        with grpc.insecure_channel(live.address) as channel:
            with pytest.raises(grpc.RpcError) as e:
                list(channel.stream_stream(method)(iter([b"\x0a\xff\xff\xff\x0f"]), timeout=10))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "malformed request" in e.value.details()
    for _ in range(40):  # a client sending garbage in a loop does not fill the log
        _raw_unary(live.address, "Predict", b"\xff")
    lines = [r for r in caplog.records if r.name in ("eddy.servicer", "eddy.server")]
    assert 0 < len(lines) <= 12 and not any(r.exc_info for r in lines)
    _check_honest(live, model, honest)


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])


@FUZZ
@given(first=st.binary(max_size=64) | st.sampled_from([OPEN]),
       rest=st.lists(st.binary(max_size=64) | st.builds(lambda b, i, x: b[:i % (len(b) + 1)] + bytes([x]) +
                                                        b[i % (len(b) + 1):],
                                                        st.sampled_from([OPEN, SAMPLE]), st.integers(0, 64),
                                                        st.integers(0, 255)), max_size=4))
def test_fuzz_raw_stream_bytes(live, honest, first, rest):
    code, details, _ = _raw_stream(live.address, [first, *rest])
    assert code not in NEVER, details


@FUZZ
@given(data=st.binary(max_size=128), method=st.sampled_from([
    "eddy.v1.Inference/Predict", "eddy.v1.Inference/GetSessionState", "eddy.v1.Inference/DeleteSession",
    "eddy.v1.Inference/GetModelMetadata", "inference.GRPCInferenceService/ModelInfer",
    "inference.GRPCInferenceService/ModelMetadata", "grpc.health.v1.Health/Check"]))
def test_fuzz_raw_unary_bytes(live, honest, data, method):
    code, details = _raw_unary(live.address, method, data)
    assert code not in NEVER, details


def test_after_fuzzing_the_honest_session_is_unchanged(live, honest, model):
    _check_honest(live, model, honest)


def test_idle_stream_ends_with_deadline_exceeded_and_stays_resumable(live, honest, model, series):
    requests: queue.SimpleQueue[pb.StreamRequest | None] = queue.SimpleQueue()
    requests.put(pb.StreamRequest(open=pb.OpenStream(model=MODEL, session_id="sleepy")))
    requests.put(pb.StreamRequest(samples=array_to_tensor(series[:2])))

    def gen():
        while (r := requests.get()) is not None:
            yield r

    with grpc.insecure_channel(live.address) as channel:
        from eddy.v1 import inference_pb2_grpc as pb_grpc

        call = pb_grpc.InferenceStub(channel).Stream(gen())
        with pytest.raises(grpc.RpcError) as e:
            for _ in call:  # two answers, then nothing is sent: the server ends it
                pass
        requests.put(None)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "--stream-idle-timeout" in e.value.details()
    live.until_idle("sleepy")
    with Client(live.address) as c, c.stream(MODEL, session_id="sleepy", resume=True) as rs:
        assert rs.position == 2
        assert np.array_equal(rs.push(series[2:4]), reference(model, [series[:2], series[2:4]])[1])
    _check_honest(live, model, honest)


def test_max_streams_and_true_close_codes(models_dir, series, caplog):
    caplog.set_level(logging.INFO, logger="eddy.streams")
    with served(models_dir, max_streams=2, metrics_port=0) as s, Client(s.address) as c:
        a, b = c.stream(MODEL), c.stream(MODEL)
        with pytest.raises(EddyError) as e:
            c.stream(MODEL)
        assert e.value.code == "RESOURCE_EXHAUSTED" and "--max-streams 2" in e.value.message
        a.push(series[:1])
        a.close(cancel=True)
        s.until(lambda: s.server.plane.sessions.busy_count == 1)
        with pytest.raises(EddyError) as e:
            with c.stream(MODEL, timeout=0.2) as d:  # a deadline is DEADLINE_EXCEEDED
                threading.Event().wait(0.4)
                d.push(series[:1])
        assert e.value.code == "DEADLINE_EXCEEDED"
        b.close()
        s.until(lambda: s.server.plane.sessions.busy_count == 0)
        text = s.server.metrics.render().decode()
    closes = [r.getMessage() for r in caplog.records if "event=stream_close" in r.getMessage()]
    assert any("status=DEADLINE_EXCEEDED" in x for x in closes)  # not OK, as it was logged before
    assert 'eddy_rpcs_total{code="DEADLINE_EXCEEDED",method="Stream"} 1.0' in text
    assert 'eddy_rpcs_total{code="RESOURCE_EXHAUSTED",method="Stream"} 1.0' in text
