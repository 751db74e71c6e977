"""The Open Inference Protocol on eddy's port, driven by the real tritonclient[grpc] (in .venv-compat).

One server and one tritonclient worker for the module; every answer is compared
bit for bit with the in-process stream.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from _compat_venv import CompatVenvUnavailable, compat_python
from _serving import served
from _tritonclient import TritonWorker, decode, encode
from conftest import MODEL, ROOT

from eddy.runtime.client import Client
from eddy.runtime.grpc.oip import OIP_SERVICE
from eddy.runtime.serving.config import ServeConfig
from eddy.v1 import oip_pb2 as pb


@pytest.fixture(scope="module")
def compat() -> object:
    try:
        return compat_python()
    except CompatVenvUnavailable as e:
        pytest.skip(f"tritonclient tests need .venv-compat and {e}")


@pytest.fixture(scope="module")
def oip_server(models_dir) -> Iterator[object]:
    with served(models_dir) as s:
        yield s


@pytest.fixture(scope="module")
def triton(compat, oip_server) -> Iterator[TritonWorker]:
    w = TritonWorker(oip_server.address, compat)
    yield w
    w.close()


def steps(model, xs: np.ndarray) -> list[np.ndarray]:
    """The in-process stream's answer to each sample of ``xs[N, F]`` pushed one at a time."""
    s = model.stream()
    return [s.push(x[None]) for x in xs]


def sequence(xs: np.ndarray, sid: object, *, start: bool = True, end: bool = False) -> list[dict]:
    """Stream requests, one per sample, for tritonclient's async_stream_infer."""
    n = len(xs)
    return [dict(encode(xs[i:i + 1]), sequence_id=sid, sequence_start=start and i == 0, sequence_end=end and i == n - 1)
            for i in range(n)]


def test_liveness_and_readiness(triton):
    assert triton.call("is_server_live") and triton.call("is_server_ready")
    assert triton.call("is_model_ready", MODEL) and triton.call("is_model_ready", MODEL, "1")
    assert not triton.call("is_model_ready", "no-such-model") and not triton.call("is_model_ready", MODEL, "99")


def test_server_and_model_metadata(triton, model):
    server = triton.call("get_server_metadata", as_json=True)
    assert server["name"] == "eddy" and {"sequence", "statistics"} <= set(server["extensions"])
    meta = triton.call("get_model_metadata", MODEL, as_json=True)
    assert meta["name"] == MODEL and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", str(model.n_features)]}]
    shape = ["-1", str(len(model.targets))]
    assert meta["outputs"] == [{"name": name, "datatype": "FP32", "shape": shape}  # y, then each level's bounds
                               for name in ("y", "y_lower_80", "y_upper_80", "y_lower_95", "y_upper_95")]


def test_model_config_and_repository_index(triton, model):
    config = triton.call("get_model_config", MODEL, as_json=True)["config"]
    # read like a Triton sequence model with a batch dimension: max_batch_size = sessions per onnxruntime call
    assert config["name"] == MODEL and config["max_batch_size"] == ServeConfig().max_batch
    assert config["input"][0] == {"name": "x", "data_type": "TYPE_FP32", "dims": [str(model.n_features)]}
    assert config["output"][0] == {"name": "y", "data_type": "TYPE_FP32", "dims": [str(len(model.targets))]}
    idle_us = int(config["sequence_batching"]["max_sequence_idle_microseconds"])
    assert idle_us == int(ServeConfig().session_ttl * 1e6)  # idle sequences live as long as eddy sessions
    index = triton.call("get_model_repository_index", as_json=True)["models"]
    assert index == [{"name": MODEL, "version": "1", "state": "READY"}]


def test_infer_without_sequence_is_stateless(triton, model, series):
    window = series[:10]
    for _ in range(2):  # nothing is kept between calls
        answer = triton.infer(MODEL, window, id="w1")
        assert answer["raw_outputs"] == 1 and answer["id"] == "w1" and answer["model_version"] == "1"
        np.testing.assert_array_equal(decode(answer), model.stream().push(window))


