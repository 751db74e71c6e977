"""Served intervals and live accuracy over a real server: eddy.v1 Stream and Fleet, the Open Inference Protocol, the
CLI, the metrics endpoint.

Every interval is compared bit for bit (``np.array_equal``) with an in-process stream fed the same samples in the
same chunks; refusals are checked to leave sessions exactly as they were.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from _serving import EDDY, chunked, served
from _store import Valkey, valkey
from conftest import LEGACY, MODEL, ROOT, SERIES_CSV

from eddy.runtime.client import AsyncClient, Client
from eddy.runtime.core.errors import FailedPrecondition, InvalidInput, NotFound
from eddy.runtime.core.monitor import Forecast
from eddy.runtime.grpc.oip import OIP_SERVICE
from eddy.v1 import oip_pb2 as oip

CHUNKS = [1, 1, 4, 1, 1, 30, 1, 2, 1, 1]


@pytest.fixture(scope="module")
def repo(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model and the pre-intervals legacy directory (served as ``legacy``)."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(models_dir / MODEL / "1", root / MODEL / "1")
    shutil.copytree(LEGACY, root / "legacy" / "1")
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[object]:
    with served(repo, metrics_port=0) as s:
        yield s


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Valkey]:
    with valkey(tmp_path_factory.mktemp("valkey")) as v:
        yield v


def _same(a: Forecast, b: Forecast) -> bool:
    return (np.array_equal(a.y, b.y) and list(a.lower) == list(b.lower)
            and all(np.array_equal(a.lower[k], b.lower[k]) and np.array_equal(a.upper[k], b.upper[k]) for k in a.lower))


@pytest.mark.parametrize("encoding", ["raw", "values"])
def test_stream_intervals_equal_local_across_chunking_and_resume(server, model, series, encoding):
    pieces = chunked(series, CHUNKS * 3)
    local = model.stream()
    want = [local.push(p, intervals=[0.95, 0.8]) for p in pieces]
    sid = f"iv-{encoding}"
    got = []
    with Client(server.address) as client:
        with client.stream(MODEL, session_id=sid, encoding=encoding, intervals=[0.95, 0.8]) as s:
            assert s.interval_levels == (0.8, 0.95) and s.intervals == (0.95, 0.8)
            got += [s.push(p) for p in pieces[:len(CHUNKS)]]
        with client.stream(MODEL, session_id=sid, resume=True, encoding=encoding) as s:  # no intervals asked
            plain = [s.push(p) for p in pieces[len(CHUNKS):2 * len(CHUNKS)]]
        with client.stream(MODEL, session_id=sid, resume=True, encoding=encoding, intervals=[0.95, 0.8]) as s:
            got += [s.push(p) for p in pieces[2 * len(CHUNKS):]]
    for i, (g, w) in enumerate(zip(got, want[:len(CHUNKS)] + want[2 * len(CHUNKS):])):
        assert _same(g, w), i
    assert all(np.array_equal(p, w.y) for p, w in zip(plain, want[len(CHUNKS):2 * len(CHUNKS)]))


def test_intervals_move_with_the_session_to_another_replica(repo, model, series, store):
    """Two servers sharing Valkey: a session driven on one, resumed by id on the other, and moved by its exported
    bytes to a third session: each answer as one local stream's."""
    store.client().flushdb()
    pieces = chunked(series, CHUNKS * 3)
    local = model.stream()
    want = [local.push(p, intervals=True) for p in pieces]
    got = []
    with served(repo, session_store=store.url) as a, served(repo, session_store=store.url) as b:
        with Client(a.address) as ca, Client(b.address) as cb:
            with ca.stream(MODEL, session_id="moving", intervals=[0.8, 0.95]) as s:
                got += [s.push(p) for p in pieces[:len(CHUNKS)]]
            with cb.stream(MODEL, session_id="moving", resume=True, intervals=[0.8, 0.95]) as s:
                got += [s.push(p) for p in pieces[len(CHUNKS):2 * len(CHUNKS)]]
                blob = s.export_state()
            with ca.stream(MODEL, session_id="moved", state=blob, intervals=[0.8, 0.95]) as s:
                got += [s.push(p) for p in pieces[2 * len(CHUNKS):]]
    assert all(_same(g, w) for g, w in zip(got, want))


