"""The Fleet RPC over a real server: many sessions per message, each answered as its own one-sample stream.

Every answer is compared bit for bit (``np.array_equal``) with an in-process
stream fed the same samples one at a time; the sessions are the same ones a
Stream or an OIP sequence resumes, on the memory store and on a real Valkey.
"""

from __future__ import annotations

import asyncio
import csv
import io
import queue
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from _models import make_onnx_rnn
from _serving import OTHER, make_repo, served
from _store import Valkey, valkey
from conftest import MODEL, ROOT, ThreadedServer

from eddy.cli.main import main
from eddy.runtime.client import AsyncClient, Client
from eddy.runtime.core.errors import EddyError, InvalidInput
from eddy.runtime.core.statecodec import MAX_POSITION, StateKeys, encode_state
from eddy.runtime.grpc.oip import OIP_SERVICE
from eddy.runtime.grpc.security import Security, TokenTable, new_token, token_digest
from eddy.runtime.grpc.tensors import array_to_tensor
from eddy.runtime.serving.config import ServeConfig
from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc
from eddy.v1 import oip_pb2 as oip


def _local(model, xs: np.ndarray) -> np.ndarray:
    """A local stream's answers to ``xs[T, F]`` pushed one sample per message: ``[T, O]``."""
    s = model.stream()
    return np.concatenate([s.push(x[None]) for x in xs])


def _sensors(series: np.ndarray, n: int, length: int) -> np.ndarray:
    """``[n, length, 1]``: n different stretches of the bundled series, one per session."""
    return np.stack([series[7 * i:7 * i + length] for i in range(n)])


@pytest.fixture(scope="module")
def repo(models_dir, tmp_path_factory):
    """MODEL at versions 1 and 2 (same weights), OTHER at version 1."""
    return make_repo(models_dir, tmp_path_factory.mktemp("repo"))


KEYS = StateKeys((b"fleet-test-state-key-" * 2,))  # the server's --state-key, so a test can sign state bytes


@pytest.fixture(scope="module")
def server(repo) -> Iterator[ThreadedServer]:
    with served(repo, Security(state_keys=KEYS), max_samples_per_message=8) as s:
        yield s


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[Valkey]:
    with valkey(tmp_path_factory.mktemp("valkey")) as v:
        yield v


@pytest.fixture(params=["memory", "valkey"])
def any_store(request, models_dir, store) -> Iterator[ThreadedServer]:
    """A server on the memory store or on the (emptied) Valkey store."""
    config = {}
    if request.param == "valkey":
        store.client().flushdb()
        config["session_store"] = store.url
    with served(models_dir, **config) as s:
        yield s


def _code(call) -> tuple[str, str]:
    with pytest.raises(EddyError) as e:
        call()
    return e.value.code, e.value.message


def _infer_oip(address: str, sid: str, x: np.ndarray) -> np.ndarray:
    """One Open Inference Protocol request continuing sequence ``sid`` by ``x[n, 1]``."""
    inp = oip.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)
    request = oip.ModelInferRequest(model_name=MODEL, inputs=[inp], raw_input_contents=[x.astype("<f4").tobytes()],
                                    parameters={"sequence_id": oip.InferParameter(string_param=sid)})
    with grpc.insecure_channel(address) as channel:
        rpc = channel.unary_unary(f"/{OIP_SERVICE}/ModelInfer", request_serializer=oip.ModelInferRequest.SerializeToString,
                                  response_deserializer=oip.ModelInferResponse.FromString)
        r = rpc(request, timeout=30)
    return np.frombuffer(r.raw_output_contents[0], "<f4").reshape(-1, 1)