def test_infer_with_sequence_equals_in_process_stream(triton, model, series):
    xs = series[:40]
    want = steps(model, xs)
    for i, x in enumerate(xs):
        answer = triton.infer(MODEL, x[None], sequence_id=4242, sequence_start=i == 0, sequence_end=i == len(xs) - 1)
        np.testing.assert_array_equal(decode(answer), want[i])
    after_end = triton.infer(MODEL, xs[:1], sequence_id=4242)  # END closed the session
    assert after_end["status"] == "StatusCode.INVALID_ARGUMENT" and "START flag" in after_end["message"]


def test_stream_200_samples_one_by_one_bit_for_bit(triton, model, series, local):
    answers = triton.stream(MODEL, sequence(series[:200], 7, end=True))
    got = np.concatenate([decode(a) for a in answers])
    np.testing.assert_array_equal(got, local[:200])


@pytest.mark.parametrize("x, params, status, words", [
    (np.array([[1.0]], np.float32), {"sequence_id": 999001}, "INVALID_ARGUMENT",
     "inference request for sequence 999001 to model 'sunspots' must specify the START flag on the first request "
     "of the sequence"),
    (np.array([[1.0]], np.float64), {"datatype": "FP64"}, "INVALID_ARGUMENT", "datatype FP32, got FP64"),
    (np.array([[1.0, 2.0]], np.float32), {}, "INVALID_ARGUMENT", "expected 1 feature(s) per sample, got shape [1, 2]"),
    (np.array([[np.nan]], np.float32), {}, "INVALID_ARGUMENT", "sample 0, feature 0 is nan: values must be finite"),
    (np.array([[np.inf]], np.float32), {}, "INVALID_ARGUMENT", "sample 0, feature 0 is inf: values must be finite"),
    (np.array([1.0], np.float32), {}, "INVALID_ARGUMENT", "samples must have shape [n, 1], got shape [1]"),
    (np.array([[1.0]], np.float32), {"input_name": "input"}, "INVALID_ARGUMENT", "takes one input `x`"),
    (np.array([[1.0]], np.float32), {"outputs": ["z"]}, "INVALID_ARGUMENT",
     "has outputs `y`, `y_lower_80`, `y_upper_80`, `y_lower_95`, `y_upper_95`, not `z`"),
    (np.array([[1.0]], np.float32), {"model": "no-such-model"}, "NOT_FOUND", "no-such-model"),
])
def test_rejections_carry_their_code_and_leave_the_sequence_unchanged(triton, model, series, x, params, status,
                                                                      words):
    """Each rejected request of sequence `rej` (docs/reference/errors.md's OIP rows), then its next step is still exact."""
    want = steps(model, series[:2])
    np.testing.assert_array_equal(decode(triton.infer(MODEL, series[:1], sequence_id="rej", sequence_start=True)),
                                  want[0])
    params = {"sequence_id": "rej", **params}
    answer = triton.infer(params.pop("model", MODEL), x, **params)
    assert answer["status"] == f"StatusCode.{status}" and words in answer["message"], answer
    np.testing.assert_array_equal(decode(triton.infer(MODEL, series[1:2], sequence_id="rej", sequence_end=True)),
                                  want[1])


def test_rejected_step_leaves_the_sequence_unchanged(triton, model, series):
    want = steps(model, series[:3])
    np.testing.assert_array_equal(decode(triton.infer(MODEL, series[:1], sequence_id="r1", sequence_start=True)),
                                  want[0])
    bad = triton.infer(MODEL, np.array([[np.inf]], np.float32), sequence_id="r1")
    assert bad["status"] == "StatusCode.INVALID_ARGUMENT"
    for i in (1, 2):
        np.testing.assert_array_equal(decode(triton.infer(MODEL, series[i:i + 1], sequence_id="r1")), want[i])


