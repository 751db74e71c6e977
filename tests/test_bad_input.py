"""Bad input, nothing lost: every rejected case of docs/reference/errors.md's table, over a real server.

Each case runs against a live "victim" session that has consumed 3 samples.
After the rejection, the victim continues (on the same stream if it is still
open, else resumed on a new one) and its next prediction must equal the
local reference bit for bit: no rejected request changes session state.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
import pytest
from _serving import OTHER, make_repo, reference, served
from _serving import samples_request as _samples
from conftest import MODEL

import eddy.runtime as runtime
from eddy.runtime.client import Client, RemoteStream
from eddy.runtime.core.errors import EddyError
from eddy.runtime.core.statecodec import _PREFIX, FORMAT_VERSION, MAGIC, StateKeys
from eddy.runtime.grpc.security import Security
from eddy.runtime.grpc.tensors import array_to_tensor
from eddy.v1 import inference_pb2 as pb
from eddy.v1 import inference_pb2_grpc as pb_grpc

MAX_SAMPLES = 100
MAX_BYTES = 8192
KEYS = StateKeys((b"test-state-key-" * 3,))  # the server's --state-key, so tests can sign what a key holder could


@pytest.fixture(scope="module")
def repo(models_dir, tmp_path_factory):
    return make_repo(models_dir, tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def live(repo):
    with served(repo, Security(state_keys=KEYS), max_samples_per_message=MAX_SAMPLES,
                max_message_bytes=MAX_BYTES) as s:
        yield s


@pytest.fixture(scope="module")
def model(repo) -> runtime.Model:
    return runtime.load(repo / MODEL / "2")


@pytest.fixture(scope="module")
def blobs(live, series) -> dict[str, bytes]:
    """Exported state: of another model, of another version of this model, of this model/version."""
    out = {}
    with Client(live.address) as c:
        for key, name, version in (("other", OTHER, None), ("v1", MODEL, 1), ("v2", MODEL, 2)):
            with c.stream(name, version, session_id=f"blob-{key}") as rs:
                rs.push(series[:2])
                out[key] = rs.export_state()
    return out


Case = Callable[[Client, RemoteStream, str, dict[str, bytes]], object]


class _Rejected(Exception):
    def __init__(self, code: int | str, message: str) -> None:
        self.code = code if isinstance(code, str) else next(c.name for c in grpc.StatusCode if c.value[0] == code)
        self.message = message


def _in_band(request: pb.StreamRequest) -> Case:
    def case(c, rs, sid, blobs):
        r = rs._send_raw(request)
        assert r.WhichOneof("kind") == "error"
        raise _Rejected(r.error.code, r.error.message)
    return case


def _raw_rpc(requests: list[pb.StreamRequest]) -> Case:
    return _raw_rpc_with(requests, None)


def _raw_rpc_with(requests: list[pb.StreamRequest], metadata: list[tuple[str, str]] | None) -> Case:
    def case(c, rs, sid, blobs):
        with grpc.insecure_channel(c.target) as channel:
            list(pb_grpc.InferenceStub(channel).Stream(iter(requests), timeout=10, metadata=metadata))
    return case


def _raw_unary(method: str, request: object, metadata: list[tuple[str, str]] | None = None) -> Case:
    def case(c, rs, sid, blobs):
        with grpc.insecure_channel(c.target) as channel:
            getattr(pb_grpc.InferenceStub(channel), method)(request, timeout=10, metadata=metadata)
    return case


LONG_NUMBER = "1" + "0" * 5000  # past Python's 4,300-digit limit for int()
LONG_NAME = "m" * 8000  # (this server takes 8 KiB messages; tests/test_client_text.py sends 100 kB names)
RESPONSE_LIMIT = "x-eddy-max-response-bytes"


def _corrupt(blob: bytes) -> bytes:
    return blob[:20] + bytes([blob[20] ^ 1]) + blob[21:]


def _resigned(blob: bytes, keys: StateKeys = KEYS, **header: object) -> bytes:
    """``blob`` with header fields replaced (``raw=`` for raw header bytes), MAC'd with ``keys``."""
    import hashlib
    import json

    _, _, hlen = _PREFIX.unpack_from(blob)
    h = json.loads(blob[_PREFIX.size:_PREFIX.size + hlen])
    raw = header.pop("raw", None) or json.dumps({**h, **header}).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(raw)) + raw + blob[_PREFIX.size + hlen:-32]
    return body + (hashlib.sha256(body).digest() if keys is None else keys.sign(body))


