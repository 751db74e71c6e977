"""`eddy train --format onnx ort` writes the .ort twins of every graph it writes, and the runtime streams them
exactly as the .onnx ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _fitted import DELTA_FLAGS, fitted, trend_csv

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

import eddy.runtime as runtime  # noqa: E402
from eddy.runtime.core.manifest import read_manifest  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    version_dir, csv = fitted(tmp_path_factory, trend_csv(), DELTA_FLAGS)  # a trend: x_last/x_seen state too
    return version_dir, np.loadtxt(csv, skiprows=1, dtype=np.float32)[:, None]  # [T, 1] as written


def test_trained_dir_lists_ort_twins_of_every_graph(trained: tuple[Path, np.ndarray]) -> None:
    version_dir, _ = trained
    m = read_manifest(version_dir)  # hashes verified
    assert {k: g.file for k, g in m.graphs.items() if k.endswith("_ort")} == {
        "step_ort": "step.ort", "sequence_ort": "sequence.ort",
        "step_int8_ort": "step_int8.ort", "sequence_int8_ort": "sequence_int8.ort"}
    assert m.training["formats"] == ["onnx", "ort"]


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_ort_graphs_stream_as_the_onnx_ones(trained: tuple[Path, np.ndarray], precision: str) -> None:
    version_dir, series = trained
    onnx_model = runtime.load(version_dir, precision=precision)
    ort_model = runtime.load(version_dir, precision=precision, graph_format="ort")
    assert ort_model.graph_format == "ort"
    s_onnx, s_ort = onnx_model.stream(), ort_model.stream()
    for chunk in (series[:1], series[1:30], series[30:31], series[31:]):  # step graph, then sequence graph
        want, got = s_onnx.push(chunk), s_ort.push(chunk)  # [n, 1] raw units
        np.testing.assert_array_equal(got, want)  # bit for bit (measured: 0.0 difference)
    np.testing.assert_array_equal(ort_model.stream().push(series), onnx_model.stream().push(series))


def test_only_onnx_without_the_flag(tmp_path: Path) -> None:
    from eddy.trainer.config import TrainConfig

    with pytest.raises(ValueError, match="formats must include onnx"):
        TrainConfig(formats=("ort",)).validate()