def test_stream_errors_are_in_band_and_the_stream_stays_open(triton, model, series):
    want = steps(model, series[:3])
    requests = sequence(series[:2], "e1")
    requests.insert(1, dict(encode(np.array([[np.nan]], np.float32)), sequence_id="e1"))  # rejected in-band
    requests.append(dict(encode(series[:1]), sequence_id="never-started"))
    requests.append(dict(encode(series[2:3]), sequence_id="e1", sequence_end=True))
    answers = triton.stream(MODEL, requests)
    assert [a["ok"] for a in answers] == [True, False, True, False, True]
    assert "values must be finite" in answers[1]["message"] and "START flag" in answers[3]["message"]
    np.testing.assert_array_equal(np.concatenate([decode(answers[i]) for i in (0, 2, 4)]), np.concatenate(want))


def test_sequence_moves_between_oip_and_eddy_v1(triton, oip_server, model, series):
    """OIP sequence 77 is eddy session "77": start over OIP, continue over eddy.v1, finish over OIP."""
    xs = series[:30]
    want = np.concatenate(steps(model, xs))
    got = [decode(a) for a in triton.stream(MODEL, sequence(xs[:10], 77))]
    with Client(oip_server.address) as client, client.stream(MODEL, session_id="77", resume=True) as rs:
        assert rs.resumed and rs.position == 10
        got += [rs.push(x[None]) for x in xs[10:20]]
    oip_server.until_idle("77")
    got += [decode(triton.infer(MODEL, x[None], sequence_id=77, sequence_end=i == 9)) for i, x in enumerate(xs[20:])]
    np.testing.assert_array_equal(np.concatenate(got), want)
    assert "77" not in oip_server.server.plane.sessions  # END closed it


def test_eddy_v1_session_continues_as_a_string_sequence(triton, oip_server, model, series):
    xs = series[:12]
    local = model.stream()  # the same chunking: 6 samples in one message, then one by one
    want = np.concatenate([local.push(xs[:6]), *(local.push(x[None]) for x in xs[6:])])
    with Client(oip_server.address) as client, client.stream(MODEL, session_id="dev-a") as rs:
        got = [rs.push(xs[:6])]
    oip_server.until_idle("dev-a")
    got += [decode(a) for a in triton.stream(MODEL, sequence(xs[6:], "dev-a", start=False, end=True))]
    np.testing.assert_array_equal(np.concatenate(got), want)


def _call(address: str, method: str, request, response_type):
    with grpc.insecure_channel(address) as channel:
        rpc = channel.unary_unary(f"/{OIP_SERVICE}/{method}", request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=response_type.FromString)
        return rpc(request, timeout=30)


def _request(x: np.ndarray, *, typed: bool = False, **params: pb.InferParameter) -> pb.ModelInferRequest:
    inp = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)
    req = pb.ModelInferRequest(model_name=MODEL, inputs=[inp], parameters=params)
    if typed:
        req.inputs[0].contents.fp32_contents.extend(x.ravel().tolist())
    else:
        req.raw_input_contents.append(x.astype("<f4").tobytes())
    return req


def test_typed_contents_and_uint64_sequence_ids(oip_server, model, series):
    """What tritonclient does not send: typed fp32_contents in, uint64 sequence ids (answers still raw)."""
    want = steps(model, series[:4])
    for i in range(4):
        params = {"sequence_id": pb.InferParameter(uint64_param=2**63 + 5),
                  "sequence_start": pb.InferParameter(bool_param=i == 0)}
        r = _call(oip_server.address, "ModelInfer", _request(series[i:i + 1], typed=i % 2 == 0, **params),
                  pb.ModelInferResponse)
        assert not r.outputs[0].HasField("contents") and list(r.outputs[0].shape) == [1, 1]
        np.testing.assert_array_equal(np.frombuffer(r.raw_output_contents[0], "<f4").reshape(1, 1), want[i])
    assert str(2**63 + 5) in oip_server.server.plane.sessions