def test_each_session_gets_what_its_own_one_sample_stream_gets(server, model, series):
    """Chunks (k samples per session run as k step calls), rosters that change, reorder and shrink, both encodings."""
    n, ids = 6, [f"exact-{i}" for i in range(6)]
    x = _sensors(series, n, 14)  # [N, 14, 1]
    got: list[list[np.ndarray]] = [[] for _ in range(n)]
    plan = [(list(range(n)), 0, 3), (list(range(n)), 3, 4), ([4, 1, 2], 4, 6), (list(range(n)), 4, 5),
            ([5, 0], 6, 9)]  # (sessions, from, to) per message; sessions 1, 2 and 4 skip one of them
    at = [0] * n
    with Client(server.address) as c:
        for encoding in ("raw", "values"):
            at = [0] * n
            got = [[] for _ in range(n)]
            prefix = f"{encoding}-"
            with c.fleet(MODEL, encoding=encoding) as fleet:
                assert (fleet.model, fleet.version, fleet.features) == (MODEL, 2, model.features)
                for rows, a, b in plan:
                    rows_x = np.stack([x[i, at[i]:at[i] + (b - a)] for i in rows])  # [len(rows), k, 1]
                    r = fleet.push([prefix + ids[i] for i in rows], rows_x)
                    assert r.errors == {} and r.y.shape == (len(rows), b - a, 1)
                    assert r.offsets.tolist() == [at[i] for i in rows]
                    for j, i in enumerate(rows):
                        got[i].append(r.y[j])
                        at[i] += b - a
            for i in range(n):
                np.testing.assert_array_equal(np.concatenate(got[i]), _local(model, x[i, :at[i]]))


def test_resume_across_fleet_stream_and_oip_sequence(any_store, model, series):
    """A session is one session whichever RPC drives it; a fleet holds its sessions until it ends."""
    s = any_store
    x = _sensors(series, 3, 12)
    ids, a = ["r-0", "r-1", "r-2"], []
    with Client(s.address) as c:
        with c.fleet(MODEL) as fleet:
            first = fleet.push(ids, x[:, :2])
            second = fleet.push(ids, x[:, 2:3])
            assert not first.errors and not second.errors
            code, message = _code(lambda: c.stream(MODEL, session_id="r-0", resume=True))
            assert code == "FAILED_PRECONDITION" and "in use" in message  # held by the fleet
        s.until(lambda: s.server.plane.sessions.busy_count == 0)
        a += [first.y[0], second.y[0]]
        with c.stream(MODEL, session_id="r-0", resume=True) as rs:  # the Stream continues where the fleet was
            assert rs.position == 3
            a += [rs.push(x[0, 3:4]), rs.push(x[0, 4:5])]
        s.until(lambda: s.server.plane.sessions.busy_count == 0)
        a += [_infer_oip(s.address, "r-0", x[0, 5:6]), _infer_oip(s.address, "r-0", x[0, 6:7])]  # an OIP sequence
        with c.fleet(MODEL) as fleet:
            third = fleet.push(["r-1", "r-0"], np.stack([x[1, 3:5], x[0, 7:9]]), resume=True)
            assert not third.errors and third.offsets.tolist() == [3, 7]
            a.append(third.y[1])
        assert c.session_state("r-0").position == 9
    np.testing.assert_array_equal(np.concatenate(a), _local(model, x[0, :9]))
    np.testing.assert_array_equal(np.concatenate([first.y[1], second.y[1], third.y[0]]), _local(model, x[1, :5]))
    np.testing.assert_array_equal(np.concatenate([first.y[2], second.y[2]]), _local(model, x[2, :3]))


class _Tracked:
    """Pushes through a fleet, keeping each session's answered samples and answers (refused rows are not fed)."""

    def __init__(self) -> None:
        self.fed: dict[str, list[np.ndarray]] = {}
        self.got: dict[str, list[np.ndarray]] = {}

    def push(self, fleet, sids: list[str], xs: np.ndarray, **kw: object):
        r = fleet.push(sids, xs, **kw)
        for j, sid in enumerate(sids):
            if j not in r.errors:
                assert r.offsets[j] == sum(map(len, self.fed.get(sid, [])))
                self.fed.setdefault(sid, []).append(xs[j])
                self.got.setdefault(sid, []).append(r.y[j])
        return r

    def check(self, model) -> None:
        for sid, xs in self.fed.items():
            np.testing.assert_array_equal(np.concatenate(self.got[sid]), _local(model, np.concatenate(xs)), sid)


