"""``load(..., lazy_sequence=True)`` (what the server uses) opens the sequence graph on the first chunk."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import eddy.runtime as runtime
from eddy.runtime import ModelLoadError
from eddy.runtime.core.manifest import sha256_file


def test_lazy_model_streams_exactly_like_an_eager_one(model, series):
    lazy = runtime.load(model.path, lazy_sequence=True)
    a, b = model.stream(), lazy.stream()
    for chunk in (series[:1], series[1:30], series[30:31], series[31:]):
        assert np.array_equal(a.push(chunk), b.push(chunk))


def test_unloadable_sequence_graph_fails_at_the_first_chunk(model, series, tmp_path):
    d = tmp_path / "m" / "1"
    shutil.copytree(model.path, d)
    (d / "sequence.onnx").write_bytes(b"not an onnx file")  # hash "fixed" below: only onnxruntime can tell
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["graphs"]["sequence"]["sha256"] = sha256_file(d / "sequence.onnx")
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"sequence\.onnx: onnxruntime cannot load it"):
        runtime.load(d)  # eager (the default): refused at load
    stream = runtime.load(d, lazy_sequence=True).stream()
    stream.push(float(series[0, 0]))  # single samples never need the sequence graph
    with pytest.raises(ModelLoadError, match=r"sequence\.onnx: onnxruntime cannot load it"):
        stream.push(series[1:5])
    assert stream.position == 1
