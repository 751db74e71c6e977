"""The accuracy eddy train prints is the accuracy eddy stream delivers, on the same rows.

For both --training modes, a tiny model on a trending series with the delta transform (inside the graphs,
with its x_last/x_seen state): the streamed test RMSE that `eddy train` prints and records must be what
`eddy stream --local` returns for the test rows of the same CSV. And the scorers' row alignment, by hand.
"""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from _fitted import fit

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from eddy.cli.main import main as eddy_main  # noqa: E402
from eddy.runtime.core.manifest import read_manifest  # noqa: E402

ROWS = 160


def _trending() -> str:
    """Two columns with a trend and a season, ``date,a,b``; ``b`` is predicted."""
    t = np.arange(ROWS)
    rng = np.random.default_rng(0)
    a = 50 + 0.4 * t + 3 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, ROWS)
    b = 10 + 0.2 * t + 2 * np.cos(2 * np.pi * t / 12) + rng.normal(0, 0.3, ROWS)
    return "date,a,b\n" + "".join(f"2000-01-{1 + i % 28:02d}T{i // 28:02d}:00,{x:.4f},{y:.4f}\n"
                                  for i, x, y in zip(t, a, b))


@pytest.mark.parametrize(("horizon", "training"), [(1, "tbptt"), (2, "tbptt"), (2, "windows")])
def test_train_prints_what_stream_delivers(tmp_path_factory: pytest.TempPathFactory,
                                           capsys: pytest.CaptureFixture[str], horizon: int, training: str) -> None:
    # A kept run (tests/_fitted.py): what is tested is what it printed and wrote, and what eddy stream returns.
    run = fit(tmp_path_factory, _trending(), ["--features", "a", "b", "--target", "b", "--horizon", str(horizon),
                                              "--target-transform", "delta", "--units", "6", "--epochs", "2",
                                              "--window", "6", "--training", training, "--seed", "0", "--baselines",
                                              "naive", "--members", "1"])
    out_dir, trending, printed = run.version_dir.parent, run.csv, run.out
    line = next(ln for ln in printed.splitlines() if ln.startswith("test RMSE streamed "))
    printed_rmse = float(re.match(r"test RMSE streamed (\S+)", line).group(1))
    m = read_manifest(out_dir / "1")
    assert m.training["training"] == training
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


def test_scorer_alignment_by_hand() -> None:
    """The scorers' indices on a hand-computed case: 20 rows valued 100 + row, horizon 3, window 4, split
    0.6/0.2/0.2 -> test targets rows 16..19, each scored against the stream's output at row - 3 and against
    persistence = the value at row - 3. A stream that outputs exactly row t + 3's value scores 0."""
    from eddy.trainer.evaluate import add_streamed, score_test_set
    from eddy.trainer.series import Series
    from eddy.trainer.windows import make_dataset

    v = 100.0 + np.arange(20, dtype=np.float64)[:, None]  # [N, 1]: row r holds 100 + r
    d = make_dataset(Series("ramp", "synthetic", None, ["v"], ["v"], v, v.copy()), window=4, horizon=3,
                     split=(0.6, 0.2, 0.2))
    assert d.rows["test"] == (16, 20) and d.test_rows.tolist() == [16, 17, 18, 19]
    assert d.y_test_raw[:, 0].tolist() == [116, 117, 118, 119] and d.last_test_raw[:, 0].tolist() == [113, 114, 115, 116]
    np.testing.assert_array_equal(d.x_test[0, :, 0] * d.normalization.input_std[0] + d.normalization.input_mean[0],
                                  [110, 111, 112, 113])  # the first test window ends at row 13 = 16 - 3
    metrics = score_test_set(d, d.y_test_raw.copy())
    assert metrics["rmse"] == 0 and metrics["persistence_rmse"] == pytest.approx(3.0)
    oracle = np.concatenate([v[3:], np.zeros((3, 1))])  # [N, 1]: output at row t = value at t + 3
    assert add_streamed(dict(metrics), d, oracle)["streamed"]["rmse"] == 0
    early = np.concatenate([v[2:], np.zeros((2, 1))])  # output at t = value at t + 2: one step short
    assert add_streamed(dict(metrics), d, early)["streamed"]["rmse"] == pytest.approx(1.0)