def test_a_bad_row_fails_alone_and_its_session_is_unchanged(server, model, series):
    x = _sensors(series, 5, 8)
    ids, t = ["bad-0", "bad-1", "bad-2", "bad-3"], _Tracked()
    with Client(server.address) as c:
        with c.stream(MODEL, 1, session_id="bad-v1") as v1:  # started on version 1; the fleet runs version 2
            v1.push(series[:1])
        with c.stream(OTHER, session_id="bad-other") as other:
            other.push(series[:1])
        with c.fleet(MODEL) as fleet:
            assert not t.push(fleet, ids, x[:4, :2]).errors
            nan = x[:4, 2:4].copy()
            nan[1, 1, 0] = np.nan
            holder = c.stream(MODEL, session_id="bad-busy")
            bad = t.push(fleet, [*ids, "bad-busy", "", "bad-v1", "bad-other"], np.concatenate([nan, x[:4, 4:6]]),
                         resume=True)  # the held ones just continue; the others must exist
            assert set(bad.errors) == {1, 4, 5, 6, 7}
            assert bad.errors[1].code == "INVALID_ARGUMENT" and "sample 1, feature 0 is nan" in bad.errors[1].message
            assert bad.errors[4].code == "FAILED_PRECONDITION" and "in use" in bad.errors[4].message
            assert bad.errors[5].code == "INVALID_ARGUMENT"  # an empty id
            long = t.push(fleet, [*ids, "x" * 129], np.concatenate([x[:4, 6:7], x[:1, :1]]))
            assert list(long.errors) == [4] and "1-128 printable" in long.errors[4].message
            assert bad.errors[6].code == "FAILED_PRECONDITION" and "version 2" in bad.errors[6].message
            assert bad.errors[7].code == "FAILED_PRECONDITION" and OTHER in bad.errors[7].message
            assert np.isnan(bad.y[list(bad.errors)]).all() and bad.offsets[1] == 2  # held, unchanged
            inf = x[:4, 4:6].copy()
            inf[3, 0, 0] = np.inf
            r = t.push(fleet, ids, inf)
            assert list(r.errors) == [3] and "is inf" in r.errors[3].message
            holder.close()
            server.until(lambda: not server.server.plane.sessions.get("bad-busy").busy)
            again = t.push(fleet, [*ids, "bad-busy"], x[:, 6:8], resume=True)  # the free one joins this time
            assert not again.errors
    t.check(model)
    assert [len(np.concatenate(t.fed[sid])) for sid in ids] == [9, 7, 9, 7]


def test_the_last_position_fails_its_entry(server, repo, series):
    import eddy.runtime as runtime

    model = runtime.load(repo / MODEL / "2")
    blob = encode_state(model, MAX_POSITION - 1, model.zero_state(1), keys=KEYS)  # what a key holder could sign
    with Client(server.address) as c:
        c.stream(MODEL, session_id="edge", state=blob).close()
        server.until(lambda: not server.server.plane.sessions.get("edge").busy)
        with c.fleet(MODEL) as fleet:
            r = fleet.push(["edge", "edge-ok"], series[:4].reshape(2, 2, 1), resume=False)
            assert r.errors[0].code == "ALREADY_EXISTS"
            r = fleet.push(["edge", "edge-ok"], series[:4].reshape(2, 2, 1), resume=True)
            assert list(r.errors) == [0] and "would pass position" in r.errors[0].message
            assert r.offsets.tolist() == [MAX_POSITION - 1, 2]  # edge-ok was created by the push before
            r = fleet.push(["edge"], series[:1])
            assert not r.errors and r.offsets.tolist() == [MAX_POSITION - 1]


