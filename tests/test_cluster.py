"""Two replicas behind a real Envoy (deploy/envoy.yaml): kill the one carrying a stream, reconnect, continue exactly."""

from __future__ import annotations

import sys
import time
import urllib.request

import numpy as np
import pytest
from _serving import reference
from conftest import MODEL, ROOT

from eddy.runtime.client import Client
from eddy.runtime.core.errors import EddyError

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


def test_a_killed_replicas_session_continues_through_envoy(cluster, model, series):
    xs = series[:40]
    ref = np.concatenate(reference(model, [xs[k:k + 1] for k in range(len(xs))]))
    got = []
    with Client(cluster.address) as client:
        rs = client.stream(MODEL, session_id="through-envoy")
        for k in range(20):
            got.append(rs.push(xs[k:k + 1]))
        victim = _active_replica(cluster)
        cluster.kill_replica(victim)  # kill -9 the replica carrying the stream
        with pytest.raises(EddyError):
            rs.push(xs[20:21])  # the stream dies with its replica
        rs.close(cancel=True)
        deadline = time.monotonic() + 20 * LEASE_S
        while True:  # reconnect through Envoy: the other replica, once the dead one's lease expired
            try:
                rs = client.stream(MODEL, session_id="through-envoy", resume=True)
                break
            except EddyError as e:
                assert time.monotonic() < deadline, f"never resumed: {e.code} {e.message}"
                time.sleep(0.05)
        with rs:
            p = rs.position
            assert p in (20, 21)  # 21: the sample was stored, the answer lost with the replica
            assert _active_replica(cluster) != victim
            rest = [rs.push(xs[k:k + 1]) for k in range(p, len(xs))]
    assert np.array_equal(np.concatenate(got), ref[:20])
    assert np.array_equal(np.concatenate(rest), ref[p:])