def test_a_level_shift_raises_the_drift_alarm_served_as_locally(repo, model, series, store):
    """A level shift served through two replicas sharing Valkey: the session's drift statistics are carried in its
    record (written on one server, resumed on the other, through a chunk holding the shift) and equal a local
    stream's fed the same chunks, bit for bit; the alarm rises at the shift."""
    store.client().flushdb()
    t0 = model.manifest.training["split_rows"]["test"][0]
    x = series.copy()
    x[t0:] += np.float32(300.0)  # 22 validation MAEs (see test_intervals.py)
    first, rest = chunked(x, [100, 100, t0 - 200]), chunked(x, [1, 6, 1, 1], start=t0 - 1)
    local = model.stream()
    for p in first:
        local.push(p)
    before = local.live
    for p in rest:
        local.push(p)
    after = local.live
    with served(repo, session_store=store.url) as a, served(repo, session_store=store.url) as b:
        with Client(a.address) as ca, Client(b.address) as cb:
            with ca.stream(MODEL, session_id="shifted", intervals=[0.8]) as s:
                for p in first:
                    s.push(p)
            on_a = ca.live_accuracy(MODEL, session_id="shifted")
            with cb.stream(MODEL, session_id="shifted", resume=True) as s:
                for p in rest:
                    s.push(p)
            on_b = cb.live_accuracy(MODEL, session_id="shifted")
            resumed = ca.live_accuracy(MODEL, session_id="shifted")  # a reads the record b wrote
    assert not before.drift and after.drift and after.cusum[0] > before.cusum[0] + 20
    assert (list(on_a.cusum), on_a.drift) == (list(before.cusum), False)
    for got in (on_b, resumed):
        assert (list(got.cusum), got.drift, got.actuals) == (list(after.cusum), True, after.actuals)


def test_refused_interval_requests_change_nothing(server, model, series):
    with Client(server.address) as client:
        with client.stream(MODEL, session_id="plain") as s:
            s.push(series[:5])
        with pytest.raises(InvalidInput, match=r"levels 0.8, 0.95 .*not 0.9"):
            client.stream(MODEL, session_id="plain", resume=True, intervals=[0.9])
        with pytest.raises(FailedPrecondition, match=r"no interval calibration.*eddy export .*--data"):
            client.stream("legacy", session_id="old", intervals=[0.8])
        with pytest.raises(NotFound):
            client.session_state("old")  # the refused open created nothing
        with client.stream("legacy", session_id="old") as s:  # without intervals it serves as before
            assert s.interval_levels == () and s.push(series[:3]).shape == (3, 1)
        with client.stream(MODEL, session_id="plain", resume=True, intervals=[0.8]) as s:
            assert s.position == 5
            reference = model.stream()
            reference.push(series[:5])
            assert _same(s.push(series[5:8]), reference.push(series[5:8], intervals=0.8))


def test_fleet_answers_carry_each_sessions_intervals(server, model, series):
    x = np.stack([series[11 * i:11 * i + 6] for i in range(3)])  # [3, 6, 1]
    with Client(server.address) as client, client.fleet(MODEL, intervals=[0.8]) as fleet:
        assert fleet.interval_levels == (0.8, 0.95)
        first = fleet.push(["fa", "fb", "fc"], x[:, :4])
        second = fleet.push(["fa", "fb", "fc"], x[:, 4:])
    for i in range(3):
        local = model.stream()
        want = [local.push(x[i, t:t + 1], intervals=0.8) for t in range(6)]  # one sample per push
        lower = np.concatenate([first.lower[0.8][i], second.lower[0.8][i]])
        upper = np.concatenate([first.upper[0.8][i], second.upper[0.8][i]])
        assert np.array_equal(lower, np.concatenate([w.lower[0.8] for w in want]))
        assert np.array_equal(upper, np.concatenate([w.upper[0.8] for w in want]))


async def _async_stream(address: str, pieces: list[np.ndarray]) -> list[Forecast]:
    async with AsyncClient(address) as client, client.stream(MODEL, intervals=[0.8]) as s:
        return [await s.push(p) for p in pieces]


def test_the_asyncio_client_gets_the_same_intervals(server, model, series):
    import asyncio

    pieces = chunked(series, CHUNKS)
    local = model.stream()
    assert all(_same(g, local.push(p, intervals=0.8)) for g, p in zip(asyncio.run(_async_stream(server.address,
                                                                                                  pieces)), pieces))