def test_unknown_existing_and_repeated_ids(server, model, series):
    x, t = _sensors(series, 2, 4), _Tracked()
    with Client(server.address) as c:
        with c.fleet(MODEL) as fleet:
            t.push(fleet, ["known"], x[:1, :1])
        with c.fleet(MODEL) as fleet:
            r = t.push(fleet, ["known", "nobody"], x[:, 1:2], resume=True)
            assert list(r.errors) == [1] and r.errors[1].code == "NOT_FOUND"
            assert not t.push(fleet, ["known2", "known"], x[:, 2:3]).errors  # "known" is held now: it continues
        with c.fleet(MODEL) as fleet:
            r = t.push(fleet, ["known"], x[:1, 3:4])  # not held here, exists, no resume
            assert r.errors[0].code == "ALREADY_EXISTS"
            code, message = _code(lambda: fleet.push(["known", "twice", "known"], np.ones((3, 1, 1))))
            assert code == "INVALID_ARGUMENT" and "named twice" in message and "rows 0 and 2" in message
            assert not t.push(fleet, ["known"], x[:1, 3:4], resume=True).errors
    assert server.server.plane.sessions.get("twice") is None  # the refused message opened nothing
    t.check(model)


def _raw_fleet(address: str, requests: list[pb.FleetRequest],
               metadata: tuple[tuple[str, str], ...] = ()) -> tuple[list[pb.FleetResponse], grpc.RpcError | None]:
    """Send ``requests`` on one Fleet RPC as they are; the responses, and the error that ended it (if any)."""
    with grpc.insecure_channel(address) as channel:
        call = pb_grpc.InferenceStub(channel).Fleet(iter(requests), timeout=30, metadata=metadata)
        out: list[pb.FleetResponse] = []
        try:
            for response in call:
                out.append(response)
        except grpc.RpcError as e:
            return out, e
    return out, None


def _samples(ids: list[str], x: np.ndarray, **tensor: object) -> pb.FleetRequest:
    t = array_to_tensor(x) if not tensor else pb.Tensor(**tensor)  # type: ignore[arg-type]
    return pb.FleetRequest(samples=pb.FleetSamples(session_ids=ids, samples=t))


def test_a_refused_message_changes_nothing_and_forgets_the_roster(server, model, series):
    """Message-level refusals are in-band errors; the stream stays open; a later message must name its sessions."""
    x = _sensors(series, 2, 3)
    ids = ["msg-0", "msg-1"]
    requests = [
        pb.FleetRequest(open=pb.FleetOpen(model=MODEL)),
        _samples([], x[:, :1]),  # no ids on the first message
        _samples(ids, x[:, :1]),  # fine: steps both
        _samples([], np.ones((2, 1, 3), np.float32)),  # 3 features for a 1-feature model
        _samples([], x[:, 1:2]),  # the refusal forgot the roster: refused too
        _samples(ids, np.ones((3, 1, 1), np.float32)),  # 3 rows for 2 sessions
        _samples(ids, None, shape=[2, 1, 1], raw=b"\0" * 4),  # data length != shape
        _samples(ids, None, shape=[2, 1, 1]),  # no data at all
        _samples(ids, np.ones((2, 9, 1), np.float32)),  # 9 samples per session, over --max-samples-per-message 8
        pb.FleetRequest(open=pb.FleetOpen(model=MODEL)),  # a second open
        pb.FleetRequest(samples=pb.FleetSamples()),  # no samples at all
        _samples(ids, x[:, 1:3]),  # and the sessions carry on exactly
    ]
    responses, error = _raw_fleet(server.address, requests)
    assert error is None and [r.WhichOneof("kind") for r in responses] == \
        ["opened", "error", "predictions", *["error"] * 8, "predictions"]
    codes = [grpc.StatusCode.INVALID_ARGUMENT.value[0]] * 6 + [grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
                                                               grpc.StatusCode.FAILED_PRECONDITION.value[0],
                                                               grpc.StatusCode.INVALID_ARGUMENT.value[0]]
    assert [r.error.code for r in responses if r.WhichOneof("kind") == "error"] == codes
    assert "must carry session_ids" in responses[1].error.message and "limit is 8" in responses[8].error.message
    last = responses[-1].predictions
    assert np.frombuffer(last.offsets, "<u8").tolist() == [1, 1]
    y = np.frombuffer(last.outputs.raw, "<f4").reshape(2, 2, 1)
    first = np.frombuffer(responses[2].predictions.outputs.raw, "<f4").reshape(2, 1, 1)
    for i in range(2):
        np.testing.assert_array_equal(np.concatenate([first[i], y[i]]), _local(model, x[i, :3]))


