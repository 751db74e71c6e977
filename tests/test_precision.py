"""`eddy serve --precision int8` serves the int8 twins; every serving default comes from ServeConfig."""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import subprocess

import numpy as np
import pytest
from _serving import EDDY, served
from conftest import MODEL, ROOT

import eddy.runtime as runtime
from eddy.runtime.client import Client
from eddy.runtime.core.layout import graph_file, graph_key, resolve_version_dir
from eddy.runtime.core.manifest import GraphSpec, read_manifest, sha256_file, write_manifest
from eddy.runtime.serving.batcher import Batcher
from eddy.runtime.serving.config import ServeConfig
from eddy.runtime.serving.store.memory import MemoryStore


@pytest.fixture(scope="module")
def int8_repo(models_dir, tmp_path_factory):
    """A copy of the default model with int8 twins made by onnxruntime's quantize_dynamic."""
    pytest.importorskip("onnx")  # quantize_dynamic needs it
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = tmp_path_factory.mktemp("int8")
    dst = root / MODEL / "1"
    shutil.copytree(resolve_version_dir(models_dir / MODEL), dst)
    m = read_manifest(dst)
    graphs = dict(m.graphs)
    for kind in ("step", "sequence"):
        out = dst / graph_file(kind, "int8")
        quantize_dynamic(dst / m.graphs[kind].file, out, weight_type=QuantType.QInt8)
        graphs[graph_key(kind, "int8")] = GraphSpec(out.name, sha256_file(out))
    write_manifest(dst, dataclasses.replace(m, graphs=graphs))
    return root


def test_serve_precision_int8_serves_the_int8_graphs(int8_repo, series):
    x = series[:30]
    local_int8 = runtime.load(int8_repo / MODEL, precision="int8").stream()
    expected = np.concatenate([local_int8.push(v) for v in x])
    float32 = np.concatenate([runtime.load(int8_repo / MODEL).stream().push(x)])
    with served(int8_repo, precision="int8") as live, Client(live.address) as client, client.stream(MODEL) as rs:
        got = np.concatenate([rs.push(v) for v in x])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(got, float32, rtol=0, atol=1e-7)  # really the int8 graphs, not float32


def test_precision_is_checked():
    with pytest.raises(ValueError, match="precision must be one of float32, int8"):
        ServeConfig(precision="fp16")


def test_serve_help_offers_precision():
    r = subprocess.run([*EDDY, "serve", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--precision {float32,int8}" in r.stdout and "(default: float32)" in r.stdout


def test_serving_defaults_have_one_source():
    """Parts that can be built alone take their defaults from ServeConfig (max_sessions once differed)."""
    c = ServeConfig()
    store, batcher = MemoryStore(), Batcher()
    assert (store.ttl_s, store.max_sessions) == (c.session_ttl, c.max_sessions)
    assert (batcher.max_batch, batcher.max_delay_us, batcher.enabled) == (c.max_batch, c.max_delay_us, c.batching)
    assert inspect.signature(MemoryStore.start).parameters["interval_s"].default == c.eviction_interval
