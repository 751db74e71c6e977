"""`--target-transform double_delta --season N`: both differences of the airline model. The last N + 1 raw samples
ride in the graphs as one state tensor, so a served stream is a local one bit for bit, resumes from exported state
bytes, and the graphs stay raw in, raw out. `auto` does not try it (it is there to ask for).
Tiny 1-epoch models: the mechanics, not accuracy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _fitted import AUTO_SEASONAL_FLAGS, SEASON, TINY, fit, fitted, seasonal_csv
from _serving import chunked, served

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

import eddy.runtime as runtime  # noqa: E402
from eddy.runtime.client import Client  # noqa: E402
from eddy.runtime.core.manifest import read_manifest  # noqa: E402
from eddy.trainer.self_contained import RTOL  # noqa: E402

FLAGS = [*TINY, "--window", "6", "--target-transform", "double_delta", "--season", str(SEASON)]
SIZES = [1, 4, 25, 1, 13, 100]  # a stream's messages: 144 rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    version_dir, path = fitted(tmp_path_factory, seasonal_csv(), FLAGS)
    return version_dir, np.loadtxt(path, skiprows=1, dtype=np.float32)[:, None]  # [T, 1] as written


def test_double_delta_streams_what_train_reports(trained: tuple[Path, np.ndarray]) -> None:
    version_dir, x = trained
    m = read_manifest(version_dir)
    assert m.target_transform == "double_delta" and m.io == "raw"
    assert [(s.name, s.shape) for s in m.state][-2:] == [("x_season", [SEASON + 1, 1]), ("x_seen", [1])]
    checks = m.parity["checks"]  # ONNX against Keras in float64 (the export refuses a model that fails them)
    assert checks and all(c["error"] <= c["limit"] for c in checks.values()) and "self_contained" in m.parity
    model = runtime.load(version_dir)
    whole = model.stream().push(x)  # [T, 1] raw: row t predicts t + 1
    s = model.stream()
    pieces = np.concatenate([s.push(c) for c in chunked(x, SIZES)])
    np.testing.assert_allclose(pieces, whole, rtol=RTOL, atol=RTOL * float(np.max(np.abs(whole))))
    targets = np.arange(*m.training["split_rows"]["test"])
    served_rmse = float(np.sqrt(np.mean((whole[targets - 1, 0].astype(np.float64) - x[targets, 0]) ** 2)))
    assert served_rmse == pytest.approx(m.metrics["streamed"]["rmse"], rel=1e-5)
    # The buffer after the stream holds its last season + 1 raw samples.
    assert np.array_equal(s.state["x_season"], x[-(SEASON + 1):]) and s.state["x_seen"][0] == 1.0
    # Intervals: absolute errors (the model's errors are raw-unit differences), calibrated on the validation part.
    assert m.calibration["space"] == "absolute" and m.calibration["levels"] == [0.8, 0.95]
    forecast = model.stream().push(x, intervals=True)
    assert np.array_equal(forecast.y, whole)
    for level in (0.8, 0.95):
        assert np.all(forecast.lower[level] < forecast.y) and np.all(forecast.y < forecast.upper[level])
    assert np.all(forecast.upper[0.95] - forecast.lower[0.95] >= forecast.upper[0.8] - forecast.lower[0.8])


def test_served_double_delta_is_the_local_stream_and_resumes_from_its_state(
        trained: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    version_dir, x = trained
    models = tmp_path / "models"
    shutil.copytree(version_dir, models / "dd" / "1")
    pieces = chunked(x, SIZES)
    local = runtime.load(version_dir).stream()
    want = [local.push(p) for p in pieces]
    with served(models) as server, Client(server.address) as client:
        with client.stream("dd") as s:
            got = [s.push(p) for p in pieces[:3]]
            blob = s.export_state()
        with client.stream("dd", state=blob) as s:  # a new session from the exported bytes
            got += [s.push(p) for p in pieces[3:]]
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_auto_chooses_on_the_validation_part_and_tries_double_delta_only_when_asked(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    run = fit(tmp_path_factory, seasonal_csv(), AUTO_SEASONAL_FLAGS)  # a kept run: what it wrote (shared)
    chosen = read_manifest(run.version_dir).metrics["target_transform"]
    tried = chosen["validation_rmse"]
    assert list(tried) == ["level", "delta", "log_delta", "seasonal_delta"]
    assert chosen["kind"] == min(tried, key=tried.get)  # the validation part's choice, never the test part's