@pytest.mark.parametrize("request_, words", [
    (lambda: _request(np.ones((1, 1), np.float32), sequence_id=pb.InferParameter(bool_param=True)),
     "sequence_id must be an int64, uint64 or string parameter"),
    (lambda: _request(np.ones((1, 1), np.float32), sequence_start=pb.InferParameter(bool_param=True)),
     "without a sequence_id"),
    (lambda: _request(np.ones((1, 1), np.float32), sequence_id=pb.InferParameter(int64_param=3),
                      sequence_start=pb.InferParameter(int64_param=1)), "sequence_start must be a bool"),
    (lambda: _request(np.ones((1, 1), np.float32), sequence_id=pb.InferParameter(int64_param=-3)),
     "must not be negative"),
    (lambda: _both_encodings(), "sets both contents and raw_input_contents"),
    (lambda: _request(np.ones((0, 1), np.float32)), "n must be at least 1"),
])
def test_malformed_requests_are_invalid_argument(oip_server, request_, words):
    with pytest.raises(grpc.RpcError) as e:
        _call(oip_server.address, "ModelInfer", request_(), pb.ModelInferResponse)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in e.value.details()


def _both_encodings() -> pb.ModelInferRequest:
    req = _request(np.ones((1, 1), np.float32))
    req.inputs[0].contents.fp32_contents.append(1.0)
    return req


def test_one_stream_carries_interleaved_sequences_in_order(oip_server, model, series):
    """Requests of two sequences sent without waiting: each sequence's answers are its own stream's, in order."""
    xa, xb = series[:20], series[100:120]
    reqs = []
    for i in range(20):
        for sid, xs in (("ia", xa), ("ib", xb)):
            params = {"sequence_id": pb.InferParameter(string_param=sid),
                      "sequence_start": pb.InferParameter(bool_param=i == 0)}
            req = _request(xs[i:i + 1], **params)
            req.id = f"{sid}:{i}"
            reqs.append(req)
    with grpc.insecure_channel(oip_server.address) as channel:
        rpc = channel.stream_stream(f"/{OIP_SERVICE}/ModelStreamInfer",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=pb.ModelStreamInferResponse.FromString)
        answers = list(rpc(iter(reqs), timeout=60))
    assert len(answers) == 40 and not any(a.error_message for a in answers)
    for sid, xs in (("ia", xa), ("ib", xb)):
        mine = [a.infer_response for a in answers if a.infer_response.id.startswith(sid + ":")]
        assert [int(r.id.split(":")[1]) for r in mine] == list(range(20))  # in order within the sequence
        got = np.concatenate([np.frombuffer(r.raw_output_contents[0], "<f4").reshape(1, 1) for r in mine])
        np.testing.assert_array_equal(got, np.concatenate(steps(model, xs)))


def test_tritonclient_and_eddy_share_a_process_on_protobuf_6(triton):
    info = triton.send(op="selftest")
    assert info["ok"] and info["protobuf"].startswith("6.")
    assert (info["eddy"], info["eddy_oip"], info["triton"]) == ("eddy.v1", "eddy.v1.oip", "inference")
    assert (info["reflected"], info["triton_service"]) == ("eddy.v1.oip.ModelInferRequest",
                                                           "inference.GRPCInferenceService")


