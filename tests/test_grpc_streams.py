"""The Stream protocol and the model repository, driven without a socket."""

from __future__ import annotations

import asyncio
import logging
import shutil

import numpy as np
import pytest
from conftest import MODEL

from eddy.runtime.core.errors import FailedPrecondition, InvalidInput, NotFound
from eddy.runtime.core.layout import resolve_version_dir
from eddy.runtime.core.statecodec import decode_state
from eddy.runtime.grpc.stream_handler import StreamHandler
from eddy.runtime.grpc.tensors import array_to_tensor
from eddy.runtime.serving.dataplane import DataPlane
from eddy.runtime.serving.repository import ModelRepository
from eddy.runtime.serving.store import MemoryStore as SessionStore
from eddy.v1 import inference_pb2 as pb


@pytest.fixture()
def repo(models_dir, tmp_path, caplog) -> ModelRepository:
    """``m`` at versions 1 and 2 (copies of the default model) and a broken version 3."""
    src = resolve_version_dir(models_dir / MODEL)
    for v in (1, 2, 3):
        shutil.copytree(src, tmp_path / "m" / str(v))
    (tmp_path / "m" / "3" / "step.onnx").write_bytes(b"tampered")
    (tmp_path / "m" / "notes").mkdir()  # not a version: ignored
    with caplog.at_level(logging.ERROR, logger="eddy.repository"):
        repository = ModelRepository(tmp_path)
    assert "skipping" in caplog.text and "sha256" in caplog.text
    return repository


def _open(name: str = "m", version: str = "") -> pb.StreamRequest:
    return pb.StreamRequest(open=pb.OpenStream(model=name, version=version))


def _samples(x: np.ndarray) -> pb.StreamRequest:
    return pb.StreamRequest(samples=array_to_tensor(x, "values"))


def test_repository_versions_and_broken_dir_skipped(repo, tmp_path):
    assert repo.index() == {"m": [1, 2]} and len(repo) == 1
    assert list(repo.skipped) == [tmp_path / "m" / "3"]
    assert repo.resolve("m") == 2 and repo.resolve("m", "1") == 1 and repo.resolve("m", 1) == 1
    # copies whose manifests say sunspots/1 are served, and identify themselves, as m/1 and m/2
    assert [(repo.get("m", v).name, repo.get("m", v).version) for v in (1, 2)] == [("m", 1), ("m", 2)]
    store = SessionStore()
    blob = store.export_state(store.acquire(repo.get("m", 2)))
    assert (decode_state(blob).model, decode_state(blob).version) == ("m", 2)  # state names what made it
    with pytest.raises(NotFound, match=r"served models: m"):
        repo.get("x")
    with pytest.raises(NotFound, match=r"no version 3 \(versions: 1, 2\)"):
        repo.get("m", 3)
    with pytest.raises(InvalidInput):
        repo.get("m", "v1")
    with pytest.raises(InvalidInput, match="no model name"):
        repo.get("")


def test_repository_root_must_exist(tmp_path):
    with pytest.raises(NotFound, match="does not exist"):
        ModelRepository(tmp_path / "missing")
    assert ModelRepository(tmp_path).index() == {}  # empty is allowed


def test_protocol(repo, series):
    asyncio.run(_protocol(repo, series))


async def _protocol(repo, series):
    reference = repo.get("m", 1).stream()
    plane = DataPlane(repo)
    h = StreamHandler(plane)
    with pytest.raises(FailedPrecondition, match="must be `open`"):
        await StreamHandler(plane).handle(_samples(series[:1]))
    with pytest.raises(NotFound):
        await StreamHandler(plane).handle(_open("x"))

    opened = (await h.handle(_open("m", "1"))).opened
    assert (opened.model, opened.version, list(opened.features)) == ("m", 1, reference.model.features)
    assert opened.session_id and opened.position == 0 and not opened.resumed
    r = await h.handle(_samples(series[:4]))
    assert r.predictions.offset == 0 and list(r.predictions.outputs.values)  # same encoding as the request
    np.testing.assert_allclose(np.reshape(r.predictions.outputs.values, (4, -1)), reference.push(series[:4]),
                               rtol=1e-6)
    before = h.position
    for bad in (_samples(np.zeros((1, 3), np.float32)), pb.StreamRequest(), _open(),
                pb.StreamRequest(control=pb.Control())):
        assert (await h.handle(bad)).WhichOneof("kind") == "error"
    assert h.position == before == 4 and h.rejected == 4
    r = await h.handle(_samples(series[4:6]))
    assert r.predictions.offset == 4
    np.testing.assert_allclose(np.reshape(r.predictions.outputs.values, (2, -1)), reference.push(series[4:6]),
                               rtol=1e-6)
    fields = h.log_fields()
    assert (fields["model"], fields["version"], fields["samples"], fields["messages"], fields["rejected"]) == \
        ("m", 1, 6, 7, 4)
    await h.release()
    assert not plane.sessions.get(opened.session_id).busy  # resumable
    await plane.close()


def test_large_messages_run_through_the_batcher(repo):
    async def run():
        plane = DataPlane(repo)
        h = StreamHandler(plane)
        await h.handle(_open())
        x = np.full((5000, 1), 50.0, np.float32)
        r = await h.handle(pb.StreamRequest(samples=array_to_tensor(x, "raw")))
        assert r.predictions.outputs.shape == [len(x), 1] and h.position == len(x)
        await plane.close()

    asyncio.run(run())
