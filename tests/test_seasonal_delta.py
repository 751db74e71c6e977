"""`--target-transform seasonal_delta --season N`: the network predicts the change from the value one season
before the target; the last N raw samples ride in the graphs as one more state tensor, so a stream stays exact
in any chunking and the graphs stay raw in, raw out. Tiny 1-epoch models: the mechanics, not accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _fitted import AUTO_SEASONAL_FLAGS, SEASON, fit, fitted, seasonal_csv, seasonal_flags

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

import eddy.runtime as runtime  # noqa: E402
from eddy.cli.train import main as train_main  # noqa: E402
from eddy.runtime.core.manifest import read_manifest  # noqa: E402

ROWS = 144


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("seasonal") / "s.csv"
    path.write_text(seasonal_csv())
    return path, np.loadtxt(path, skiprows=1, dtype=np.float32)[:, None]  # [T, 1] as written


@pytest.mark.parametrize("horizon", [1, 3])
def test_seasonal_delta_streams_what_train_reports(tmp_path_factory: pytest.TempPathFactory, horizon: int) -> None:
    version_dir, path = fitted(tmp_path_factory, seasonal_csv(), seasonal_flags(horizon))  # shared with eddy info's test
    x = np.loadtxt(path, skiprows=1, dtype=np.float32)[:, None]  # [T, 1] as written
    m = read_manifest(version_dir)
    assert m.target_transform == "seasonal_delta" and m.io == "raw"
    assert [(s.name, s.shape) for s in m.state][-2:] == [("x_season", [SEASON, 1]), ("x_seen", [1])]
    model = runtime.load(version_dir)
    whole = model.stream().push(x)  # [T, 1] raw: row t predicts t + horizon
    s = model.stream()
    chunked = np.concatenate([s.push(x[a:b]) for a, b in ((0, 1), (1, 5), (5, 30), (30, 31), (31, ROWS))])
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(whole))))
    rows = np.asarray(m.training["split_rows"]["test"])  # [start, end) of the test targets
    targets = np.arange(*rows)
    served = float(np.sqrt(np.mean((whole[targets - horizon, 0].astype(np.float64) - x[targets, 0]) ** 2)))
    assert served == pytest.approx(m.metrics["streamed"]["rmse"], rel=1e-5)
    # A zero-change network would be seasonal naive exactly; the base it adds is the value one season back.
    assert m.metrics["baselines"]["seasonal_naive"]["season"] == SEASON


def test_auto_tries_seasonal_delta_when_a_season_is_given(tmp_path_factory: pytest.TempPathFactory) -> None:
    run = fit(tmp_path_factory, seasonal_csv(), AUTO_SEASONAL_FLAGS)  # a kept run: what it wrote (shared)
    tried = read_manifest(run.version_dir).metrics["target_transform"]["validation_rmse"]
    assert list(tried) == ["level", "delta", "log_delta", "seasonal_delta"]


def test_seasonal_delta_needs_a_season(csv: tuple[Path, np.ndarray], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        train_main(["--data", str(csv[0]), "--target-transform", "seasonal_delta", "--out", str(tmp_path / "n")])
    assert e.value.code == 2
    assert "target_transform seasonal_delta needs --season N of at least the horizon (1)" in capsys.readouterr().err