@pytest.mark.parametrize("requests, code, words", [
    ([pb.FleetRequest(samples=pb.FleetSamples())], grpc.StatusCode.FAILED_PRECONDITION, "must be `open`"),
    ([pb.FleetRequest(open=pb.FleetOpen(model="nope"))], grpc.StatusCode.NOT_FOUND, "nope"),
    ([pb.FleetRequest(open=pb.FleetOpen(model=MODEL, version="9"))], grpc.StatusCode.NOT_FOUND, "9"),
    ([pb.FleetRequest(open=pb.FleetOpen(model=MODEL, version="v1"))], grpc.StatusCode.INVALID_ARGUMENT, "v1"),
])
def test_what_ends_a_fleet_rpc(server, requests, code, words):
    responses, error = _raw_fleet(server.address, requests)
    assert responses == [] and error is not None and error.code() == code and words in error.details()


def test_an_answer_over_the_message_limit_is_refused_before_it_runs(server, model, series):
    x = _sensors(series, 2, 2)
    ids = [f"b{i}" for i in range(6)]
    with Client(server.address, max_message_bytes=280) as c, c.fleet(MODEL) as fleet:  # the client's limit
        code, message = _code(lambda: fleet.push(ids, np.ones((6, 8, 1))))  # 192 bytes of answers + offsets
        assert code == "RESOURCE_EXHAUSTED" and "280-byte message limit" in message
        r = fleet.push(ids[:2], x)
        assert not r.errors and r.offsets.tolist() == [0, 0]  # nothing ran before
    np.testing.assert_array_equal(r.y[1], _local(model, x[1]))


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> tuple[dict[str, str], TokenTable]:
    toks = {t: new_token() for t in ("alpha", "beta")}
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text("".join(f"{t} {token_digest(k)}\n" for t, k in toks.items()))
    return toks, TokenTable(path)


@pytest.mark.parametrize("store_kind", ["memory", "valkey"])
def test_session_limits_and_tenants_apply_per_session(models_dir, tokens, store, store_kind, series):
    config = ServeConfig(max_sessions=3, max_sessions_per_tenant=2,
                         session_store=store.url if store_kind == "valkey" else "")
    if store_kind == "valkey":
        store.client().flushdb()
    s = ThreadedServer(models_dir, config, Security(tokens=tokens[1]))
    alpha, beta = (Client(s.address, token=tokens[0][t], timeout=10) for t in ("alpha", "beta"))
    try:
        with alpha.fleet(MODEL) as fa:
            r = fa.push(["t-1", "t-2", "t-3"], series[:3])
            assert list(r.errors) == [2] and r.errors[2].code == "RESOURCE_EXHAUSTED"
            assert "--max-sessions-per-tenant" in r.errors[2].message
        with beta.fleet(MODEL) as fb:
            r = fb.push(["t-1"], series[:1], resume=True)  # alpha's t-1 is not there for beta
            assert r.errors[0].code == "NOT_FOUND"
            r = fb.push(["t-1", "t-2"], series[:2])  # beta's own t-1; the fourth live session is one too many
            assert list(r.errors) == [1] and "--max-sessions)" in r.errors[1].message
        assert _code(lambda: beta.session_state("t-2"))[0] == "NOT_FOUND"
        assert alpha.session_state("t-1").position == 1 and beta.session_state("t-1").position == 1
        unauth = Client(s.address, timeout=10)
        with pytest.raises(EddyError) as e:
            with unauth.fleet(MODEL) as f:
                f.push(["t-1"], series[:1])
        assert e.value.code == "UNAUTHENTICATED"
        unauth.close()
    finally:
        alpha.close()
        beta.close()
        s.stop()