CASES: dict[str, tuple[Case, str, str]] = {  # name -> (what the client does, status, words in the message)
    "unknown model": (lambda c, rs, sid, b: c.stream("nope"), "NOT_FOUND", "served models"),
    "unknown version": (lambda c, rs, sid, b: c.stream(MODEL, 99), "NOT_FOUND", "no version 99"),
    "malformed version": (lambda c, rs, sid, b: c.stream(MODEL, "v1"), "INVALID_ARGUMENT", "version"),
    "unknown session (resume)": (lambda c, rs, sid, b: c.stream(MODEL, session_id="nope", resume=True),
                                 "NOT_FOUND", "does not exist"),
    "unknown session (GetSessionState)": (lambda c, rs, sid, b: c.session_state("nope"), "NOT_FOUND",
                                          "does not exist"),
    "unknown session (DeleteSession)": (lambda c, rs, sid, b: c.delete_session("nope"), "NOT_FOUND",
                                        "does not exist"),
    "malformed session id": (lambda c, rs, sid, b: c.stream(MODEL, session_id="x" * 200), "INVALID_ARGUMENT",
                             "session id"),
    "malformed session id (GetSessionState)": (lambda c, rs, sid, b: c.session_state("x" * 200),
                                               "INVALID_ARGUMENT", "session id"),
    "malformed session id (DeleteSession)": (_raw_unary("DeleteSession", pb.SessionRequest(session_id="a\nb")),
                                             "INVALID_ARGUMENT", "session id"),
    "version of 5,000 digits": (_raw_rpc([pb.StreamRequest(open=pb.OpenStream(model=MODEL, version=LONG_NUMBER))]),
                                "INVALID_ARGUMENT", "at most 18 digits"),
    "version of 5,000 digits (Predict)": (_raw_unary("Predict", pb.PredictRequest(
        model=MODEL, version=LONG_NUMBER, inputs=array_to_tensor(np.ones((1, 3, 1))))), "INVALID_ARGUMENT",
        "at most 18 digits"),
    "version of 5,000 digits (GetModelMetadata)": (_raw_unary("GetModelMetadata", pb.ModelMetadataRequest(
        model=MODEL, version=LONG_NUMBER)), "INVALID_ARGUMENT", "at most 18 digits"),
    "x-eddy-max-response-bytes of 5,000 digits": (_raw_rpc_with([pb.StreamRequest(open=pb.OpenStream(model=MODEL))],
                                                                [(RESPONSE_LIMIT, LONG_NUMBER)]),
                                                  "INVALID_ARGUMENT", "at most 18 digits"),
    "x-eddy-max-response-bytes of 5,000 digits (Predict)": (_raw_unary("Predict", pb.PredictRequest(
        model=MODEL, inputs=array_to_tensor(np.ones((1, 3, 1)))), [(RESPONSE_LIMIT, LONG_NUMBER)]),
        "INVALID_ARGUMENT", "at most 18 digits"),
    "model name of 8,000 characters": (lambda c, rs, sid, b: c.stream(LONG_NAME), "NOT_FOUND",
                                       "(8000 characters) not found"),
    "wrong feature count": (_in_band(_samples(shape=[1, 2], values=[1.0, 2.0])), "INVALID_ARGUMENT", "feature"),
    "NaN": (_in_band(_samples(shape=[1, 1], values=[float("nan")])), "INVALID_ARGUMENT", "finite"),
    "infinity": (_in_band(_samples(shape=[2, 1], values=[1.0, float("inf")])), "INVALID_ARGUMENT", "finite"),
    "empty message": (_in_band(pb.StreamRequest()), "INVALID_ARGUMENT", "neither"),
    "no samples": (_in_band(_samples(shape=[0, 1])), "INVALID_ARGUMENT", "no samples"),
    "data/shape mismatch": (_in_band(_samples(shape=[2, 1], raw=b"\0" * 7)), "INVALID_ARGUMENT", "7 bytes"),
    "too many samples": (_in_band(pb.StreamRequest(samples=array_to_tensor(np.ones((MAX_SAMPLES + 1, 1))))),
                         "RESOURCE_EXHAUSTED", f"limit is {MAX_SAMPLES}"),
    "message too large": (lambda c, rs, sid, b: rs.push(np.ones((MAX_BYTES // 4, 1), np.float32)),
                          "RESOURCE_EXHAUSTED", ""),
    "session busy": (lambda c, rs, sid, b: c.stream(MODEL, session_id=sid, resume=True), "FAILED_PRECONDITION",
                     "in use"),
    "existing session id without resume": (lambda c, rs, sid, b: c.stream(MODEL, session_id=sid),
                                           "ALREADY_EXISTS", "already exists"),
    "state bytes of another model": (lambda c, rs, sid, b: c.stream(MODEL, state=b["other"]),
                                     "FAILED_PRECONDITION", f"for model {OTHER}/1"),
    "state bytes of another version": (lambda c, rs, sid, b: c.stream(MODEL, 2, state=b["v1"]),
                                       "FAILED_PRECONDITION", f"{MODEL}/1"),
    "state bytes corrupted": (lambda c, rs, sid, b: c.stream(MODEL, state=_corrupt(b["v2"])),
                              "UNAUTHENTICATED", "state key"),
    "state bytes forged (plain sha256, as format 1 had)": (
        lambda c, rs, sid, b: c.stream(MODEL, state=_resigned(b["v2"], None, position=105)),
        "UNAUTHENTICATED", "state key"),
    "state bytes signed with another key": (
        lambda c, rs, sid, b: c.stream(MODEL, state=_resigned(b["v2"], StateKeys((b"x" * 32,)))),
        "UNAUTHENTICATED", "state key"),
    "state bytes position 2**64 (signed)": (lambda c, rs, sid, b: c.stream(MODEL, state=_resigned(b["v2"],
                                                                                                 position=2**64)),
                                            "INVALID_ARGUMENT", "position"),
    "state bytes shape overflow (signed)": (
        lambda c, rs, sid, b: c.stream(MODEL, state=_resigned(b["v2"], state=[{"name": "h0", "shape": [2**62] * 2}])),
        "INVALID_ARGUMENT", "shape"),
    "state bytes Infinity (signed)": (lambda c, rs, sid, b: c.stream(MODEL, state=_resigned(
        b["v2"], raw=b'{"model":"sunspots","version":2,"position":Infinity}')), "INVALID_ARGUMENT", "header"),
    "state bytes deep nesting (signed)": (lambda c, rs, sid, b: c.stream(MODEL, state=_resigned(
        b["v2"], raw=b"[" * 1500 + b"]" * 1500)), "INVALID_ARGUMENT", "header"),
    "a session at the position bound (signed bytes)": (
        lambda c, rs, sid, b: c.stream(MODEL, state=_resigned(b["v2"], position=2**53)).push(np.ones((1, 1))),
        "FAILED_PRECONDITION", "would pass position"),
    "Predict state position 2**64 (signed)": (lambda c, rs, sid, b: c.predict(MODEL, np.ones((1, 3, 1)),
                                                                            states=[_resigned(b["v2"], position=2**64)]),
                                              "INVALID_ARGUMENT", "position"),
    "state bytes not eddy state": (lambda c, rs, sid, b: c.stream(MODEL, state=b"hello"), "INVALID_ARGUMENT",
                                   "not eddy session state"),
    "state bytes for an existing session": (lambda c, rs, sid, b: c.stream(MODEL, session_id="blob-v2",
                                                                           state=b["v2"]),
                                            "ALREADY_EXISTS", "already exists"),
    "control before open": (_raw_rpc([pb.StreamRequest(control=pb.Control(action=pb.Control.EXPORT_STATE))]),
                            "FAILED_PRECONDITION", "must be `open`"),
    "control without action": (_in_band(pb.StreamRequest(control=pb.Control())), "INVALID_ARGUMENT",
                               "not one of"),
    "second open": (_in_band(pb.StreamRequest(open=pb.OpenStream(model=MODEL))), "FAILED_PRECONDITION",
                    "already open"),
    "Predict NaN": (lambda c, rs, sid, b: c.predict(MODEL, np.full((1, 3, 1), np.nan)), "INVALID_ARGUMENT",
                    "finite"),
    "Predict wrong rank": (lambda c, rs, sid, b: c.predict(MODEL, np.ones((3, 1))), "INVALID_ARGUMENT",
                           "[B, T, 1]"),
    "Predict too many samples": (lambda c, rs, sid, b: c.predict(MODEL, np.ones((2, 51, 1))),
                                 "RESOURCE_EXHAUSTED", "limit"),
    "Predict states count": (lambda c, rs, sid, b: c.predict(MODEL, np.ones((2, 3, 1)), states=[b["v2"]]),
                             "INVALID_ARGUMENT", "one per sequence"),
    "Predict state of another model": (lambda c, rs, sid, b: c.predict(MODEL, np.ones((1, 3, 1)),
                                                                       states=[b["other"]]),
                                       "FAILED_PRECONDITION", f"for model {OTHER}/1"),
    "Predict state corrupted": (lambda c, rs, sid, b: c.predict(MODEL, np.ones((1, 3, 1)),
                                                                states=[_corrupt(b["v2"])]),
                                "UNAUTHENTICATED", "state key"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rejected_and_nothing_lost(live, model, series, blobs, name):
    case, code, words = CASES[name]
    sid = f"victim-{name}"
    with Client(live.address) as c:
        rs = c.stream(MODEL, session_id=sid)
        first = rs.push(series[:3])
        with pytest.raises((EddyError, grpc.RpcError, _Rejected)) as e:
            case(c, rs, sid, blobs)
        got_code = e.value.code().name if isinstance(e.value, grpc.RpcError) else e.value.code
        got_message = e.value.details() if isinstance(e.value, grpc.RpcError) else e.value.message
        assert (got_code, words in got_message) == (code, True), got_message
        assert len(got_message) <= 300, got_message  # whatever the client sent, the message stays short
        if rs.closed:  # the rejection ended the RPC: resume the session on a new stream
            live.until_idle(sid)
            rs = c.stream(MODEL, session_id=sid, resume=True)
        assert rs.position == 3
        second = rs.push(series[3:6])
        rs.close()
    want = reference(model, [series[:3], series[3:6]])
    assert np.array_equal(first, want[0]) and np.array_equal(second, want[1])