def test_eddy_serve_runs_on_protobuf_6(compat, models_dir, model, series):
    """`eddy serve` itself, installed beside tritonclient (protobuf 6), answers tritonclient."""
    proc = subprocess.Popen([str(compat), "-m", "eddy.cli", "serve", "--models", str(models_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        match = re.search(r"on (\S+:\d+)", line)
        assert match, line + proc.stderr.read()
        w = TritonWorker(match.group(1), compat)
        try:
            answers = w.stream(MODEL, sequence(series[:5], "p6", end=True))
            np.testing.assert_array_equal(np.concatenate([decode(a) for a in answers]),
                                          np.concatenate(steps(model, series[:5])))
        finally:
            w.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_start_restarts_a_sequence_and_a_busy_one_is_refused(triton, oip_server, model, series):
    want = steps(model, series[:2])
    for _ in range(2):  # the second START drops the first run's state
        np.testing.assert_array_equal(decode(triton.infer(MODEL, series[:1], sequence_id=55, sequence_start=True)),
                                      want[0])
    np.testing.assert_array_equal(decode(triton.infer(MODEL, series[1:2], sequence_id=55)), want[1])
    with Client(oip_server.address) as client, client.stream(MODEL, session_id="55", resume=True):
        for params in ({}, {"sequence_start": True}):  # an eddy.v1 stream holds it now
            busy = triton.infer(MODEL, series[:1], sequence_id=55, **params)
            assert busy["status"] == "StatusCode.FAILED_PRECONDITION" and "in use" in busy["message"], busy


def test_sample_limit_is_resource_exhausted_and_changes_nothing(models_dir, model, series):
    with served(models_dir, max_samples_per_message=4) as s:
        start = {"sequence_id": pb.InferParameter(int64_param=8), "sequence_start": pb.InferParameter(bool_param=True)}
        first = _call(s.address, "ModelInfer", _request(series[:4], **start), pb.ModelInferResponse)
        with pytest.raises(grpc.RpcError) as e:
            _call(s.address, "ModelInfer", _request(series[4:9], sequence_id=pb.InferParameter(int64_param=8)),
                  pb.ModelInferResponse)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit is 4" in e.value.details()
        again = _call(s.address, "ModelInfer", _request(series[4:8], sequence_id=pb.InferParameter(int64_param=8)),
                      pb.ModelInferResponse)
    local = model.stream()
    for r, chunk in ((first, series[:4]), (again, series[4:8])):
        np.testing.assert_array_equal(np.frombuffer(r.raw_output_contents[0], "<f4").reshape(4, 1), local.push(chunk))


@pytest.mark.parametrize("request_id, n", [("", 1), ("r-7", 3), ("x" * 300, 200)])
def test_serialized_answers_equal_the_messages(model, request_id, n):
    """The hot path's byte-built answers parse to exactly the messages the codec builds."""
    from eddy.runtime.grpc.oip_codec import infer_response, infer_response_bytes, stream_response_bytes

    y = np.random.default_rng(n).standard_normal((n, 1)).astype(np.float32)
    want = infer_response(model, request_id, y)
    got = pb.ModelInferResponse.FromString(infer_response_bytes(model, request_id, y))
    assert got == want
    wrapped = pb.ModelStreamInferResponse.FromString(stream_response_bytes(infer_response_bytes(model, request_id, y)))
    assert wrapped == pb.ModelStreamInferResponse(infer_response=want)


def _input_request(shape=(2, 1), raw=None, name="x", datatype="FP32", outputs=(), contents=None, raws=None):
    r = pb.ModelInferRequest(model_name=MODEL, outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=o)
                                                        for o in outputs])
    inp = r.inputs.add(name=name, datatype=datatype, shape=list(shape))
    if contents is not None:
        inp.contents.fp32_contents.extend(contents)
    if raws is None:
        raws = [np.arange(max(int(np.prod(shape)), 0), dtype="<f4").tobytes() if raw is None else raw]
    r.raw_input_contents.extend(raws)
    return pb.ModelInferRequest.FromString(r.SerializeToString())


@pytest.mark.parametrize("request_", [
    _input_request(), _input_request((1, 1)), _input_request((5, 1)), _input_request(outputs=["y"]),
    _input_request(outputs=["z"]), _input_request(outputs=["y", "y"]), _input_request((0, 1)),
    _input_request((-1, 1)), _input_request((2, 2)), _input_request((2,)), _input_request((2, 1, 1)),
    _input_request(raw=b"\0" * 7), _input_request(raw=np.array([1, np.nan], "<f4").tobytes()),
    _input_request(raw=np.array([-np.inf, 1], "<f4").tobytes()),
    _input_request(raw=np.array([1, np.inf], "<f4").tobytes()), _input_request(name="z"),
    _input_request(datatype="FP64"), _input_request(contents=[1.0, 2.0]),
    _input_request(contents=[1.0, 2.0], raws=[]), _input_request(raws=[b"\0" * 8, b"\0" * 8]),
], ids=lambda r: str(r).replace("\n", " ")[:60])
def test_quick_input_path_takes_exactly_what_the_full_rules_take(model, request_):
    """infer_input's quick path for the common request only accepts: every refusal is the full rules' own, and
    what it accepts is bit-identical to what they return."""
    from eddy.runtime.core.errors import EddyError
    from eddy.runtime.grpc.oip_codec import _infer_input, infer_input

    seen: list[int] = []
    try:
        want = _infer_input(request_, model, check=seen.append)
    except EddyError as e:
        with pytest.raises(type(e), match=re.escape(e.message)):
            infer_input(request_, model, check=lambda n: None)
        return
    got = infer_input(request_, model, check=seen.append)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape and np.array_equal(got, want)
    assert seen[0] == seen[-1] == len(want)  # the sample limit saw the same count


def test_cancelled_stream_leaves_the_sequence_resumable(oip_server, model, series):
    want = steps(model, series[:2])
    start = {"sequence_id": pb.InferParameter(string_param="cx"), "sequence_start": pb.InferParameter(bool_param=True)}
    with grpc.insecure_channel(oip_server.address) as channel:
        rpc = channel.stream_stream(f"/{OIP_SERVICE}/ModelStreamInfer",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=pb.ModelStreamInferResponse.FromString)
        release = threading.Event()
        call = rpc(_hold_open(_request(series[:1], **start), release))
        first = next(call)
        call.cancel()
        release.set()
    np.testing.assert_array_equal(np.frombuffer(first.infer_response.raw_output_contents[0], "<f4").reshape(1, 1),
                                  want[0])
    oip_server.until_idle("cx")
    r = _call(oip_server.address, "ModelInfer", _request(series[1:2], sequence_id=pb.InferParameter(string_param="cx")),
              pb.ModelInferResponse)
    np.testing.assert_array_equal(np.frombuffer(r.raw_output_contents[0], "<f4").reshape(1, 1), want[1])


def _hold_open(first: pb.ModelInferRequest, release: threading.Event) -> Iterator[pb.ModelInferRequest]:
    """One request, then a request stream that stays open (no half-close) until ``release`` is set."""
    yield first
    release.wait(60)


def test_active_sequences_are_counted_over_a_short_window():
    """Batching policy for per-request sessions: one sequence runs at once, several join the batcher."""
    from eddy.runtime.serving.sequences import ACTIVE_WINDOW_S, Sequences

    now = [100.0]
    seqs = Sequences(plane=None, clock=lambda: now[0])  # type: ignore[arg-type]  (active() needs no plane)
    assert [seqs.active("a") for _ in range(3)] == [1, 1, 1]
    assert seqs.active("b") == 2
    now[0] += ACTIVE_WINDOW_S  # next window: the previous one still counts
    assert seqs.active("a") == 2
    now[0] += 3 * ACTIVE_WINDOW_S  # a gap: "b" has gone quiet
    assert seqs.active("a") == 1


def test_sequence_continues_on_another_replica_with_a_shared_store(tmp_path, compat, models_dir, model,
                                                                    series):
    """With --session-store, tritonclient starts sequence 91 on replica A and finishes it on replica B, exactly."""
    from _store import valkey

    xs = series[:12]
    want = np.concatenate(steps(model, xs))
    with valkey(tmp_path) as store, served(models_dir, session_store=store.url, lease_s=1.0) as a, \
            served(models_dir, session_store=store.url, lease_s=1.0) as b:
        got = []
        for replica, part, first in ((a, xs[:6], True), (b, xs[6:], False)):
            w = TritonWorker(replica.address, compat)
            try:
                got += [decode(ans) for ans in w.stream(MODEL, sequence(part, 91, start=first, end=not first))]
            finally:
                w.close()
    np.testing.assert_array_equal(np.concatenate(got), want)


def test_model_statistics_are_eddys_own_figures(compat, models_dir, series):
    """tritonclient's get_inference_statistics: counts of what ran, on every protocol, nothing invented."""
    from eddy.runtime.core.errors import ResourceExhausted

    with served(models_dir) as s:
        w = TritonWorker(s.address, compat)
        try:
            before = w.call("get_inference_statistics", MODEL, as_json=True)["model_stats"]
            assert before == [{"name": MODEL, "version": "1", "inference_stats": _EMPTY_INFER_STATS}]
            t0 = time.time_ns() // 1_000_000
            for i in range(4):  # 4 one-sample steps of one sequence: 4 calls
                assert w.infer(MODEL, series[i:i + 1], sequence_id="st", sequence_start=i == 0)["ok"]
            assert w.infer(MODEL, series[4:8], sequence_id="st", sequence_end=True)["ok"]  # 4 samples, 1 call
            assert not w.infer(MODEL, np.array([[np.nan]], np.float32))["ok"]  # refused at the edge: not counted
            with Client(s.address, max_message_bytes=200) as c, c.stream(MODEL) as rs:
                rs.push(series[:2])  # eddy.v1 counts too: 2 samples, 1 call
                with pytest.raises(ResourceExhausted):
                    rs.push(series[:40])  # the request fits 200 bytes, its answer (224) does not: fails in the plane
            t1 = time.time_ns() // 1_000_000
            stats = w.call("get_inference_statistics", MODEL, "1", as_json=True)["model_stats"]
            everything = w.call("get_inference_statistics", as_json=True)["model_stats"]
            unknown = w.send(op="call", method="get_inference_statistics", args=["no-such-model"], kwargs={})
        finally:
            w.close()
    assert everything == stats and len(stats) == 1
    st = stats[0]
    assert (st["name"], st["version"], st["inference_count"], st["execution_count"]) == (MODEL, "1", "10", "6")
    assert t0 <= int(st["last_inference"]) <= t1
    inf = st["inference_stats"]
    assert (inf["success"]["count"], inf["fail"]["count"], inf["queue"]["count"]) == ("6", "1", "6")
    phases = [inf[k] for k in ("compute_input", "compute_infer", "compute_output")]
    assert [p["count"] for p in phases] == ["6"] * 3  # equal counts: what perf_analyzer requires
    assert all(int(p["ns"]) > 0 for p in phases) and int(inf["fail"]["ns"]) > 0
    assert int(inf["success"]["ns"]) >= sum(int(p["ns"]) for p in phases)  # the phases are parts of the request
    assert [(b["batch_size"], *(b[k]["count"] for k in ("compute_input", "compute_infer", "compute_output")))
            for b in st["batch_stats"]] == [("1", "6", "6", "6")]
    assert not unknown["ok"] and "NOT_FOUND" in unknown["status"], unknown


_EMPTY_INFER_STATS = {k: {} for k in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
                                      "cache_hit", "cache_miss")}


