"""A model that loses to a naive baseline says so, in `eddy train`, `eddy export --data` and `eddy info`.

Persistence always; seasonal naive when the run had `--season N`. The line quotes the streamed test score
(what a served stream returns), not the window one. Tiny untrained or 1-epoch models on a seasonal series
lose to seasonal naive by a wide margin, which is all these tests need.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _fitted import fit

from eddy.trainer.evaluate import baseline_warnings

SEASON = 12
ROWS = 144


def _metrics(window: float, streamed: float | None, persistence: float, seasonal: float | None) -> dict:
    m: dict = {"rmse": window, "baselines": {"persistence": {"rmse": persistence}}}
    if streamed is not None:
        m["streamed"] = {"rmse": streamed}
    if seasonal is not None:
        m["baselines"]["seasonal_naive"] = {"season": SEASON, "rmse": seasonal}
    return m


def test_the_warning_follows_the_streamed_score() -> None:
    # The window score loses to seasonal naive, the streamed one does not: no warning (users get the stream).
    assert baseline_warnings(_metrics(window=5.0, streamed=2.0, persistence=9.0, seasonal=3.0)) == []
    # The other way round: warned, quoting the streamed figure.
    (line,) = baseline_warnings(_metrics(window=2.0, streamed=6.39, persistence=9.0, seasonal=2.97), window=10)
    assert line.startswith("warning: the model loses to seasonal naive (repeating the value 12 steps before) on the "
                           "test part: streamed RMSE 6.39 vs 2.97 (2.15x); try --target-transform seasonal_delta --season 12 "
                           "(the network then predicts the change from the value one season back); --window 12 or "
                           "more, so each training window spans a season (this model's is 10)"), line
    # A seasonal_delta model is not told to use seasonal_delta.
    seasonal = {**_metrics(window=2.0, streamed=3.1, persistence=9.0, seasonal=2.97),
                "target_transform": {"kind": "seasonal_delta"}}
    (line,) = baseline_warnings(seasonal, window=12)
    assert line.endswith("(1.04x); try more --epochs or --units, or more data"), line
    # Without a streamed score (an old manifest) the window one is used and named.
    lines = baseline_warnings(_metrics(window=4.0, streamed=None, persistence=3.0, seasonal=None))
    assert lines == [lines[0]] and "persistence (repeating the last value) on the test part: window RMSE 4 vs 3" in lines[0]
    assert baseline_warnings({}) == [] and baseline_warnings({"rmse": 1.0}) == []


def test_a_windows_trained_model_is_pointed_to_tbptt() -> None:
    losing = _metrics(window=2.0, streamed=6.39, persistence=6.0, seasonal=2.97)
    lines = baseline_warnings(losing, window=10, training="windows")
    lead = "try --training tbptt (it was trained on windows from zero state but is served over the whole history); "
    assert len(lines) == 2 and all(lead in line for line in lines), lines
    assert lead + "--target-transform delta (or log_delta) for a trending series" in lines[0]
    assert lead + "--target-transform seasonal_delta --season 12" in lines[1]
    for training in ("tbptt", None):  # already trained on streams, or an export: no such advice
        assert not any("--training" in line for line in baseline_warnings(losing, window=10, training=training))


pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")


@pytest.fixture(scope="module")
def seasonal(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A monthly-like series with a strong 12-step season, a 1-epoch trained model and an exported raw model."""
    import keras

    from eddy.cli.export import main as export_main

    root = tmp_path_factory.mktemp("seasonal")
    (root / "s.csv").write_text(_csv_text())
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 1))
    keras.Model(inp, keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(50.0))(
        keras.layers.SimpleRNN(3)(inp))).save(root / "raw.keras")
    return {"root": root, "csv": root / "s.csv", "keras": root / "raw.keras", "export": export_main}  # type: ignore[dict-item]


def _csv_text() -> str:
    t = np.arange(ROWS)
    v = 50 + 10 * np.sin(2 * np.pi * t / SEASON) + np.random.default_rng(0).normal(0, 0.3, ROWS)  # [T]
    return "v\n" + "".join(f"{x:.4f}\n" for x in v)


