"""Text from the client, bounded: long numbers, long names, malformed ids; over a real server, both protocols.

- A number past Python's 4,300-digit limit for ``int()`` (a model version,
  ``x-eddy-max-response-bytes``) is INVALID_ARGUMENT with a short message on
  every RPC (before: INTERNAL, or UNKNOWN on ModelReady, each with a
  traceback in the log).
- A 100 kB model name is NOT_FOUND with the name cut (before: the message
  echoed all of it and the caller got RESOURCE_EXHAUSTED, the status being
  larger than gRPC's metadata limit).
- A malformed session or sequence id is INVALID_ARGUMENT on every path
  (before: NOT_FOUND on GetSessionState/DeleteSession and OIP START); eddy's
  clients refuse one before sending it, and send an id in any script.
- Stream log lines name the tenant.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np
import pytest
from _serving import reference, served
from conftest import MODEL, ThreadedServer

from eddy.runtime.client import AsyncClient, Client
from eddy.runtime.core.errors import EddyError
from eddy.runtime.grpc.headers import SESSION_HEADER, session_header
from eddy.runtime.grpc.oip import OIP_SERVICE
from eddy.runtime.grpc.security import Security, TokenTable, new_token, token_digest
from eddy.runtime.grpc.status import to_status
from eddy.runtime.grpc.tensors import array_to_tensor
from eddy.runtime.serving.config import ServeConfig
from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc
from eddy.v1 import oip_pb2 as oip

LONG_NUMBER = "1" + "0" * 5000
LONG_NAME = "m" * 100_000
SHORT = 300  # characters: every message here stays below this, whatever was sent


@pytest.fixture(scope="module")
def live(models_dir):
    with served(models_dir) as s:
        yield s


def _oip(channel: grpc.Channel, method: str, request: object, response: type) -> object:
    rpc = channel.unary_unary(f"/{OIP_SERVICE}/{method}", request_serializer=type(request).SerializeToString,
                              response_deserializer=response.FromString)
    return rpc(request, timeout=10)


def _infer_request(model: str = MODEL, version: str = "", sid: str | None = None, start: bool = False,
                   x: np.ndarray | None = None) -> oip.ModelInferRequest:
    x = np.ones((1, 1), np.float32) if x is None else x
    inp = oip.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)
    params = {} if sid is None else {"sequence_id": oip.InferParameter(string_param=sid),
                                     "sequence_start": oip.InferParameter(bool_param=start)}
    return oip.ModelInferRequest(model_name=model, model_version=version, inputs=[inp], parameters=params,
                                 raw_input_contents=[x.tobytes()])


def _refusals(address: str, model: str, version: str) -> list[tuple[str, grpc.StatusCode, str]]:
    """(RPC, status, message) of every RPC that names a model, with ``model`` at ``version``."""
    out = []
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.InferenceStub(channel)
        calls = {
            "GetModelMetadata": lambda: stub.GetModelMetadata(pb.ModelMetadataRequest(model=model, version=version),
                                                              timeout=10),
            "Predict": lambda: stub.Predict(pb.PredictRequest(model=model, version=version,
                                                              inputs=array_to_tensor(np.ones((1, 3, 1)))), timeout=10),
            "Stream": lambda: list(stub.Stream(iter([pb.StreamRequest(open=pb.OpenStream(model=model,
                                                                                         version=version))]),
                                               timeout=10)),
            "ModelInfer": lambda: _oip(channel, "ModelInfer", _infer_request(model, version), oip.ModelInferResponse),
            "ModelMetadata": lambda: _oip(channel, "ModelMetadata", oip.ModelMetadataRequest(name=model,
                                                                                               version=version),
                                          oip.ModelMetadataResponse),
            "ModelConfig": lambda: _oip(channel, "ModelConfig", oip.ModelConfigRequest(name=model, version=version),
                                        oip.ModelConfigResponse),
            "ModelStatistics": lambda: _oip(channel, "ModelStatistics", oip.ModelStatisticsRequest(
                name=model, version=version), oip.ModelStatisticsResponse),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as e:
                call()
            out.append((name, e.value.code(), e.value.details()))
        streamed = channel.stream_stream(f"/{OIP_SERVICE}/ModelStreamInfer",
                                         request_serializer=oip.ModelInferRequest.SerializeToString,
                                         response_deserializer=oip.ModelStreamInferResponse.FromString)
        answers = list(streamed(iter([_infer_request(model, version)]), timeout=10))  # refused in-band
        code = grpc.StatusCode.NOT_FOUND if "not found" in answers[0].error_message else \
            grpc.StatusCode.INVALID_ARGUMENT
        out.append(("ModelStreamInfer", code, answers[0].error_message))
        ready = _oip(channel, "ModelReady", oip.ModelReadyRequest(name=model, version=version),
                     oip.ModelReadyResponse)
        out.append(("ModelReady", grpc.StatusCode.OK if not ready.ready else grpc.StatusCode.UNKNOWN, "not ready"))
    return out


def test_a_version_of_5000_digits_is_invalid_argument_everywhere_and_logs_no_traceback(live, caplog):
    with caplog.at_level(logging.WARNING):
        refusals = _refusals(live.address, MODEL, LONG_NUMBER)
    for rpc, code, message in refusals:
        if rpc == "ModelReady":  # not ready, as for any malformed version (Triton answers the same)
            assert code == grpc.StatusCode.OK, rpc
            continue
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 18 digits" in message, (rpc, code, message)
        assert len(message) < SHORT and "(5001 characters)" in message, (rpc, message)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


def test_a_response_limit_header_of_5000_digits_is_invalid_argument(live):
    metadata = [("x-eddy-max-response-bytes", LONG_NUMBER)]
    with grpc.insecure_channel(live.address) as channel:
        stub = pb_grpc.InferenceStub(channel)
        for call in (lambda: stub.Predict(pb.PredictRequest(model=MODEL, inputs=array_to_tensor(np.ones((1, 3, 1)))),
                                          timeout=10, metadata=metadata),
                     lambda: list(stub.Stream(iter([pb.StreamRequest(open=pb.OpenStream(model=MODEL))]), timeout=10,
                                              metadata=metadata))):
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(e.value.details()) < SHORT
            assert "x-eddy-max-response-bytes must be a positive integer of at most 18 digits" in e.value.details()


def test_a_model_name_of_100_kb_is_not_found_with_the_name_cut(live):
    for rpc, code, message in _refusals(live.address, LONG_NAME, ""):
        if rpc == "ModelReady":
            assert code == grpc.StatusCode.OK, rpc
            continue
        assert code == grpc.StatusCode.NOT_FOUND, (rpc, code, message[:200])
        assert "(100000 characters) not found" in message and len(message) < SHORT, (rpc, message[:200])


def test_malformed_session_and_sequence_ids_are_invalid_argument_on_every_path(live, model, series):
    with Client(live.address) as c, c.stream(MODEL, session_id="bystander") as rs:
        rs.push(series[:3])
    bad_ids = ["x" * 200, "a\nb", " padded"]
    with grpc.insecure_channel(live.address) as channel:
        stub = pb_grpc.InferenceStub(channel)
        streamed = channel.stream_stream(f"/{OIP_SERVICE}/ModelStreamInfer",
                                         request_serializer=oip.ModelInferRequest.SerializeToString,
                                         response_deserializer=oip.ModelStreamInferResponse.FromString)
        for sid in bad_ids:
            for call in (lambda sid=sid: stub.GetSessionState(pb.SessionRequest(session_id=sid), timeout=10),
                         lambda sid=sid: stub.DeleteSession(pb.SessionRequest(session_id=sid), timeout=10),
                         lambda sid=sid: _oip(channel, "ModelInfer", _infer_request(sid=sid, start=True),
                                      oip.ModelInferResponse),
                         lambda sid=sid: _oip(channel, "ModelInfer", _infer_request(sid=sid),
                                              oip.ModelInferResponse)):
                with pytest.raises(grpc.RpcError) as e:
                    call()
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "session id" in e.value.details(), \
                    (sid, e.value.code(), e.value.details())
            answers = list(streamed(iter([_infer_request(sid=sid, start=True), _infer_request(sid=sid)]),
                                    timeout=10))
            assert [("session id" in a.error_message) for a in answers] == [True, True], answers
    assert len(live.server.plane.sessions) == 1  # nothing was created
    with Client(live.address) as c, c.stream(MODEL, session_id="bystander", resume=True) as rs:
        assert np.array_equal(rs.push(series[3:5]), reference(model, [series[:3], series[3:5]])[1])


def test_unexpected_errors_log_at_most_five_tracebacks_per_rpc_per_10s(caplog):
    with caplog.at_level(logging.ERROR, logger="eddy.servicer"):
        for _ in range(50):
            code, message = to_status(RuntimeError("a bug"), "SomeRpc")
            assert code == grpc.StatusCode.INTERNAL and "a bug" not in message
    assert len([r for r in caplog.records if r.exc_info]) == 5


def test_stream_log_lines_name_the_tenant(models_dir, tmp_path, series, caplog):
    token = new_token()
    (tmp_path / "tokens").write_text(f"acme {token_digest(token)}\n")
    (tmp_path / "tokens").chmod(0o600)
    s = ThreadedServer(models_dir, ServeConfig(), Security(tokens=TokenTable(tmp_path / "tokens")))
    try:
        with caplog.at_level(logging.INFO, logger="eddy.streams"):
            with Client(s.address, token=token) as c, c.stream(MODEL, session_id="t") as rs:
                rs.push(series[:2])
            with grpc.insecure_channel(s.address) as channel:
                streamed = channel.stream_stream(f"/{OIP_SERVICE}/ModelStreamInfer",
                                                 request_serializer=oip.ModelInferRequest.SerializeToString,
                                                 response_deserializer=oip.ModelStreamInferResponse.FromString)
                list(streamed(iter([_infer_request()]), timeout=10, metadata=[("authorization", f"Bearer {token}")]))
            s.until(lambda: not s.server.gate.calls)
    finally:
        s.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "eddy.streams"]
    assert len(lines) == 4 and all(line.split()[1] == "tenant=acme" for line in lines), lines


def test_eddy_clients_send_any_valid_session_id_and_refuse_a_malformed_one_before_sending(models_dir, model,
                                                                                          series):
    """gRPC metadata is printable ASCII, and eddy's clients send the id as the ``x-eddy-session`` header too: an id
    in another script is sent percent-encoded there (before: the client failed with INTERNAL "Invalid metadata" and
    gRPC's own log lines), a malformed one is refused before anything is sent, with the server's status."""
    sid = "capteur-é-温度"
    assert session_header(sid) == (SESSION_HEADER, "capteur-%C3%A9-%E6%B8%A9%E5%BA%A6")
    assert session_header("plain-ascii 1") == (SESSION_HEADER, "plain-ascii 1")
    want = reference(model, [series[:3], series[3:5]])
    with served(models_dir) as s, Client(s.address) as c:
        with c.stream(MODEL, session_id=sid) as rs:
            rs.push(series[:3])
        assert c.session_state(sid).position == 3
        with c.stream(MODEL, session_id=sid, resume=True) as rs:
            assert np.array_equal(rs.push(series[3:5]), want[1])

        async def opened(session_id: str, resume: bool = False) -> int:
            async with AsyncClient(s.address) as ac, ac.stream(MODEL, session_id=session_id, resume=resume) as ars:
                return ars.position

        assert asyncio.run(opened(sid, resume=True)) == 5
        for bad in ("x\x00y", "tab\there", "a" * 129, " padded"):
            for call in (lambda bad=bad: c.session_state(bad), lambda bad=bad: c.delete_session(bad),
                         lambda bad=bad: c.stream(MODEL, session_id=bad), lambda bad=bad: asyncio.run(opened(bad))):
                with pytest.raises(EddyError) as e:
                    call()
                assert e.value.code == "INVALID_ARGUMENT" and "session id must be 1-128 printable" in e.value.message, \
                    (bad, e.value)
        assert c.delete_session(sid).position == 5