@pytest.mark.parametrize("method", ["RepositoryModelLoad", "RepositoryModelUnload", "SystemSharedMemoryStatus",
                                    "SystemSharedMemoryRegister", "CudaSharedMemoryStatus", "TraceSetting",
                                    "LogSettings"])
def test_rpcs_eddy_does_not_serve_say_so(oip_server, method):
    with grpc.insecure_channel(oip_server.address) as channel, pytest.raises(grpc.RpcError) as e:
        channel.unary_unary(f"/{OIP_SERVICE}/{method}")(b"\x0a\x03abc", timeout=30)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert e.value.details().startswith(f"{OIP_SERVICE}/{method} is not implemented by eddy: ")


def test_tritonclient_calls_eddy_does_not_serve_are_unimplemented(triton):
    for method, args in (("load_model", [MODEL]), ("get_system_shared_memory_status", []),
                         ("get_trace_settings", [])):
        answer = triton.send(op="call", method=method, args=args, kwargs={})
        assert not answer["ok"] and "UNIMPLEMENTED" in answer["status"] and "not implemented by eddy" in \
            answer["message"], answer


def test_reflection_lists_the_oip_service_under_its_wire_name(oip_server):
    from google.protobuf import descriptor_pool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(oip_server.address) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        assert {OIP_SERVICE, "eddy.v1.Inference"} <= set(db.get_services())
        service = descriptor_pool.DescriptorPool(db).FindServiceByName(OIP_SERVICE)
        infer = service.methods_by_name["ModelInfer"]
        assert infer.input_type.fields_by_name["raw_input_contents"].number == 7  # the protocol's field numbers
        assert service.methods_by_name["ModelStreamInfer"].client_streaming
