"""A bad model directory is skipped with one log line and NOT_SERVING health; the rest is served."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import grpc
import numpy as np
import pytest
from _models import copy_as
from _serving import served
from conftest import MODEL
from grpc_health.v1 import health_pb2, health_pb2_grpc

from eddy.runtime.client import Client
from eddy.runtime.core.manifest import MANIFEST_FILE, read_manifest, sha256_file, write_manifest
from eddy.runtime.core.model import resolve_version_dir
from eddy.runtime.serving.repository import ModelRepository

BAD_MANIFESTS = {  # model name -> manifest.json bytes
    "not-utf8": b'{"format": "eddy.model/1", "name": "\xff\xfe"}',
    "a-list": b"[1, 2, 3]",
    "huge-number": None,  # the real manifest with version 1e400
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "nan": None,  # the real manifest with NaN in the normalisation
    "graphs-a-list": None,  # the real manifest with "graphs": [...]
    "escaping-file": None,  # a graph path "../../..." out of the version directory
}


def _short_state_output(src, dst) -> None:
    """A copy whose step graph's state output is one unit short of the manifest's (same input shapes)."""
    import onnx
    from onnx import helper

    shutil.copytree(src, dst)
    m = read_manifest(dst)
    g = onnx.load(str(dst / m.graphs["step"].file))
    state_out = next(o for o in g.graph.output if o.name.endswith("_out"))
    full = f"{state_out.name}_full"
    for node in g.graph.node:  # everything that made or used the state output now uses the full one
        node.output[:] = [full if o == state_out.name else o for o in node.output]
        node.input[:] = [full if i == state_out.name else i for i in node.input]
    units = m.state[0].shape[0]
    g.graph.initializer.extend([helper.make_tensor(n, onnx.TensorProto.INT64, [1], [v])
                                for n, v in (("_s0", 0), ("_s1", units - 1), ("_ax", 1))])
    g.graph.node.append(helper.make_node("Slice", [f"{state_out.name}_full", "_s0", "_s1", "_ax"], [state_out.name]))
    del state_out.type.tensor_type.shape.dim[:]  # no static shape: only running it tells
    onnx.save(g, str(dst / m.graphs["step"].file))
    graphs = {**m.graphs, "step": dataclasses.replace(m.graphs["step"], sha256=sha256_file(dst / m.graphs["step"].file))}
    write_manifest(dst, dataclasses.replace(m, graphs=graphs))


@pytest.fixture(scope="module")
def repo(models_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    src = resolve_version_dir(models_dir / MODEL)
    shutil.copytree(src, root / MODEL / "1")
    good = json.loads((src / MANIFEST_FILE).read_text())
    for name, raw in BAD_MANIFESTS.items():
        d = root / name / "1"
        shutil.copytree(src, d)
        if raw is None:
            m = dict(good, name=name)
            if name == "huge-number":
                raw = json.dumps(m).replace('"version": 1', '"version": 1e400').encode()
            elif name == "nan":
                m["normalization"] = dict(m["normalization"], input_std=[float("nan")])
                raw = json.dumps(m).encode()
            elif name == "graphs-a-list":
                raw = json.dumps(dict(m, graphs=[1, 2])).encode()
            else:
                step = dict(m["graphs"]["step"], file="../../" + MODEL + "/1/step.onnx")
                raw = json.dumps(dict(m, graphs=dict(m["graphs"], step=step))).encode()
        (d / MANIFEST_FILE).write_bytes(raw)
    copy_as(src, root / "superscript" / "²", name="superscript", version=2)  # not an ASCII version number
    outside = tmp_path_factory.mktemp("outside")
    copy_as(src, outside / "1", name="linked", version=1)
    (root / "linked").mkdir()
    (root / "linked" / "1").symlink_to(outside / "1", target_is_directory=True)
    _short_state_output(src, root / "short-state" / "1")
    return root


def test_bad_directories_are_skipped_with_one_line_each(repo, caplog):
    caplog.set_level(logging.INFO, logger="eddy.repository")
    r = ModelRepository(repo)
    assert r.index() == {MODEL: [1]}
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    skipped = {p.parent.name for p in r.skipped}
    assert skipped >= {*BAD_MANIFESTS, "linked", "short-state"}
    assert len(errors) == len(r.skipped) and not any(rec.exc_info for rec in errors)  # one line each, no traceback
    assert "outside the repository" in r.skipped[repo / "linked" / "1"]
    assert "h0_out has shape" in r.skipped[repo / "short-state" / "1"]
    assert "outside the version directory" in r.skipped[repo / "escaping-file" / "1"]
    assert "not UTF-8" in r.skipped[repo / "not-utf8" / "1"]


def test_server_serves_the_rest_and_reports_the_broken_ones(repo, series, model):
    with served(repo) as s, grpc.insecure_channel(s.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = {n: health.Check(health_pb2.HealthCheckRequest(service=f"eddy.v1.Inference/{n}")).status
                  for n in (MODEL, "a-list", "short-state", "linked")}
        assert status[MODEL] == health_pb2.HealthCheckResponse.SERVING
        assert {status[n] for n in ("a-list", "short-state", "linked")} == {health_pb2.HealthCheckResponse.NOT_SERVING}
        with Client(s.address) as c, c.stream(MODEL) as rs:
            y = np.concatenate([rs.push(x) for x in series[:5]])
        s_local = model.stream()
        assert np.array_equal(y, np.concatenate([s_local.push(x) for x in series[:5]]))