# A 1-epoch model of the seasonal series (a kept run: tests/_fitted.py; what is tested is what it wrote and printed).
TRAIN = ["--season", str(SEASON), "--units", "3", "--members", "1", "--epochs", "1", "--window", "6",
         "--target-transform", "level", "--seed", "0"]


def _expected(version_dir: Path) -> tuple[str, dict]:
    from eddy.runtime.core.manifest import read_manifest

    m = read_manifest(version_dir).metrics
    streamed, naive = m["streamed"]["rmse"], m["baselines"]["seasonal_naive"]["rmse"]
    assert streamed > naive  # the premise: seasonal naive wins on this series
    return (f"warning: the model loses to seasonal naive (repeating the value {SEASON} steps before) on the test "
            f"part: streamed RMSE {streamed:.4g} vs {naive:.4g} ({streamed / naive:.2f}x)"), m


def test_train_export_and_info_warn_when_seasonal_naive_wins(seasonal: dict, tmp_path_factory: pytest.TempPathFactory,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from eddy.cli.info import main as info_main

    root = seasonal["root"]
    run = fit(tmp_path_factory, _csv_text(), TRAIN)  # the classical baselines too (the default)
    printed = run.out
    want, trained = _expected(run.version_dir)
    (line,) = [ln for ln in printed.splitlines() if ln.startswith("warning: the model loses to seasonal naive")]
    assert line.startswith(want + "; try --target-transform seasonal_delta --season 12"), line
    # The classical baselines (the default --baselines classical) sit next to the naive ones, season length 12.
    classical = {k: trained["baselines"][k] for k in ("auto_ets", "auto_arima", "auto_theta")}
    assert all(b["rmse"] > 0 and b["model"] and "season_length 12" in b["how"] for b in classical.values()), classical
    best = min(classical, key=lambda k: classical[k]["rmse"])
    label = {"auto_ets": "AutoETS", "auto_arima": "AutoARIMA", "auto_theta": "AutoTheta"}[best]
    (line,) = [ln for ln in printed.splitlines() if ln.startswith(f"warning: the model loses to {label} (")]
    assert "the best classical baseline, by more than 5% on the test part" in line, line
    report = json.loads((run.version_dir / "report.json").read_text())
    assert set(report["test_predictions"]["classical"]) == set(classical)

    assert seasonal["export"]([str(seasonal["keras"]), "--out", str(root / "exported"), "--data", str(seasonal["csv"]),
                               "--season", str(SEASON)]) == 0
    printed = capsys.readouterr().out
    want_export, m = _expected(root / "exported" / "1")
    assert m["baselines"]["seasonal_naive"]["season"] == SEASON
    (line,) = [ln for ln in printed.splitlines() if ln.startswith("warning: the model loses to seasonal naive")]
    assert line.startswith(want_export + "; retrain it"), line
    assert "warning: the model loses to persistence (repeating the last value)" in printed  # an untrained model

    for name, expected in (("trained", want), ("exported", want_export)):
        model_dir = run.version_dir.parent if name == "trained" else root / name
        assert info_main([str(model_dir)]) == 0
        table = capsys.readouterr().out
        assert expected in " ".join(table.split()), table  # wrapped in the table
        assert ("AutoETS" in table) == (name == "trained"), table  # eddy export scores no classical baselines
        assert info_main([str(model_dir), "--json"]) == 0
        warnings = json.loads(capsys.readouterr().out)["warnings"]
        assert any(w.startswith(expected) for w in warnings), warnings


def test_train_quiet_warns_on_stderr(tmp_path_factory: pytest.TempPathFactory) -> None:
    run = fit(tmp_path_factory, _csv_text(), [*TRAIN, "--quiet", "--baselines", "naive"])  # the classical ones: above
    want, _ = _expected(run.version_dir)
    assert run.out.strip() == str(run.version_dir)
    assert f"eddy train: {want}" in run.err


def test_export_season_needs_data(seasonal: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert seasonal["export"]([str(seasonal["keras"]), "--out", str(tmp_path / "o"), "--season", "12"]) == 2
    assert "--season scores the seasonal-naive baseline on --data; give --data too" in capsys.readouterr().err