def _infer(address: str, request: oip.ModelInferRequest) -> oip.ModelInferResponse:
    with grpc.insecure_channel(address) as channel:
        rpc = channel.unary_unary(f"/{OIP_SERVICE}/ModelInfer", request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=oip.ModelInferResponse.FromString)
        return rpc(request, timeout=30)


def _request(x: np.ndarray, model: str = MODEL, outputs: tuple[str, ...] = (),
             **params: oip.InferParameter) -> oip.ModelInferRequest:
    inp = oip.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)
    return oip.ModelInferRequest(model_name=model, inputs=[inp], parameters=params, raw_input_contents=[
        x.astype("<f4").tobytes()], outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs])


def _outputs(r: oip.ModelInferResponse) -> dict[str, np.ndarray]:
    return {o.name: np.frombuffer(raw, "<f4").reshape(list(o.shape)) for o, raw in zip(r.outputs,
                                                                                         r.raw_output_contents)}


def test_oip_intervals_on_request(server, model, series):
    with grpc.insecure_channel(server.address) as channel:
        meta = channel.unary_unary(f"/{OIP_SERVICE}/ModelMetadata", request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=oip.ModelMetadataResponse.FromString)
        names = [o.name for o in meta(oip.ModelMetadataRequest(name=MODEL), timeout=30).outputs]
    assert names == ["y", "y_lower_80", "y_upper_80", "y_lower_95", "y_upper_95"]
    local = model.stream()
    sizes = [1, 3, 1, 1, 5]
    for i, x in enumerate(chunked(series, sizes)):
        seq = {"sequence_id": oip.InferParameter(string_param="oip-iv"),
               "sequence_start": oip.InferParameter(bool_param=i == 0)}
        if i % 2:  # the parameter, or the outputs by name
            r = _infer(server.address, _request(x, interval=oip.InferParameter(string_param="0.8"), **seq))
            want = local.push(x, intervals=0.8)
            assert [o.name for o in r.outputs] == ["y", "y_lower_80", "y_upper_80"]
        else:
            r = _infer(server.address, _request(x, outputs=("y_upper_95", "y"), **seq))
            want = local.push(x, intervals=0.95)
            assert [o.name for o in r.outputs] == ["y_upper_95", "y"]
        got = _outputs(r)
        assert np.array_equal(got["y"], want.y)
        for name, a in got.items():
            if name != "y":
                side, pct = name.split("_")[1:]
                assert np.array_equal(a, getattr(want, side)[float(pct) / 100])


@pytest.mark.parametrize(("model_name", "params", "outputs", "code", "words"), [
    (MODEL, {"interval": oip.InferParameter(string_param="0.9")}, (), grpc.StatusCode.INVALID_ARGUMENT,
     "levels 0.8, 0.95"),
    (MODEL, {"interval": oip.InferParameter(string_param="eighty")}, (), grpc.StatusCode.INVALID_ARGUMENT,
     "interval must be a string of levels"),
    (MODEL, {}, ("y_median",), grpc.StatusCode.INVALID_ARGUMENT, "has outputs `y`, `y_lower_80`"),
    ("legacy", {"interval": oip.InferParameter(double_param=0.8)}, (), grpc.StatusCode.FAILED_PRECONDITION,
     "no interval calibration"),
    ("legacy", {}, ("y_lower_80",), grpc.StatusCode.FAILED_PRECONDITION, "--data FILE.csv"),
])
def test_oip_interval_refusals(server, model, series, model_name, params, outputs, code, words):
    seq = {"sequence_id": oip.InferParameter(string_param=f"refused-{model_name}")}
    start = {**seq, "sequence_start": oip.InferParameter(bool_param=True)}
    first = _outputs(_infer(server.address, _request(series[:2], model_name, **start)))["y"]
    with pytest.raises(grpc.RpcError) as e:
        _infer(server.address, _request(series[2:3], model_name, outputs, **seq, **params))
    assert e.value.code() == code and words in e.value.details()
    reference = (model if model_name == MODEL else __import__("eddy.runtime", fromlist=["load"]).load(LEGACY)).stream()
    assert np.array_equal(reference.push(series[:2]), first)
    assert np.array_equal(_outputs(_infer(server.address, _request(series[2:3], model_name, **seq)))["y"],
                          reference.push(series[2:3]))  # the refused request changed nothing


