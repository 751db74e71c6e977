"""Raw-in/raw-out graphs (manifest ``io: raw``) and their ``.ort`` twins in the runtime (no tensorflow)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from _models import raw_copy
from conftest import MODEL

import eddy.runtime as runtime
from eddy.runtime.core.errors import ModelLoadError
from eddy.runtime.core.layout import MANIFEST_FILE
from eddy.runtime.core.manifest import read_manifest, write_manifest
from eddy.trainer.ort_format import write_ort


@pytest.fixture(scope="module")
def raw_dir(legacy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = raw_copy(legacy_dir, tmp_path_factory.mktemp("raw") / "1")  # the legacy model: io normalised
    m = read_manifest(out)
    write_manifest(out, dataclasses.replace(m, graphs={**m.graphs, **write_ort(out, m.graphs)}))
    return out


def test_raw_graphs_serve_what_the_runtime_normalisation_served(raw_dir: Path, legacy_dir: Path,
                                                                 series: np.ndarray) -> None:
    local = runtime.load(legacy_dir).stream().push(series)  # the runtime normalises around the legacy graphs
    model = runtime.load(raw_dir)
    assert model.manifest.io == "raw"
    got = np.concatenate([model.stream().push(series[:100]), model.stream().push(series)[100:]])
    assert float(np.max(np.abs(got - local) / np.maximum(np.abs(local), 1.0))) < 1e-5


def test_ort_graphs_load_and_match_the_onnx_ones(raw_dir: Path, series: np.ndarray) -> None:
    onnx_model, ort_model = runtime.load(raw_dir), runtime.load(raw_dir, graph_format="ort")
    assert (raw_dir / "step.ort").is_file() and ort_model.graph_format == "ort"
    s_onnx, s_ort = onnx_model.stream(), ort_model.stream()
    for chunk in (series[:1], series[1:40], series[40:41], series[41:]):
        want, got = s_onnx.push(chunk), s_ort.push(chunk)
        assert float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0))) < 1e-6


def test_missing_ort_graphs_are_named(models_dir: Path) -> None:
    with pytest.raises(ModelLoadError,
                       match=r"has no float32 .ort step graph \(write it with `eddy train --format onnx ort` or `eddy export"):
        runtime.load(models_dir / MODEL, graph_format="ort")


def test_unknown_io_is_refused(raw_dir: Path, tmp_path: Path) -> None:
    d = json.loads((raw_dir / MANIFEST_FILE).read_text())
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({**d, "io": "scaled"}))
    with pytest.raises(ModelLoadError, match="unknown io 'scaled'"):
        read_manifest(tmp_path, verify_files=False)
