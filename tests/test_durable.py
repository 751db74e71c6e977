"""Served sessions on a shared Valkey store: kill -9 and restart, two replicas, workers, live model reload."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
from _models import copy_as
from _serving import eddy_process, reference, served
from _store import Valkey, valkey
from conftest import MODEL
from grpc_health.v1 import health_pb2, health_pb2_grpc

from eddy.runtime.client import Client
from eddy.runtime.core.errors import AlreadyExists, EddyError, FailedPrecondition, NotFound, Unavailable
from eddy.runtime.core.model import resolve_version_dir
from eddy.runtime.grpc.server import health_service

LEASE_S = 1.0  # short leases: a killed server's sessions are free again after this


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Valkey:
    with valkey(tmp_path_factory.mktemp("valkey")) as server:
        yield server


def _address(proc: subprocess.Popen[str]) -> str:
    line = proc.stdout.readline()
    m = re.fullmatch(r"eddy: serving \d+ model\(s\) on (127\.0\.0\.1:\d+)\n", line)
    assert m, line + proc.stderr.read()
    return m[1]


def _reference(model, xs: np.ndarray) -> np.ndarray:
    s = model.stream()
    return np.concatenate([s.push(x) for x in xs])  # [N, O], sample by sample


def test_kill_9_mid_stream_under_load_then_every_session_resumes_exactly(models_dir, model, store, series):
    n_streams, serve = 8, ("serve", "--models", str(models_dir), "--port", "0", "--log-level", "WARNING",
                           "--session-store", store.url, "--lease-s", str(LEASE_S))
    xs = series[:120]
    ref = _reference(model, xs)
    acked = [0] * n_streams  # samples each stream got an answer for before the crash
    outs: list[list[np.ndarray]] = [[] for _ in range(n_streams)]
    with eddy_process(*serve) as proc:
        address = _address(proc)
        client = Client(address)
        started = threading.Barrier(n_streams + 1)

        def drive(i: int) -> None:
            try:
                with client.stream(MODEL, session_id=f"crash-{i}") as rs:
                    started.wait(timeout=30)
                    for k in range(len(xs)):
                        outs[i].append(rs.push(xs[k:k + 1]))
                        acked[i] = k + 1
            except EddyError:
                pass  # the server died under us

        threads = [threading.Thread(target=drive, args=(i,)) for i in range(n_streams)]
        for t in threads:
            t.start()
        started.wait(timeout=30)
        deadline = time.monotonic() + 30
        while min(acked) < 10 and time.monotonic() < deadline:  # all streams well under way
            time.sleep(0.005)
        proc.kill()  # SIGKILL: no shutdown, no flush, no lease released
        proc.wait()
        for t in threads:
            t.join(timeout=30)
        client.close()
    assert min(acked) >= 10 and max(acked) < len(xs)  # killed mid-stream
    with eddy_process(*serve) as proc:
        with Client(_address(proc)) as client:
            for i in range(n_streams):
                # the client waits until the dead server's lease has run out (within LEASE_S)
                with client.stream(MODEL, session_id=f"crash-{i}", resume=True) as rs:
                    p = rs.position
                    assert acked[i] <= p <= acked[i] + 1  # every answer was stored; at most one written unanswered
                    rest = np.concatenate([rs.push(xs[k:k + 1]) for k in range(p, len(xs))])  # as before: 1 per message
                assert np.array_equal(np.concatenate(outs[i][:acked[i]]), ref[:acked[i]])
                assert np.array_equal(rest, ref[p:]), f"stream {i}: continuation differs"


def test_two_replicas_one_writer_and_a_clean_hand_off(tmp_path, models_dir, model, store, series):
    ref = np.concatenate(reference(model, [series[:10], series[10:30]]))  # a local stream, same chunks
    with served(models_dir, session_store=store.url, lease_s=LEASE_S) as a, \
            served(models_dir, session_store=store.url, lease_s=LEASE_S) as b, \
            Client(a.address) as ca, Client(b.address) as cb:
        with ca.stream(MODEL, session_id="shared") as rs:
            y1 = rs.push(series[:10])
            with pytest.raises(AlreadyExists):
                cb.stream(MODEL, session_id="shared")  # the other replica: a known id is never attached to
            t0 = time.monotonic()
            with pytest.raises(FailedPrecondition, match="in use by another stream .* lease expires within 1 s"):
                cb.stream(MODEL, session_id="shared", resume=True)  # refused while A drives it ...
            assert LEASE_S <= time.monotonic() - t0 < LEASE_S + 2  # ... once the client waited out one lease
            with pytest.raises(FailedPrecondition, match="in use"):
                cb.session_state("shared")
        with cb.stream(MODEL, session_id="shared", resume=True) as rs:  # A let go: B continues exactly
            assert rs.position == 10
            y2 = rs.push(series[10:30])
        assert ca.session_state("shared").position == 30  # any replica reads the stored session
        assert cb.delete_session("shared").position == 30
        with pytest.raises(NotFound):
            ca.stream(MODEL, session_id="shared", resume=True)
    assert np.array_equal(np.concatenate([y1, y2]), ref)


def test_store_outage_mid_stream_is_unavailable_in_band_then_the_stream_carries_on(tmp_path, models_dir, model,
                                                                                      series):
    xs = series[:12]
    ref = np.concatenate(reference(model, [xs[k:k + 1] for k in range(len(xs))]))
    with valkey(tmp_path) as store, served(models_dir, session_store=store.url, store_timeout=1) as live, \
            Client(live.address) as client, client.stream(MODEL, session_id="outage") as rs:
        got = [rs.push(xs[k:k + 1]) for k in range(6)]
        store.kill()
        with pytest.raises(Unavailable, match="session store redis://127.0.0.1:\\d+/0 unavailable"):
            rs.push(xs[6:7])  # nothing answered that was not stored ...
        assert rs.position == 6 and not rs.closed  # ... the stream stays open
        store.start()  # back, same data
        got += [rs.push(xs[k:k + 1]) for k in range(6, len(xs))]  # the same samples again, then the rest
        assert rs.position == len(xs)
    assert np.array_equal(np.concatenate(got), ref)


def test_store_down_at_start_is_a_clear_error(models_dir):
    with eddy_process("serve", "--models", str(models_dir), "--port", "0", "--store-timeout", "0.5",
                      "--session-store", "redis://127.0.0.1:1/0") as proc:
        assert proc.wait(timeout=60) == 1
        err = proc.stderr.read()
    assert "eddy serve: session store redis://127.0.0.1:1/0 unavailable" in err, err


def test_workers_need_a_shared_store_and_share_one_port(models_dir, store):
    with eddy_process("serve", "--models", str(models_dir), "--port", "0", "--workers", "2") as proc:
        assert proc.wait(timeout=60) == 2
        assert "--workers > 1 needs --session-store" in proc.stderr.read()
    from _store import reserved_port

    with reserved_port() as port, eddy_process("serve", "--models", str(models_dir), "--port", str(port), "--workers",
                                               "2", "--session-store", store.url, "--log-level", "WARNING") as proc:
        lines = [proc.stdout.readline() for _ in range(2)]  # one per worker, same port
        assert all(line == f"eddy: serving 1 model(s) on 127.0.0.1:{port}\n" for line in lines), lines
        with Client(f"127.0.0.1:{port}") as client:
            with client.stream(MODEL, session_id="worker") as rs:
                rs.push([[1.0], [2.0]])
            assert client.session_state("worker").position == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_live_reload_adds_and_retires_versions(tmp_path, models_dir, model, series):
    src = resolve_version_dir(models_dir / MODEL)
    repo = tmp_path / "repo"
    shutil.copytree(src, repo / MODEL / "1")
    with served(repo, poll_models=0.05) as live, Client(live.address) as client:
        assert client.list_models() == {MODEL: [1]}
        old = client.stream(MODEL, version=1, session_id="pinned-1")
        y = [old.push(series[:5])]
        staging = tmp_path / "staging"
        copy_as(src, staging, version=2)
        staging.rename(repo / MODEL / "2")  # appear at once: copy elsewhere, then rename into place
        live.until(lambda: live.server.repository.versions(MODEL) == [1, 2])
        assert client.list_models() == {MODEL: [1, 2]}
        with client.stream(MODEL) as new:
            assert new.version == 2  # new sessions get the new latest
        shutil.rmtree(repo / MODEL / "1")
        live.until(lambda: live.server.repository.versions(MODEL) == [2])
        y.append(old.push(series[5:9]))  # the session on the removed version carries on
        old.close()
        with pytest.raises(NotFound, match="no version 1"):
            client.stream(MODEL, version=1)  # ... but the version takes no new sessions
        with client.stream(MODEL, session_id="pinned-1", resume=True) as again:  # nor does it end old ones
            assert again.version == 1 and again.position == 9
        assert np.array_equal(np.concatenate(y), np.concatenate(reference(model, [series[:5], series[5:9]])))
        with grpc.insecure_channel(live.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service=health_service(MODEL))
            assert health.Check(check, timeout=10).status == health_pb2.HealthCheckResponse.SERVING
            shutil.rmtree(repo / MODEL / "2")  # the model's last version goes: its health follows
            live.until(lambda: live.server.repository.names() == [])
            assert health.Check(check, timeout=10).status == health_pb2.HealthCheckResponse.NOT_SERVING