def test_live_accuracy_per_session_and_per_model_version(server, model, series):
    """GetLiveAccuracy and GetSessionState: a session's figures are its local twin's; the model version's are pooled
    over its sessions; the metrics endpoint exports them per model version."""
    local = model.stream()
    with Client(server.address) as client:
        with client.stream(MODEL, session_id="live-1") as s:
            for p in chunked(series, [1] * 40 + [20, 60]):
                s.push(p)
                local.push(p)
        mine = client.live_accuracy(MODEL, session_id="live-1")
        state = client.session_state("live-1")
        pooled = client.live_accuracy(MODEL)
        with pytest.raises(NotFound):
            client.live_accuracy(MODEL, session_id="no-such-session")
        with pytest.raises(NotFound):
            client.live_accuracy("legacy", session_id="live-1")  # a session of another model
    want = local.live
    for got in (mine, state.live):
        assert got.actuals == want.actuals == 119 and got.window == want.window
        assert dict(got.rmse) == want.rmse and dict(got.mae) == want.mae
        assert dict(got.coverage) == {f"{k:g}": v for k, v in want.coverage.items()}
        assert got.error_ratio == pytest.approx(want.error_ratio) and got.drift == want.drift
    assert pooled.actuals >= 119 and set(pooled.rmse) == {"model", "persistence"} and pooled.session_id == ""
    assert set(pooled.test_rmse) == {"model", "persistence"} and set(pooled.test_coverage) == {"0.8", "0.95"}
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.server.metrics_port}/metrics", timeout=10).read().decode()
    for series_name in ('eddy_live_rmse{model="sunspots",predictor="model",version="1"}',
                        'eddy_live_rmse{model="sunspots",predictor="persistence",version="1"}',
                        'eddy_live_error_ratio{model="sunspots",version="1"}',
                        'eddy_interval_coverage{level="0.8",model="sunspots",version="1"}',
                        'eddy_drift{model="sunspots",version="1"} 0.0'):
        assert series_name in text, series_name
    labels = {name: set(re.findall(r'(\w+)="', rest)) for name, rest in
              re.findall(r"^(eddy_live_rmse|eddy_live_error_ratio|eddy_interval_coverage|eddy_drift)\{([^}]*)\}", text,
                         re.M)}
    assert labels == {"eddy_live_rmse": {"model", "version", "predictor"}, "eddy_live_error_ratio": {"model", "version"},
                      "eddy_interval_coverage": {"model", "version", "level"}, "eddy_drift": {"model", "version"}}
    # (bounded cardinality: per model version, never per session)


def test_eddy_stream_and_info_show_intervals_and_live_accuracy(server, model, series):
    """eddy stream --interval: lower/upper columns after each prediction, served == local; eddy info --live."""
    runs = [subprocess.run([*EDDY, "stream", *where, "--csv", str(SERIES_CSV), "--interval", "0.8"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
            for where in (["--server", server.address, "--model", MODEL], ["--local", str(ROOT / "models" / MODEL)])]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert runs[0].stdout == runs[1].stdout
    lines = runs[0].stdout.splitlines()
    assert lines[0] == "year,sunspots,pred_sunspots,lower_sunspots,upper_sunspots"
    one_by_one = model.stream()  # eddy stream pushes one row at a time: the same chunking, the same bits
    f = [one_by_one.push(series[i:i + 1], intervals=0.8) for i in range(len(series))][-1]
    assert lines[-1].split(",")[2:] == [f"{v:.9g}" for v in (f.y[-1, 0], f.lower[0.8][-1, 0], f.upper[0.8][-1, 0])]
    info = subprocess.run([*EDDY, "info", "--live", "--server", server.address, MODEL], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert info.returncode == 0, info.stderr
    out = info.stdout
    assert f"sunspots v1 on {server.address} (pooled over its sessions on this server)" in out
    test_rmse = f"{model.manifest.metrics['streamed']['rmse']:.4g}"  # the test part's figure next to the live ones
    assert re.search(rf"^model\s+[\d.]+\s+[\d.]+\s+{re.escape(test_rmse)}$", out, re.M) and "coverage 80%" in out
    assert re.search(r"^drift\s+no \(CUSUM statistics", out, re.M)
    bad = subprocess.run([*EDDY, "info", "--live", MODEL], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "--live and --server go together" in bad.stderr
