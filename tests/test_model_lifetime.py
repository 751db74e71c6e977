"""A version removed by a live reload is freed, its onnxruntime sessions with it, once no session can use it."""

from __future__ import annotations

import contextlib
import gc
import shutil
import weakref

import pytest
from _models import copy_as
from _serving import served
from _store import valkey
from conftest import MODEL

from eddy.runtime.client import Client
from eddy.runtime.core.layout import resolve_version_dir

TTL_S = 6.0  # --session-ttl with the Valkey store


@pytest.mark.parametrize("store", ["memory", "valkey"])
def test_a_removed_version_is_freed_once_its_sessions_end(tmp_path, models_dir, series, store):
    src = resolve_version_dir(models_dir / MODEL)
    repo = tmp_path / "repo"
    shutil.copytree(src, repo / MODEL / "1")
    config: dict[str, object] = {"poll_models": 0.05}
    with contextlib.ExitStack() as stack:
        if store == "valkey":  # idle sessions live in the store: a removed version is kept for their TTL
            (tmp_path / "valkey").mkdir()
            # the held session's record lives on renewals every second: 6 s leave room for a loaded machine's stalls
            config.update(session_store=stack.enter_context(valkey(tmp_path / "valkey")).url, session_ttl=TTL_S)
        live = stack.enter_context(served(repo, **config))
        client = stack.enter_context(Client(live.address))
        old = live.call(lambda: weakref.ref(live.server.repository.get(MODEL, 1)))
        rs = client.stream(MODEL, session_id="on-v1")
        rs.push(series[:5])  # a chunk (the sequence graph) ...
        rs.push(series[5:6])  # ... and a single sample (the batcher)
        client.predict(MODEL, series[None, :10])  # a Predict (its state-blob size bound)
        copy_as(src, tmp_path / "staging", version=2)
        (tmp_path / "staging").rename(repo / MODEL / "2")
        shutil.rmtree(repo / MODEL / "1")
        live.until(lambda: live.server.repository.versions(MODEL) == [2])
        rs.push(series[6:7])  # the session on the removed version carries on
        with client.stream(MODEL, session_id="on-v2") as new:
            assert new.version == 2
            new.push(series[:3])
        gc.collect()
        assert old() is not None  # still in use
        rs.close_session()
        live.until(lambda: gc.collect() >= 0 and old() is None, timeout=TTL_S + 20)  # freed once its last session ended
        with client.stream(MODEL) as again:  # the served version untouched
            assert again.version == 2 and again.push(series[:2]).shape == (2, 1)