def test_async_fleet_and_pipelines(server, model, series):
    """AsyncClient.fleet and both clients' pipelines (several messages in flight) answer exactly."""
    x = _sensors(series, 5, 12)
    ids = [f"pipe-{i}" for i in range(5)]

    async def drive() -> list[np.ndarray]:
        async with AsyncClient(server.address) as c, c.fleet(MODEL) as fleet:
            out = [(await fleet.push(ids, x[:, :2])).y]
            out += [r.y async for r in fleet.pipeline(((ids, x[:, j:j + 1]) for j in range(2, 8)), window=3)]
            return out

    ys = asyncio.run(drive())
    with Client(server.address) as c, c.fleet(MODEL) as fleet:
        ys += [r.y for r in fleet.pipeline(((ids, x[:, j:j + 2]) for j in range(8, 12, 2)), resume=True, window=2)]
        with pytest.raises(EddyError) as e:  # a refused message in a pipeline raises and ends the fleet
            list(fleet.pipeline([(ids, x[:, :1]), (["a", "a"], x[:2, :1]), (ids, x[:, :1])], window=3))
        assert e.value.code == "INVALID_ARGUMENT" and fleet.closed
    got = np.concatenate(ys, axis=1)  # [5, 12, 1]
    for i in range(5):
        np.testing.assert_array_equal(got[i], _local(model, x[i]))
    server.until(lambda: not server.server.plane.sessions.get("pipe-0").busy)  # the cancelled fleet let go
    with Client(server.address) as c:  # the message behind the refused one named its sessions: it ran if it
        assert c.session_state("pipe-0").position in (13, 14)  # arrived before the cancellation (its answer is lost)


def test_client_checks_shapes_before_sending(server):
    with Client(server.address) as c, c.fleet(MODEL) as fleet:
        with pytest.raises(InvalidInput, match=r"\[N=2, k >= 1, 1\]"):
            fleet.push(["a", "b"], np.ones((3, 1)))
        with pytest.raises(InvalidInput, match="not one string"):
            fleet.push("ab", np.ones((2, 1)))


@pytest.fixture(scope="module")
def three_features(tmp_path_factory):
    """A seeded RNN over 3 features (step and Scan sequence graphs written with onnx.helper)."""
    root = tmp_path_factory.mktemp("tiny3")
    make_onnx_rnn(root / "tiny3" / "1", features=3, name="tiny3")
    return root


def test_multi_feature_rows_keep_their_features(three_features):
    import eddy.runtime as runtime

    model = runtime.load(three_features / "tiny3")
    x = np.random.default_rng(0).normal(70, 40, size=(4, 5, 3)).astype(np.float32)  # [N, k, F=3]
    with served(three_features) as s, Client(s.address) as c, c.fleet("tiny3") as fleet:
        a, b = fleet.push(list("wxyz"), x[:, :2]), fleet.push(list("wxyz"), x[:, 2:])
    for i in range(4):
        np.testing.assert_array_equal(np.concatenate([a.y[i], b.y[i]]), _local(model, x[i]))


def _wide_csv(path, series: np.ndarray, rows: int) -> np.ndarray:
    cols = _sensors(series, 3, rows)[:, :, 0]  # [3, rows]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["month", "north", "south", "east"])
        for t in range(rows):
            w.writerow([f"2020-{t + 1:02d}", *(f"{v:.9g}" for v in cols[:, t])])
    return cols


