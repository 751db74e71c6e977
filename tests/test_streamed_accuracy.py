"""The accuracy eddy train prints is the accuracy eddy stream delivers, on the same rows (issue 11).

A tiny model on a trending series with the delta transform (inside the graphs, with its x_last/x_seen
state): the streamed test RMSE that `eddy train` prints and records must be what `eddy stream --local`
returns for the test rows of the same CSV.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from eddy.cli.main import main as eddy_main  # noqa: E402
from eddy.cli.train import main as train_main  # noqa: E402
from eddy.runtime.core.manifest import read_manifest  # noqa: E402

ROWS = 160


@pytest.fixture(scope="module")
def trending(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two columns with a trend and a season, ``date,a,b``; ``b`` is predicted."""
    t = np.arange(ROWS)
    rng = np.random.default_rng(0)
    a = 50 + 0.4 * t + 3 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, ROWS)
    b = 10 + 0.2 * t + 2 * np.cos(2 * np.pi * t / 12) + rng.normal(0, 0.3, ROWS)
    path = tmp_path_factory.mktemp("trend") / "trend.csv"
    path.write_text("date,a,b\n" + "".join(f"2000-01-{1 + i % 28:02d}T{i // 28:02d}:00,{x:.4f},{y:.4f}\n"
                                           for i, x, y in zip(t, a, b)))
    return path


@pytest.mark.parametrize("horizon", [1, 2])
def test_train_prints_what_stream_delivers(trending: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           horizon: int) -> None:
    out_dir = tmp_path / "m"
    code = train_main(["--data", str(trending), "--features", "a", "b", "--target", "b", "--horizon", str(horizon),
                       "--target-transform", "delta", "--units", "6", "--epochs", "2", "--window", "6",
                       "--seed", "0", "--out", str(out_dir)])
    printed = capsys.readouterr().out
    assert code == 0
    line = next(ln for ln in printed.splitlines() if ln.startswith("test RMSE streamed "))
    printed_rmse = float(re.match(r"test RMSE streamed (\S+)", line).group(1))
    m = read_manifest(out_dir / "1")
    assert m.target_transform == "delta" and [s.name for s in m.state][-2:] == ["x_last", "x_seen"]
    recorded = m.metrics["streamed"]["rmse"]
    assert f"{recorded:.4g}" == f"{printed_rmse:.4g}"

    assert eddy_main(["stream", "--local", str(out_dir), "--csv", str(trending)]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    pred = np.array([float(r[-1]) for r in rows[1:]])  # [N]: row t predicts b at t + horizon
    actual = np.array([float(r[2]) for r in rows[1:]])
    start, end = m.training["split_rows"]["test"]
    test_rows = np.arange(start, end)
    delivered = float(np.sqrt(np.mean((pred[test_rows - horizon] - actual[test_rows]) ** 2)))
    assert delivered == pytest.approx(recorded, rel=1e-6)
    assert m.metrics["streamed"]["rows"] == len(test_rows) == m.metrics["windows"]
    report = json.loads((out_dir / "1" / "report.json").read_text())  # the report shows the same figures
    assert report["test"]["streamed"]["rmse"] == pytest.approx(recorded)
    np.testing.assert_allclose(np.array(report["test_predictions"]["streamed"])[:, 0], pred[test_rows - horizon],
                               rtol=1e-6)
