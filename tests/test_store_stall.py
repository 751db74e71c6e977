"""A store that stalls or loses answers, through a real server: no write lands after its UNAVAILABLE answer,
and the retry of the same samples is stored exactly once (README: "Sessions that survive a crash")."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time

import grpc
import numpy as np
import pytest
from _serving import reference, served
from _store import ReplyDropper, valkey
from conftest import MODEL

from eddy.runtime.client import AsyncClient, Client
from eddy.runtime.core.errors import FailedPrecondition, Unavailable
from eddy.runtime.grpc.oip import OIP_SERVICE
from eddy.runtime.serving.store import lua
from eddy.runtime.serving.store.redis import key_of
from eddy.v1 import oip_pb2 as pb

LEASE_S, TIMEOUT_S = 1.5, 1.0  # generous: a busy shared machine must not time out a healthy store


def test_a_store_frozen_past_the_lease_applies_nothing_late(tmp_path, models_dir, model, series):
    n, xs = 6, series[:8]
    ref = np.concatenate(reference(model, [xs[k:k + 1] for k in range(len(xs))]))
    with valkey(tmp_path) as store, served(models_dir, session_store=store.url, lease_s=LEASE_S,
                                           store_timeout=TIMEOUT_S) as live:
        async def main() -> list[list[np.ndarray]]:
            got: list[list[np.ndarray]] = [[] for _ in range(n)]
            async with AsyncClient(live.address) as client:
                streams = [await client.stream(MODEL, session_id=f"frozen-{i}") for i in range(n)]
                for k in range(3):
                    for i, s in enumerate(streams):
                        got[i].append(await s.push(xs[k:k + 1]))
                store.proc.send_signal(signal.SIGSTOP)
                try:
                    for _ in range(2):  # the push, and a retry while frozen: both UNAVAILABLE, both queued in the store
                        results = await asyncio.gather(*(s.push(xs[3:4]) for s in streams), return_exceptions=True)
                        assert all(isinstance(r, Unavailable) for r in results), results
                    time.sleep(1.5 * LEASE_S)  # the stall outlasts the leases
                finally:
                    store.proc.send_signal(signal.SIGCONT)
                r = store.client()
                assert [int(r.hget(key_of("", f"frozen-{i}"), "p")) for i in range(n)] == [3] * n  # nothing landed late
                for k in range(3, len(xs)):  # the same sample again, then the rest
                    for i, s in enumerate(streams):
                        got[i].append(await s.push(xs[k:k + 1]))
                for s in streams:
                    await s.close()
            return got

        got = asyncio.run(main())
    assert all(np.array_equal(np.concatenate(g), ref) for g in got)


def test_a_write_stored_but_unanswered_is_acknowledged_once(tmp_path, models_dir, model, series):
    xs = series[:6]
    ref = np.concatenate(reference(model, [xs[k:k + 1] for k in range(len(xs))]))
    with valkey(tmp_path) as store, ReplyDropper(store.port) as relay, \
            served(models_dir, session_store=f"redis://127.0.0.1:{relay.port}/0", lease_s=LEASE_S,
                   store_timeout=TIMEOUT_S) as live, Client(live.address) as client:
        r = store.client()
        same, other = client.stream(MODEL, session_id="lost-same"), client.stream(MODEL, session_id="lost-other")
        got = [same.push(xs[k:k + 1]) for k in range(3)]
        other.push(xs[:3])
        relay.drop_after = b"EVALSHA"  # the store runs the writes; their answers are lost
        for s in (same, other):
            with pytest.raises(Unavailable):
                s.push(xs[3:4])
        relay.drop_after = None
        records = [key_of("", "lost-same"), key_of("", "lost-other")]
        assert [r.hmget(k, "p", "q") for k in records] == [[b"4", b"4"], [b"4", b"2"]]  # stored, never answered
        r.delete(*(k + ":lease" for k in records))  # and the leases ran out meanwhile
        got.append(same.push(xs[3:4]))  # the same sample again: acknowledged, not stored twice
        assert same.position == 4 and r.hmget(records[0], "p", "q") == [b"4", b"4"]
        with pytest.raises(FailedPrecondition, match="at position 4 in the session store, not 3"):
            other.push(xs[5:6])  # another sample: refused, naming the true position
        got += [same.push(xs[k:k + 1]) for k in range(4, len(xs))]
        assert r.hmget(records[0], "p", "q") == [b"6", b"6"]
        same.close()
        other.close()
        live.until(lambda: live.server.plane.sessions.busy_count == 0)  # both let go before the server stops
    assert np.array_equal(np.concatenate(got), ref)


def _infer(channel: grpc.Channel, x: np.ndarray, sequence: str, start: bool = False) -> np.ndarray:
    """One OIP ModelInfer request of a sequence; its answer y[n, O]."""
    rpc = channel.unary_unary(f"/{OIP_SERVICE}/ModelInfer", request_serializer=pb.ModelInferRequest.SerializeToString,
                              response_deserializer=pb.ModelInferResponse.FromString)
    request = pb.ModelInferRequest(
        model_name=MODEL, inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)],
        raw_input_contents=[x.astype("<f4").tobytes()],
        parameters={"sequence_id": pb.InferParameter(string_param=sequence),
                    "sequence_start": pb.InferParameter(bool_param=start)})
    answer = rpc(request, timeout=30)
    return np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(len(x), -1)


def test_an_oip_request_stored_but_unanswered_is_acknowledged_once_on_retry(tmp_path, models_dir, model, series):
    xs = series[:6]
    ref = np.concatenate(reference(model, [xs[k:k + 1] for k in range(len(xs))]))
    commit = hashlib.sha1(lua.COMMIT.encode()).hexdigest().encode()  # what EVALSHA names: only the batch write
    with valkey(tmp_path) as store, ReplyDropper(store.port) as relay, \
            served(models_dir, session_store=f"redis://127.0.0.1:{relay.port}/0", lease_s=LEASE_S,
                   store_timeout=TIMEOUT_S) as live, grpc.insecure_channel(live.address) as channel:
        got = [_infer(channel, xs[k:k + 1], "seq-lost", start=k == 0) for k in range(3)]
        relay.drop_after = commit  # each request resumes its sequence, then writes; that write's answer is lost
        with pytest.raises(grpc.RpcError) as e:
            _infer(channel, xs[3:4], "seq-lost")
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        relay.drop_after = None
        record = key_of("", "seq-lost")
        assert store.client().hget(record, "p") == b"4"  # stored, never answered
        got.append(_infer(channel, xs[3:4], "seq-lost"))  # the same request again: acknowledged, not stored twice
        assert store.client().hget(record, "p") == b"4"
        got += [_infer(channel, xs[k:k + 1], "seq-lost") for k in range(4, len(xs))]
    assert np.array_equal(np.concatenate(got), ref)