def test_wide_csv_replays_as_one_fleet(server, model, series, tmp_path, three_features, capsys):
    cols = _wide_csv(tmp_path / "wide.csv", series, 10)
    args = ["stream", "--csv", str(tmp_path / "wide.csv"), "--fleet"]
    on_server = [*args, "--server", server.address, "--model", MODEL, "--session-prefix", "csv-"]
    assert main(on_server) == 0
    served_out = capsys.readouterr().out
    assert main([*args, "--local", str(ROOT / "models" / MODEL)]) == 0
    assert capsys.readouterr().out == served_out  # served == local, to the last printed digit
    table = list(csv.DictReader(io.StringIO(served_out)))
    assert list(table[0]) == ["month", "north", "south", "east", "pred_north", "pred_south", "pred_east"]
    for i, name in enumerate(("north", "south", "east")):
        want = _local(model, cols[i][:, None].astype(np.float32))[:, 0]
        assert [r[f"pred_{name}"] for r in table] == [f"{v:.9g}" for v in want]
    with Client(server.address) as c:
        assert c.session_state("csv-east").position == 10  # the sessions stay, resumable by name
    assert main(on_server) == 2  # a second replay must say --resume (ALREADY_EXISTS: the user's input)
    assert "session csv-north already exists" in capsys.readouterr().err
    assert main([*on_server, "--resume", "--columns", "east"]) == 0
    again = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(again[0]) == ["month", "north", "south", "east", "pred_east"]
    want = _local(model, np.concatenate([cols[2], cols[2]])[:, None].astype(np.float32))[10:, 0]
    assert [r["pred_east"] for r in again] == [f"{v:.9g}" for v in want]
    assert main([*args, "--local", str(three_features / "tiny3")]) == 2
    assert "one-feature model; tiny3 takes 3 features" in capsys.readouterr().err
    assert main([*args[:3], "--local", str(ROOT / "models" / MODEL), "--columns", "east"]) == 2
    assert "--columns, --session-prefix and --resume go with --fleet" in capsys.readouterr().err


def test_wide_csv_bad_cell_fails_only_its_sensor(server, model, tmp_path, capsys):
    (tmp_path / "w.csv").write_text("t,a,b\n1,10,20\n2,x,21\n3,12,22\n")
    args = ["stream", "--csv", str(tmp_path / "w.csv"), "--fleet", "--server", server.address, "--model", MODEL,
            "--session-prefix", "skip-"]
    assert main([*args, "--on-bad", "skip"]) == 0
    out, err = capsys.readouterr()
    assert "line 3: column 'a' is not a number: 'x'; skipped" in err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[1]["pred_a"] == "" and rows[1]["pred_b"] != ""
    a = _local(model, np.array([[10.0], [12.0]], np.float32))[:, 0]  # the bad cell never reached the state
    assert [rows[0]["pred_a"], rows[2]["pred_a"]] == [f"{v:.9g}" for v in a]
    assert main([*args, "--session-prefix", "stop-"]) == 2  # --on-bad stop (the default): exit 2 at the cell
    assert "line 3: column 'a' is not a number" in capsys.readouterr().err


