"""Two replicas behind a real Envoy (deploy/envoy.yaml): kill the one carrying a stream; the stream ends UNAVAILABLE,
and eddy's clients (sync and asyncio) resume through Envoy as soon as the dead replica's lease lets go."""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request

import numpy as np
import pytest
from _serving import reference
from conftest import MODEL, ROOT

from eddy.runtime.client import AsyncClient, Client
from eddy.runtime.core.errors import Unavailable

sys.path.insert(0, str(ROOT / "deploy"))
from cluster import Cluster  # noqa: E402  (deploy/ is not a package)

LEASE_S = 1.0


@pytest.fixture()
def cluster(tmp_path, models_dir):
    c = Cluster(models_dir, workdir=tmp_path, lease_s=LEASE_S, extra_args=("--log-level", "WARNING"))
    c.start()
    yield c
    c.stop()


def _active_replica(c: Cluster) -> int:
    """Which replica Envoy is sending the open stream to (its admin /clusters rq_active)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{c.admin_port}/clusters", timeout=5).read().decode()
    for i, port in enumerate(c.replica_ports):
        if f"eddy::127.0.0.1:{port}::rq_active::1" in text:
            return i
    raise AssertionError(f"no replica has an active request:\n{text}")


def _healthy(c: Cluster, i: int) -> bool:
    text = urllib.request.urlopen(f"http://127.0.0.1:{c.admin_port}/clusters", timeout=5).read().decode()
    return f"eddy::127.0.0.1:{c.replica_ports[i]}::health_flags::healthy" in text


def test_a_killed_replicas_session_continues_through_envoy(cluster, model, series):
    xs = series[:60]
    ref = np.concatenate(reference(model, [xs[k:k + 1] for k in range(len(xs))]))
    sid = "through-envoy"
    with Client(cluster.address) as client:  # the synchronous client
        rs = client.stream(MODEL, session_id=sid)
        before = np.concatenate([rs.push(xs[k:k + 1]) for k in range(20)])
        victim = _active_replica(cluster)
        cluster.kill_replica(victim)  # kill -9 the replica carrying the stream
        with pytest.raises(Unavailable, match="reset"):
            rs.push(xs[20:21])  # Envoy resets the stream (RST_STREAM): UNAVAILABLE, as for a dropped connection
        rs.close(cancel=True)
        t0 = time.monotonic()
        with client.stream(MODEL, session_id=sid, resume=True) as rs:  # waits out the dead replica's lease only
            waited = time.monotonic() - t0
            p = rs.position
            assert _active_replica(cluster) != victim
            after = np.concatenate([rs.push(xs[k:k + 1]) for k in range(p, 40)])
    assert waited < LEASE_S + 2 and p in (20, 21)  # 21: the sample was stored, its answer lost with the replica
    assert np.array_equal(before, ref[:20]) and np.array_equal(after, ref[p:40])

    cluster.start_replica(victim)  # back: the session's part of the ring returns to it once it is healthy
    deadline = time.monotonic() + 30
    while not _healthy(cluster, victim):
        assert time.monotonic() < deadline, "the restarted replica never became healthy"
        time.sleep(0.05)

    async def drive() -> tuple[np.ndarray, np.ndarray, int, float]:  # the asyncio client, the same way
        async with AsyncClient(cluster.address) as client:
            s = await client.stream(MODEL, session_id=sid, resume=True)
            assert s.position == 40
            before = np.concatenate([await s.push(xs[k:k + 1]) for k in range(40, 50)])
            cluster.kill_replica(_active_replica(cluster))
            with pytest.raises(Unavailable, match="reset"):
                await s.push(xs[50:51])
            await s.close(cancel=True)
            t0 = time.monotonic()
            async with client.stream(MODEL, session_id=sid, resume=True) as s:
                waited, p = time.monotonic() - t0, s.position
                after = np.concatenate([await s.push(xs[k:k + 1]) for k in range(p, len(xs))])
        return before, after, p, waited

    before, after, p, waited = asyncio.run(drive())
    assert waited < LEASE_S + 2 and p in (50, 51)
    assert np.array_equal(before, ref[40:50]) and np.array_equal(after, ref[p:])
