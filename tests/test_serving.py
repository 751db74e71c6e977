"""Sessions, batching, Predict and versions over a real server (127.0.0.1, free port)."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from _serving import OTHER, make_repo, reference, served
from conftest import MODEL

import eddy.runtime as runtime
from eddy.runtime.client import Client
from eddy.runtime.core.errors import FailedPrecondition, NotFound, ResourceExhausted
from eddy.runtime.grpc.tensors import array_to_tensor, tensor_to_samples
from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def repo(models_dir, tmp_path_factory):
    return make_repo(models_dir, tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def model(repo) -> runtime.Model:
    return runtime.load(repo / MODEL / "2")  # the latest: what an unpinned stream gets


@pytest.fixture(scope="module")
def live(repo):
    with served(repo) as s:
        yield s


@pytest.fixture()
def client(live):
    with Client(live.address) as c:
        yield c


def _chunks(series: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(series)), size=40, replace=False))
    return np.split(series, cuts)


def test_resume_after_disconnect_is_bit_for_bit(live, client, model, series):
    chunks = _chunks(series)
    expected = reference(model, chunks)
    with client.stream(MODEL, session_id="uninterrupted") as rs:
        assert rs.session_id == "uninterrupted" and not rs.resumed and rs.position == 0
        whole = [rs.push(c) for c in chunks]
    for got, want in zip(whole, expected):
        assert np.array_equal(got, want)

    split = 17
    first = client.stream(MODEL, session_id="dropped")
    before = [first.push(c) for c in chunks[:split]]
    first.close(cancel=True)  # the connection drops mid-stream
    live.until_idle("dropped")  # the server noticed the cancel and released the session
    with Client(live.address) as other_connection:
        with other_connection.stream(MODEL, session_id="dropped", resume=True) as again:
            assert again.resumed and again.position == sum(map(len, chunks[:split]))
            after = [again.push(c) for c in chunks[split:]]
    assert all(np.array_equal(a, b) for a, b in zip(before + after, whole))


def test_server_assigns_a_session_id_and_it_resumes(client, model, series):
    with client.stream(MODEL) as rs:
        sid = rs.session_id
        rs.push(series[:5])
    assert len(sid) >= 16
    with client.stream(MODEL, session_id=sid, resume=True) as rs:
        assert rs.resumed and rs.position == 5
        y = rs.push(series[5:8])
    assert np.array_equal(y, reference(model, [series[:5], series[5:8]])[1])


def test_64_concurrent_streams_through_the_batcher(live, model, series):
    n_streams, n_steps = 64, 40
    inputs = [series[i:i + n_steps] * (1 + i / 100) for i in range(n_streams)]  # distinct per stream, [T, 1]
    expected = [np.concatenate(reference(model, list(x[:, None]))) for x in inputs]  # one sample per message
    sizes_before = len(live.server.plane.batcher.recent_batch_sizes)

    async def one(stub, i: int) -> np.ndarray:
        call = stub.Stream()
        await call.write(pb.StreamRequest(open=pb.OpenStream(model=MODEL, session_id=f"c{i}")))
        assert (await call.read()).WhichOneof("kind") == "opened"
        ys = []
        for x in inputs[i]:
            await call.write(pb.StreamRequest(samples=array_to_tensor(x[None])))
            r = await call.read()
            ys.append(tensor_to_samples(r.predictions.outputs, 1)[0])
        await call.done_writing()
        return np.concatenate(ys)

    async def main() -> list[np.ndarray]:
        async with grpc.aio.insecure_channel(live.address) as channel:
            stub = pb_grpc.InferenceStub(channel)
            return await asyncio.gather(*(one(stub, i) for i in range(n_streams)))

    got = asyncio.run(main())
    for g, e in zip(got, expected):
        assert np.array_equal(g, e)  # batched single steps are bit-identical to the local stream
    sizes = list(live.server.plane.batcher.recent_batch_sizes)[sizes_before:]
    assert sum(sizes) == n_streams * n_steps and max(sizes) > 1  # steps of different sessions ran together


def test_two_streams_on_one_session_second_is_refused(client, model, series):
    with client.stream(MODEL, session_id="shared") as first:
        y1 = first.push(series[:3])
        with pytest.raises(FailedPrecondition, match="in use"):
            client.stream(MODEL, session_id="shared", resume=True)
        y2 = first.push(series[3:6])  # unaffected
    assert all(np.array_equal(a, b) for a, b in zip((y1, y2), reference(model, [series[:3], series[3:6]])))


def test_reset_export_and_close(live, client, model, series):
    with client.stream(MODEL, session_id="ctl") as rs:
        rs.push(series[:4])
        rs.reset()
        assert rs.position == 0
        assert np.array_equal(rs.push(series[:2]), reference(model, [series[:2]])[0])  # from zero again
        blob = rs.export_state()
        assert rs.position == 2
        rs.close_session()
    assert live.call(lambda: "ctl" not in live.server.plane.sessions)
    with pytest.raises(NotFound):
        client.session_state("ctl")
    with client.stream(MODEL, session_id="ctl2", state=blob) as rs:  # import
        assert rs.position == 2 and not rs.resumed
        assert np.array_equal(rs.push(series[2:5]), reference(model, [series[:2], series[2:5]])[1])


def test_state_export_import_on_a_second_server_continues_identically(repo, client, model, series):
    chunks = _chunks(series, seed=3)
    expected = reference(model, chunks)
    with client.stream(MODEL, session_id="mover") as rs:
        head = [rs.push(c) for c in chunks[:10]]
    state = client.session_state("mover")  # idle session: unary export
    assert (state.model, state.version, state.position) == (MODEL, 2, sum(map(len, chunks[:10])))
    with served(repo) as replica, Client(replica.address) as c2:
        with c2.stream(MODEL, session_id="mover", state=state.state) as rs:
            assert rs.position == state.position and rs.version == 2
            tail = [rs.push(c) for c in chunks[10:]]
    assert all(np.array_equal(a, b) for a, b in zip(head + tail, expected))
    assert client.delete_session("mover").position == state.position
    with pytest.raises(NotFound):
        client.delete_session("mover")


def test_predict_equals_local_predict_and_chains_with_streams(client, model, series):
    x = np.stack([series[:50], series[50:100] * 0.5, series[100:150]])  # [3, 50, 1]
    y, states = client.predict(MODEL, x)
    np.testing.assert_allclose(y, model.predict(x), rtol=1e-6, atol=1e-6)
    assert len(states) == 3
    y2, _ = client.predict(MODEL, series[None, 150:200], states=[states[2]])  # continue sequence 2
    full = model.predict(series[None, 100:200])
    np.testing.assert_allclose(y2[0], full[0, 50:], rtol=1e-5, atol=1e-4)
    with client.stream(MODEL, state=states[0]) as rs:  # a stream continues where Predict stopped
        assert rs.position == 50
        np.testing.assert_allclose(rs.push(series[50:60]), model.predict(series[None, :60])[0, 50:], rtol=1e-5,
                                   atol=1e-4)


def test_session_stays_on_its_version(client, repo, series):
    v1 = runtime.load(repo / MODEL / "1")
    with client.stream(MODEL, version=1, session_id="pinned") as rs:
        assert rs.version == 1
        rs.push(series[:3])
    with client.stream(MODEL, session_id="pinned", resume=True) as rs:  # unpinned resume: still version 1, not the latest 2
        assert rs.version == 1 and rs.resumed
        assert np.array_equal(rs.push(series[3:5]), reference(v1, [series[:3], series[3:5]])[1])
    with pytest.raises(FailedPrecondition, match="pinned version 2"):
        client.stream(MODEL, version=2, session_id="pinned", resume=True)
    with pytest.raises(FailedPrecondition, match="belongs to model"):
        client.stream(OTHER, session_id="pinned", resume=True)


def test_metadata_has_versions_shapes_and_training_figures(client, model):
    meta = client.metadata(MODEL)
    assert (meta.version, list(meta.versions), meta.window) == (2, [1, 2], model.manifest.window)
    assert [(s.name, list(s.shape)) for s in meta.state] == [(s.name, s.shape) for s in model.state_spec]
    assert meta.metrics and all(np.isfinite(v) for v in meta.metrics.values())
    assert meta.parity
    assert client.metadata(MODEL, 1).version == 1


def test_ttl_eviction_with_an_injected_clock(repo, series):
    now = [1000.0]
    with served(repo, session_ttl=60, clock=lambda: now[0], metrics_port=0) as live, Client(live.address) as client:
        with client.stream(MODEL, session_id="old") as rs:
            rs.push(series[:2])
        held = client.stream(MODEL, session_id="held")  # open: never evicted, however old
        now[0] += 30
        with client.stream(MODEL, session_id="young") as rs:
            rs.push(series[:2])
        now[0] += 45  # "old" idle 75 s > 60, "young" 45 s
        assert live.call(live.server.plane.evict_expired) == 1
        with pytest.raises(NotFound):
            client.stream(MODEL, session_id="old", resume=True)
        assert client.session_state("young").position == 2
        now[0] += 1000
        assert live.call(live.server.plane.evict_expired) == 1  # "young"; "held" is busy
        assert held.push(series[:1]).shape == (1, 1)
        held.close()
        assert b"eddy_session_evictions_total 2.0" in live.server.metrics.render()


def test_max_sessions_refuses_new_ones_and_never_evicts_live_ones(repo, series):
    with served(repo, max_sessions=2) as live, Client(live.address) as client:
        a = client.stream(MODEL, session_id="a")
        with client.stream(MODEL, session_id="b") as b:
            b.push(series[:1])
        with pytest.raises(ResourceExhausted, match="session limit"):
            client.stream(MODEL, session_id="c")
        with client.stream(MODEL, session_id="b", resume=True) as b:  # existing sessions still resume
            assert b.position == 1
        assert a.push(series[:2]).shape == (2, 1)
        client.delete_session("b")
        with client.stream(MODEL, session_id="c") as c:
            c.push(series[:1])
        a.close()