def test_a_fleet_is_one_stream_and_its_end_releases_every_session(models_dir, model, series):
    """--max-streams counts it like a Stream; cancelled or idle past --stream-idle-timeout, its sessions are free."""
    ids = ["end-0", "end-1", "end-2"]
    with served(models_dir, max_streams=1, stream_idle_timeout=0.5) as s, Client(s.address) as c:
        fleet = c.fleet(MODEL)
        first = fleet.push(ids, series[:3])
        assert _code(lambda: c.stream(MODEL))[0] == "RESOURCE_EXHAUSTED"  # the fleet is the one open stream
        fleet.close(cancel=True)
        s.until(lambda: s.server.plane.sessions.busy_count == 0)
        with c.fleet(MODEL) as again:
            second = again.push(ids, series[3:6], resume=True)
            assert second.offsets.tolist() == [1, 1, 1]
            with pytest.raises(EddyError) as e:  # nothing sent for longer than the idle timeout
                s.until(lambda: s.server.plane.sessions.busy_count == 0, timeout=20)
                again.push(ids, series[6:9])
            assert e.value.code == "DEADLINE_EXCEEDED"
        with c.stream(MODEL, session_id="end-1", resume=True) as rs:
            assert rs.position == 2
    for i in range(3):
        np.testing.assert_array_equal(np.concatenate([first.y[i], second.y[i]]),
                                      _local(model, np.stack([series[i], series[3 + i]])))


def test_a_fleet_whose_client_does_not_read_ends_at_the_idle_timeout(models_dir, model):
    """Blocked writing to a client that reads nothing: DEADLINE_EXCEEDED after the idle timeout, sessions free."""
    n, messages = 2048, 10  # 24 KiB per answer (outputs and offsets): far past a 64 KiB receive window
    ids = [f"unread-{i}" for i in range(n)]
    x = np.full((n, 1, 1), 50.0, np.float32)
    more: queue.SimpleQueue[None] = queue.SimpleQueue()

    def requests() -> Iterator[pb.FleetRequest]:
        yield pb.FleetRequest(open=pb.FleetOpen(model=MODEL))
        yield _samples(ids, x)
        for _ in range(messages - 1):
            yield _samples([], x)
        more.get()  # stays open (no half-close) until the test lets go

    with served(models_dir, stream_idle_timeout=0.5, metrics_port=0) as s:
        channel = grpc.insecure_channel(s.address, options=[("grpc.http2.bdp_probe", 0)])  # the window stays 64 KiB
        call = pb_grpc.InferenceStub(channel).Fleet(requests(), timeout=60)

        def ended() -> bool:
            text = s.server.metrics.render().decode()
            return any(line.startswith("eddy_rpcs_total{") and 'method="Fleet"' in line and
                       'code="DEADLINE_EXCEEDED"' in line and line.endswith(" 1.0") for line in text.splitlines())

        s.until(ended, timeout=40)  # 2048 sessions stepped per message until the writer blocks: seconds under load
        s.until(lambda: s.server.plane.sessions.busy_count == 0)  # released at once, not when the client reads
        answered = 0
        with pytest.raises(grpc.RpcError) as e:
            for r in call:
                answered += r.WhichOneof("kind") == "predictions"
        more.put(None)
        channel.close()
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and 0 < answered < messages
        positions = {s.server.plane.sessions.get(sid).position for sid in ids}
        assert len(positions) == 1 and answered <= positions.pop() <= messages  # every answer read was applied


def test_one_store_write_per_message_with_valkey(models_dir, store, model, series):
    """With the Valkey store, a fleet message of N sessions is one write (one COMMIT script call), then the answer."""
    store.client().flushdb()
    ids = [f"w-{i}" for i in range(8)]
    x = _sensors(series, 8, 6)

    def scripts() -> int:  # Lua script calls the store has served (EVALSHA; the first call of a script: EVAL)
        stats = store.client().info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))

    with served(models_dir, session_store=store.url, lease_s=60) as s, Client(s.address) as c:  # no renewal
        with c.fleet(MODEL) as fleet:                                                           # sweep meanwhile
            first = fleet.push(ids, x[:, :1])  # opens the 8 sessions (one script each), then writes them once
            before = scripts()
            rest = [fleet.push(ids, x[:, j:j + 1]) for j in range(1, 6)]
            assert scripts() - before == 5
    for i in range(8):
        np.testing.assert_array_equal(np.concatenate([first.y[i], *(r.y[i] for r in rest)]), _local(model, x[i]))
