"""``eddy train``: data handling, flags, the version directory and its manifest.

Training runs use tiny models (8 units, 2 epochs) on a short CSV so the file
stays fast; everything is written under ``tmp_path``.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _fitted import fit, kept
from _png import colour_fraction, png_size

import eddy.runtime as runtime
import eddy.trainer.train
from eddy.cli.train import TRAIN_EXTRA_MESSAGE, main
from eddy.runtime.core.calibration import scale_path
from eddy.runtime.core.manifest import read_manifest
from eddy.trainer import publish
from eddy.trainer.errors import DataError
from eddy.trainer.evaluate import forward
from eddy.trainer.parity import RULE
from eddy.trainer.series import bundled_series, load_csv, synthetic_series
from eddy.trainer.transform import Transform
from eddy.trainer.windows import make_dataset

ROOT = Path(__file__).resolve().parent.parent
BLOCK_TF = Path(__file__).resolve().parent / "block_tensorflow"
TINY = ["--units", "8", "--members", "1", "--epochs", "2", "--window", "5", "--quiet",  # fast flags for end-to-end runs
        "--target-transform", "level",  # one candidate (auto trains one per applicable transform)
        "--baselines", "naive"]  # the classical fits are tested below (the summary, the horizon run) and in test_classical


def _write_csv(path: Path, n: int = 160) -> Path:
    """A date column (ISO dates, the time column) and one noisy sine column ``level``."""
    rng = np.random.default_rng(7)
    level = 10 + 5 * np.sin(np.arange(n) / 6.0) + rng.normal(0, 0.3, n)
    start = datetime.date(2024, 1, 1)
    lines = ["date,level"] + [f"{start + datetime.timedelta(days=i)},{v:.4f}" for i, v in enumerate(level)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# --- data ---------------------------------------------------------------------------------------


def test_bundled_series_is_sunspots() -> None:
    s = bundled_series()
    assert (s.name, s.source, s.features, s.targets) == ("sunspots", "bundled", ["sunspots"], ["sunspots"])
    assert s.inputs.shape == (309, 1)  # 1700..2008; the year column is not a feature


def test_windows_labels_and_split_are_time_ordered() -> None:
    s = synthetic_series(length=100)
    ds = make_dataset(s, window=4, horizon=1, split=(0.6, 0.2, 0.2))
    assert ds.rows == {"train": (0, 60), "val": (60, 80), "test": (80, 100)}
    # Window i covers rows i..i+3 and predicts row i+4; labels 4..59 train, 60..79 val, 80..99 test.
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (56, 20, 20)
    x = ds.normalised_inputs()
    np.testing.assert_array_equal(ds.x_val[0], x[56:60])  # first val window looks back into train rows
    np.testing.assert_allclose(ds.y_test_raw[:, 0], s.outputs[80:, 0])
    np.testing.assert_allclose(ds.last_test_raw[:, 0], s.outputs[79:99, 0])  # persistence: the window's last value
    # Normalisation comes from the training rows only.
    assert ds.normalization.input_mean == pytest.approx([s.inputs[:60, 0].mean()])
    assert ds.normalization.input_std == pytest.approx([s.inputs[:60, 0].std()])
    assert ds.normalization.input_mean != pytest.approx([s.inputs[:, 0].mean()])


def test_csv_default_column_is_the_single_numeric_one(tmp_path: Path) -> None:
    s = load_csv(_write_csv(tmp_path / "levels.csv"))
    assert (s.name, s.features, s.targets, len(s)) == ("levels", ["level"], ["level"], 160)


def test_csv_target_defaults_features(tmp_path: Path) -> None:
    path = tmp_path / "two.csv"
    path.write_text("a,b\n1,2\n3,5\n4,4\n")
    s = load_csv(path, targets=["b"])
    assert (s.features, s.targets) == (["b"], ["b"])
    s = load_csv(path, features=["a", "b"], targets=["b"])
    np.testing.assert_array_equal(s.inputs, [[1, 2], [3, 5], [4, 4]])


BAD_CSVS = [
    ("missing.csv", None, [], "missing.csv: no such file"),
    ("empty.csv", "", [], "empty file (expected a header row"),
    ("header_only.csv", "a\n", [], "no data rows after the header"),
    ("dupes.csv", "a,a\n1,2\n", [], "line 1: duplicate column name(s) 'a'"),
    ("ragged.csv", "a,b\n1,2\n3\n", [], "line 3: 1 fields, but the header has 2"),
    ("text.csv", "a\n1\n2\nthree\n", ["--features", "a"], "line 4: column 'a': 'three' is not a number"),
    ("hole.csv", "a,b\n1,x\n,y\n", ["--features", "a"],
     "line 3: column 'a': missing value (empty cell); fill it or pass --fill ffill|interpolate|drop"),
    ("nan.csv", "a\n1\nNaN\n", ["--features", "a"], "line 3: column 'a': missing value ('NaN')"),
    ("inf.csv", "a\n1\n2\n-inf\n", ["--features", "a"], "line 4: column 'a': '-inf' is not a finite number"),
    ("text_with_fill.csv", "a\n1\n\n2\nn.a.\n", ["--features", "a", "--fill", "ffill"],
     "line 5: column 'a': 'n.a.' is not a number"),  # --fill handles missing values, not bad ones
    ("ffill_start.csv", "t,a\n1,\n2,3\n", ["--features", "a", "--fill", "ffill"],
     "line 2: column 'a': missing value with nothing before it to fill forward from"),
    ("unknown.csv", "a,b\n1,2\n", ["--target", "c"], "unknown column 'c' (columns: a, b)"),
    ("unknown_feature.csv", "a,b\n1,2\n", ["--features", "a", "zz", "--target", "b"], "unknown column 'zz'"),
    ("ambiguous.csv", "a,b\n1,2\n", [], "found numeric columns a, b; choose with --features and --target"),
    ("ambiguous_dated.csv", "date,a,b\n2024-01-01,1,2\n", [],
     "found numeric columns a, b besides the time column 'date'"),
    ("no_numeric.csv", "a\nx\n", [], "found no numeric column"),
    # A numeric column with a bad cell is still the one column to use: the same line-numbered error as with
    # --features, and with another numeric column eddy asks which, rather than silently taking the clean one.
    ("text_one_column.csv", "h\n1\n2\nthree\n4\n", [], "line 4: column 'h': 'three' is not a number"),
    ("text_dated.csv", "date,h\n2024-01-01,1\n2024-01-02,x\n2024-01-03,3\n", [], "line 3: column 'h': 'x' is not a number"),
    ("inf_one_column.csv", "a\n1\n2\n-inf\n", [], "line 4: column 'a': '-inf' is not a finite number"),
    ("ambiguous_bad_cell.csv", "a,b\n1,2\n3,x\n4,5\n", [], "found numeric columns a, b; choose with --features"),
    ("multi.csv", "a,b\n1,2\n", ["--features", "a", "b"], "2 feature columns; choose the predicted one(s) with --target"),
    ("short.csv", "a\n" + "".join(f"{i}\n" for i in range(6)), [], "6 rows are too few for window 5"),
    ("flat.csv", "a\n" + "3\n" * 60, [], "column 'a' is constant in the training part (std 0)"),
    ("flat_feature.csv", "a,b\n" + "".join(f"3,{i % 7}\n" for i in range(60)), ["--features", "a", "b", "--target", "b"],
     "column 'a' is constant in the training part (std 0)"),
    ("season.csv", "a\n" + "".join(f"{i % 7}\n" for i in range(60)), ["--season", "500"],
     "--season 500 must be at least the horizon (1) and at most 51 rows"),
]


@pytest.mark.parametrize(("file", "text", "flags", "message"), BAD_CSVS, ids=[c[0] for c in BAD_CSVS])
def test_bad_csv_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str, text: str | None, flags: list[str], message: str
) -> None:
    path = tmp_path / file
    if text is not None:
        path.write_text(text)
    out_dir = tmp_path / "models" / "m"
    code, out, err = _run(["--data", str(path), *flags, *TINY, "--out", str(out_dir)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("eddy train: ") and message in err, err
    assert str(path) in err  # names the file
    assert not (tmp_path / "models").exists()


def test_bad_csv_leaves_an_existing_model_directory_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hole.csv"
    path.write_text("a\n1\n2\n\n3\nNA\n")  # line 6: NA (line 4 is blank and skipped)
    out_dir = tmp_path / "models" / "m"
    (out_dir / "1").mkdir(parents=True)
    code, _, err = _run(["--data", str(path), *TINY, "--out", str(out_dir)], capsys)
    assert code == 2 and f"{path}: line 6: column 'a': missing value" in err, err
    assert [p.name for p in out_dir.iterdir()] == ["1"]


def test_time_column_is_recognised_and_labels_rows(tmp_path: Path) -> None:
    iso = tmp_path / "iso.csv"  # not named like time: recognised by its ISO dates
    iso.write_text("when,x\n2024-01-01T00:00,1\n2024-01-01T01:00,2\n2024-01-01T02:00,4\n")
    s = load_csv(iso)
    assert (s.time_column, s.features, s.labels) == ("when", ["x"], ["2024-01-01T00:00", "2024-01-01T01:00",
                                                                     "2024-01-01T02:00"])
    named = tmp_path / "named.csv"  # integer years and a trade_date column: the first time-like name wins
    named.write_text("Year,trade_date,x\n1990,a,1\n1991,b,2\n")
    s = load_csv(named)
    assert (s.time_column, s.features, s.label(1)) == ("Year", ["x"], "1991")
    plain = tmp_path / "plain.csv"  # 20240101 is a number, not a date column
    plain.write_text("k,x\n20240101,1\n20240102,2\n")
    s = load_csv(plain, features=["x"])
    assert (s.time_column, s.labels, s.label(1)) == (None, None, "1")
    assert bundled_series().time_column == "year" and bundled_series().labels[0] == "1700"


def test_fill_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("date,a,b\n2024-01-01,1,10\n2024-01-02,,NA\n2024-01-03,4,n/a\n2024-01-04,5,40\n")
    ffill = load_csv(path, ["a", "b"], ["b"], fill="ffill")
    np.testing.assert_array_equal(ffill.inputs, [[1, 10], [1, 10], [4, 10], [5, 40]])
    assert (ffill.missing, ffill.dropped_rows) == (3, 0)
    interp = load_csv(path, ["a", "b"], ["b"], fill="interpolate")
    np.testing.assert_allclose(interp.inputs, [[1, 10], [2.5, 20], [4, 30], [5, 40]])
    np.testing.assert_allclose(interp.outputs[:, 0], [10, 20, 30, 40])
    dropped = load_csv(path, ["a", "b"], ["b"], fill="drop")
    np.testing.assert_array_equal(dropped.inputs, [[1, 10], [5, 40]])
    assert dropped.labels == ["2024-01-01", "2024-01-04"] and dropped.dropped_rows == 2
    only_a = load_csv(path, ["a"], ["a"], fill="drop")  # only the used columns count
    assert only_a.labels == ["2024-01-01", "2024-01-03", "2024-01-04"]


def test_horizon_labels_persistence_and_seasonal_baseline() -> None:
    s = synthetic_series(length=100)
    ds = make_dataset(s, window=4, horizon=3, split=(0.6, 0.2, 0.2))
    # Window i covers rows i..i+3 and predicts row i+3+3; the test part holds labels 80..99.
    np.testing.assert_array_equal(ds.test_rows, np.arange(80, 100))
    np.testing.assert_array_equal(ds.x_test[0], ds.normalised_inputs()[74:78])
    np.testing.assert_allclose(ds.last_test_raw[:, 0], s.outputs[77:97, 0])  # the window's last row
    np.testing.assert_allclose(ds.seasonal_test_raw(50)[:, 0], s.outputs[30:50, 0])
    with pytest.raises(DataError, match="--season 2 must be at least the horizon"):
        ds.seasonal_test_raw(2)


def test_persistence_uses_the_target_when_it_is_not_a_feature(tmp_path: Path) -> None:
    path = tmp_path / "two.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i * i}\n" for i in range(40)))
    ds = make_dataset(load_csv(path, ["a"], ["b"]), window=3, horizon=2)
    np.testing.assert_array_equal(ds.last_test_raw[:, 0], (ds.test_rows - 2) ** 2)


def test_synthetic_data_has_one_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["--synthetic", "--features", "temp", *TINY, "--out", str(tmp_path / "m")], capsys)
    assert code == 2 and "synthetic data: unknown column 'temp' (columns: value)" in err
    assert not (tmp_path / "m").exists()


def test_data_error_is_invalid_input() -> None:
    from eddy.runtime.core.errors import InvalidInput

    assert issubclass(DataError, InvalidInput) and DataError.code == "INVALID_ARGUMENT"


# --- flags --------------------------------------------------------------------------------------


BAD_FLAGS = [
    (["--window", "0"], "argument --window: must be at least 1, got 0"),
    (["--units", "0"], "argument --units: must be at least 1, got 0"),
    (["--layers", "x"], "argument --layers: expected an integer, got 'x'"),
    (["--epochs", "-1"], "argument --epochs: must be at least 1, got -1"),
    (["--lr", "0"], "argument --lr: must be positive, got 0"),
    (["--clipnorm", "nan"], "argument --clipnorm: expected a finite number, got 'nan'"),
    (["--split", "0.5,0.5,0.5"], "fractions must sum to 1"),
    (["--split", "0.7,0.3"], "expected three fractions TRAIN,VAL,TEST"),
    (["--split", "1,0,0"], "every fraction must be positive"),
    (["--cell", "transformer"], "argument --cell: invalid choice: 'transformer'"),
    (["--seed", "-3"], "argument --seed: must be at least 0"),
    (["--synthetic", "--data", "x.csv"], "argument --data: not allowed with argument --synthetic"),
    (["--horizon", "0"], "argument --horizon: must be at least 1, got 0"),
    (["--dropout", "1"], "argument --dropout: must be in [0, 1), got 1"),
    (["--recurrent-dropout", "-0.1"], "argument --recurrent-dropout: must be in [0, 1)"),
    (["--l2", "-1"], "argument --l2: must be 0 or more"),
    (["--clipnorm", "1", "--clipvalue", "0.5"], "give either --clipnorm or --clipvalue, not both"),
    (["--fill", "zero"], "argument --fill: invalid choice: 'zero'"),
    (["--season", "0"], "argument --season: must be at least 1"),
    (["--reduce-lr-patience", "-1"], "argument --reduce-lr-patience: must be at least 0"),
    (["--quantize", "int4"], "argument --quantize: invalid choice: 'int4'"),
    (["--intervals", "0.8", "95"], "argument --intervals: an interval level is a coverage in (0, 1), e.g. 0.8, got 95"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flags_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code, _, err = _run([*flags, "--out", str(tmp_path / "m")], capsys)
    assert code == 2
    assert "usage: eddy train" in err and message in err, err
    assert not (tmp_path / "m").exists()


def test_help_states_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    flags = ["--data", "--synthetic", "--features", "--target", "--window", "--horizon", "--split", "--fill", "--season",
             "--cell", "--layers", "--units", "--auto-units", "--preset", "--members", "--dropout", "--recurrent-dropout",
             "--l2", "--epochs", "--training",
             "--batch-size", "--lr", "--clipnorm", "--clipvalue", "--patience", "--reduce-lr-patience", "--seed", "--out",
             "--name", "--quantize", "--intervals", "--quiet"]
    text = " ".join(out.split())
    for flag, nxt in zip(flags, flags[1:] + ["$"]):
        section = text[text.index(f" {flag} ", text.index("options:")):]
        section = section[: section.find(f" {nxt} ")] if nxt != "$" else section
        assert "(default:" in section, flag
    assert "exploding gradients" in text  # why --clipnorm exists


def test_clipvalue_turns_off_the_default_clipnorm(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[float | None, float | None]] = []

    def fake_train(config: object, log: object = None) -> None:
        seen.append((config.clipnorm, config.clipvalue))  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(eddy.trainer.train, "train", fake_train)
    assert main(["--clipvalue", "0.5", "--quiet"]) == 130
    assert main(["--quiet"]) == 130
    assert main(["--clipnorm", "0", "--quiet"]) == 130
    assert seen == [(None, 0.5), (1.0, None), (None, None)]


def test_the_preset_sets_units_members_epochs_and_patience_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int, int, int, int]] = []

    def fake_train(config: object, log: object = None) -> None:
        seen.append((config.units, config.auto_units, config.members, config.epochs,  # type: ignore[attr-defined]
                     config.patience))  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(eddy.trainer.train, "train", fake_train)
    assert main(["--quiet"]) == 130
    assert main(["--preset", "seed", "--quiet"]) == 130
    assert main(["--preset", "seed", "--units", "20", "--epochs", "30", "--patience", "0", "--members", "2",
                 "--auto-units", "8", "--quiet"]) == 130
    assert seen == [(100, 50, 5, 100, 15), (50, 50, 1, 10, 5), (20, 8, 2, 30, 0)]


# --- without the training extra -----------------------------------------------------------------


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BLOCK_TF), str(ROOT)])}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_without_training_extra_one_line_and_exit_2(tmp_path: Path) -> None:
    probe = _python("import tensorflow", tmp_path)
    assert probe.returncode != 0 and "blocked by tests/block_tensorflow" in probe.stderr  # the blocker works
    r = _python("import sys; from eddy.cli.train import main; sys.exit(main(['--epochs', '1', '--out', 'm']))", tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", TRAIN_EXTRA_MESSAGE + "\n")
    assert not (tmp_path / "m").exists()
    r = _python("import sys; from eddy.cli.train import main; sys.exit(main(['--help']))", tmp_path)
    assert r.returncode == 0 and "usage: eddy train" in r.stdout


def test_cli_import_does_not_import_tensorflow(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", "import sys, eddy.cli.train, eddy.trainer.train; "
                               "print(sorted({'tensorflow', 'keras', 'tf2onnx'} & set(sys.modules)))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


# --- version directories ------------------------------------------------------------------------


def test_next_version_ignores_non_versions(tmp_path: Path) -> None:
    assert publish.next_version(tmp_path / "absent") == 1
    for name in ("1", "3", "07", "x", ".staging-abc"):
        (tmp_path / name).mkdir()
    (tmp_path / "9").write_text("a file, not a version")
    assert publish.list_versions(tmp_path) == [1, 3]
    assert publish.next_version(tmp_path) == 4


def test_failed_run_leaves_nothing(tmp_path: Path) -> None:
    model_dir = tmp_path / "new" / "m"
    with pytest.raises(RuntimeError, match="export broke"):
        with publish.staging_dir(model_dir) as staging:
            (staging / "step.onnx").write_bytes(b"half")
            raise RuntimeError("export broke")
    assert not (tmp_path / "new").exists()  # directories this run created are gone too

    (tmp_path / "kept" / "1").mkdir(parents=True)
    with pytest.raises(RuntimeError):
        with publish.staging_dir(tmp_path / "kept"):
            raise RuntimeError("export broke")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["1"]


def test_publish_never_replaces_a_version_claimed_meanwhile(tmp_path: Path) -> None:
    def finalize(staging: Path, version: int) -> None:
        (staging / "manifest.json").write_text(json.dumps({"version": version}))
        if version == 1:  # another writer publishes version 1 first
            (tmp_path / "1").mkdir(exist_ok=True)
            (tmp_path / "1" / "manifest.json").write_text("theirs")

    with publish.staging_dir(tmp_path) as staging:
        path, version = publish.claim_version(staging, tmp_path, finalize)
    assert (path, version) == (tmp_path / "2", 2)
    assert (tmp_path / "1" / "manifest.json").read_text() == "theirs"
    assert json.loads((path / "manifest.json").read_text()) == {"version": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default recipe on the bundled sunspots (window 10, split 0.7/0.15/0.15), smaller and shorter
    (8 units, 2 epochs, one target transform), run twice with the same seed into one model directory: the first
    run is kept across runs (tests/_fitted.py kept()) and copied in as version 1, the second trains every time, in
    another process than the first, and writes version 2 next to it."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    flags = ["--units", "8", "--members", "1", "--epochs", "2", "--seed", "3", "--target-transform", "level", "--quiet",
             "--baselines", "naive"]

    def make(root: Path) -> None:
        assert main([*flags, "--out", str(root / "sunspots")]) == 0

    out_dir = tmp_path_factory.mktemp("train") / "models" / "sunspots"
    shutil.copytree(kept(tmp_path_factory, "\0".join(flags), make) / "sunspots" / "1", out_dir / "1")
    assert main([*flags, "--out", str(out_dir)]) == 0
    return out_dir


def test_runs_write_numbered_versions(two_runs: Path) -> None:
    out_dir = two_runs
    assert sorted(p.name for p in out_dir.iterdir()) == ["1", "2"]  # no staging leftovers
    for v in (1, 2):
        assert sorted(p.name for p in (out_dir / str(v)).iterdir()) == [
            "manifest.json", "model.keras", "report.json", "report.png", "sequence.onnx", "step.onnx"]
        assert read_manifest(out_dir / str(v)).version == v


def test_manifest_contents(two_runs: Path) -> None:
    out_dir = two_runs
    m = read_manifest(out_dir / "1")  # verifies every listed file's sha256
    assert (m.name, m.cell, m.layers, m.units, m.window, m.horizon) == ("sunspots", "simple_rnn", 1, 8, 10, 1)
    assert (m.features, m.targets) == (["sunspots"], ["sunspots"])
    assert [(s.name, s.shape) for s in m.state] == [("h0", [8])]
    assert set(m.graphs) == {"step", "sequence"} and m.opset == 17
    assert m.graphs["step"].ops == ["Add", "Div", "MatMul", "Mul", "Sub", "Tanh"]  # normalisation inside the graph
    assert "RNN" in m.graphs["sequence"].ops and m.io == "raw" and m.target_transform == "level"
    assert set(m.files) == {"model.keras"}
    assert [(k, c["steps"]) for k, c in m.parity["checks"].items()] == [
        ("window_vs_predict", 10), ("chunked_sequence", 309), ("chained_step", 309)]  # the whole series
    assert all(0 <= c["error"] <= c["limit"] for c in m.parity["checks"].values())
    assert {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "eddy"} <= set(m.versions)
    assert m.versions["eddy"] != "unknown" and m.created.endswith("+00:00")

    # Normalisation: statistics of the training rows only (70% of 309 = 216 rows).
    spots = bundled_series().inputs[:, 0]
    assert m.normalization.input_mean == pytest.approx([spots[:216].mean()])
    assert m.normalization.target_std == pytest.approx([spots[:216].std()])

    # Test metrics in raw units, with the persistence baseline (last year's value) computed here.
    assert m.metrics["windows"] == 47  # rows 262..308
    persistence = float(np.sqrt(np.mean((spots[262:] - spots[261:-1]) ** 2)))
    assert m.metrics["persistence_rmse"] == pytest.approx(persistence)
    assert m.metrics["per_target"]["sunspots"]["rmse"] == m.metrics["rmse"] == pytest.approx(m.metrics["mse"] ** 0.5)
    assert m.metrics["baselines"]["persistence"]["rmse"] == m.metrics["persistence_rmse"]

    # Intervals: split conformal on the streamed validation residuals, recomputed here from a local stream.
    cal = m.intervals
    assert cal is not None and (cal.levels, cal.space, cal.rows, cal.season) == ((0.8, 0.95), "absolute", 46, None)
    y = runtime.load(out_dir / "1").stream().push(spots[:, None].astype(np.float32))[:, 0]  # row t predicts t + 1
    residuals = np.abs(spots[216:262] - y[215:261].astype(np.float64))
    assert cal.quantiles["sunspots"] == pytest.approx([np.sort(residuals)[37], np.sort(residuals)[44]], rel=1e-6)
    scored = np.concatenate([[np.nan], np.abs(spots[1:] - y[:-1].astype(np.float64))])  # row t: |actual - forecast|
    ratio = residuals / scale_path(scored, residuals.mean())[215:261]  # over the scale when each was forecast
    assert cal.normalised.scale["sunspots"] == pytest.approx(residuals.mean(), rel=1e-6)
    assert cal.normalised.quantiles["sunspots"] == pytest.approx([np.sort(ratio)[37], np.sort(ratio)[44]], rel=1e-4)
    lo, hi = y[261:308] - np.float32(cal.quantiles["sunspots"][0]), y[261:308] + np.float32(cal.quantiles["sunspots"][0])
    assert m.metrics["intervals"]["levels"]["80"]["coverage"] == pytest.approx(
        np.mean((lo <= spots[262:]) & (spots[262:] <= hi)), abs=1 / 47 + 1e-9)
    assert m.metrics["intervals"]["rows"] == 47 and m.metrics["intervals"]["notes"] == []

    t = m.training
    assert (t["seed"], t["epochs"], t["epochs_run"], t["units"], t["batch_size"]) == (3, 2, 2, 8, 32)
    assert t["data"] == {"source": "bundled", "name": "sunspots", "path": "trainer/data/sunspots.csv", "rows": 309,
                         "time_column": "year"}  # a package-relative path, not this machine's
    assert t["split"] == [0.7, 0.15, 0.15] and t["split_rows"]["test"] == [262, 309]
    assert len(t["history"]["loss"]) == len(t["history"]["val_loss"]) == 2


def test_default_recipe_rebuilds_the_committed_models_data_side(two_runs: Path) -> None:
    """Same data, split and window as models/sunspots/1 (``eddy train --out models/sunspots --seed 0``):
    the columns, windows and split the runtime relies on come out the same, and the committed normalisation is
    what the trainer computes today for the committed model's target transform (trained figures are not
    compared: they depend on library versions)."""
    out_dir = two_runs
    new, committed = read_manifest(out_dir / "1"), read_manifest(ROOT / "models" / "sunspots" / "1")
    for field in ("name", "cell", "layers", "features", "targets", "window", "horizon"):
        assert getattr(new, field) == getattr(committed, field), field
    for key in ("data", "split_rows", "windows"):
        assert new.training[key] == committed.training[key], key
    assert (committed.io, committed.training["seed"], committed.training["training"]) == ("raw", 0, "tbptt")
    s = bundled_series()
    kind = committed.target_transform
    transform = None if kind == "level" else Transform.for_columns(kind, s.features, s.targets)
    norm = make_dataset(s, committed.window, committed.horizon, transform=transform).normalization
    for field in ("input_mean", "input_std", "target_mean", "target_std"):
        assert getattr(norm, field) == pytest.approx(getattr(committed.normalization, field), rel=1e-12)


def test_gradient_norms_are_recorded(two_runs: Path) -> None:
    out_dir = two_runs
    t = read_manifest(out_dir / "1").training
    for key in ("grad_norm", "recurrent_grad_norm"):
        assert len(t["history"][key]) == 2 and all(0 < v < 1e3 for v in t["history"][key]), key
    assert t["history"]["lr"] == pytest.approx([1e-3, 1e-3])
    assert t["gradient_health"] == {"exploded": False, "vanished": False, "notes": [
        "finite norms, no 10x jump over the running median, recurrent norms above 1e-06"]}


def test_report_holds_history_baselines_and_labelled_predictions(two_runs: Path) -> None:
    out_dir = two_runs
    report = json.loads((out_dir / "1" / "report.json").read_text())
    m = read_manifest(out_dir / "1")
    assert report["model"]["version"] == 1 and report["model"]["targets"] == ["sunspots"]
    assert report["data"]["time_column"] == "year" and report["data"]["rows"] == 309
    assert report["history"]["epoch"] == [1, 2] and len(report["history"]["grad_norm"]) == 2
    assert report["test"]["rmse"] == pytest.approx(m.metrics["rmse"])
    assert report["baselines"]["persistence"]["rmse"] == pytest.approx(m.metrics["persistence_rmse"])
    assert "seasonal_naive" not in report["baselines"]  # only with --season
    p = report["test_predictions"]
    assert p["labels"][0] == "1962" and len(p["labels"]) == len(p["actual"]) == len(p["predicted"]) == 47
    np.testing.assert_allclose(np.asarray(p["actual"])[:, 0], bundled_series().outputs[262:, 0])
    assert report["parity"] == m.parity
    bands = p["intervals"]["80"]  # what a served stream returned for the test rows, drawn as a band
    assert len(bands["lower"]) == len(bands["upper"]) == 47 and set(p["intervals"]) == {"80", "95"}
    assert all(lo <= y <= hi for lo, y, hi in zip(np.asarray(bands["lower"])[:, 0], np.asarray(p["streamed"])[:, 0],
                                                    np.asarray(bands["upper"])[:, 0]))
    assert report["test"]["intervals"] == m.metrics["intervals"]
    png = out_dir / "1" / "report.png"
    assert png_size(png) == (1200, 800) and colour_fraction(png, "tab:orange", rows=(0.5, 1)) > 0.0005  # predictions
    assert colour_fraction(png, "#ddeaf3", rows=(0.5, 1), tol=0.02) > 0.02  # the 80 % band (tab:blue, alpha 0.15)


def test_same_seed_gives_identical_weights(two_runs: Path) -> None:
    import onnx
    from onnx import numpy_helper

    out_dir = two_runs

    def initializers(path: Path) -> dict[str, np.ndarray]:
        return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}

    a, b = initializers(out_dir / "1" / "step.onnx"), initializers(out_dir / "2" / "step.onnx")
    assert a.keys() == b.keys() and a
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_saved_keras_model_matches_the_graphs_and_the_stream(two_runs: Path) -> None:
    """model.keras is the model the graphs came from; a window pushed into a fresh runtime stream gives,
    as its last output, what it predicts (raw units)."""
    import keras
    import onnxruntime as ort

    import eddy.runtime as runtime

    out_dir = two_runs
    model = keras.saving.load_model(out_dir / "1" / "model.keras")
    norm = read_manifest(out_dir / "1").normalization
    x = np.random.default_rng(0).normal(size=(4, 10, 1)).astype(np.float32)  # [B, W, F] normalised
    raw = (x * norm.input_std + norm.input_mean).astype(np.float32)  # the graphs take raw units
    seq = ort.InferenceSession(str(out_dir / "1" / "sequence.onnx"), providers=["CPUExecutionProvider"])
    y = seq.run(["y"], {"x": raw, "h0": np.zeros((4, 8), np.float32)})[0]  # [B, W, O] raw
    want = forward(model, x) * norm.target_std + norm.target_mean
    np.testing.assert_allclose(y[:, -1], want, rtol=1e-5, atol=1e-4)

    raw = bundled_series().inputs.astype(np.float32)[-10:]  # [W, F]
    n = read_manifest(out_dir / "1").normalization
    z = ((raw - n.input_mean) / n.input_std).astype(np.float32)[None]  # [1, W, F]
    want = forward(model, z)[0] * n.target_std + n.target_mean
    got = runtime.load(out_dir / "1").stream().push(raw)[-1]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * n.target_std[0])


def test_horizon_multi_feature_lstm_streams_through_the_runtime(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Two features -> one target 3 steps ahead, LSTM x2 with dropout and L2; the runtime's stream
    gives, for a window pushed into a fresh stream, what the saved Keras model predicts."""
    pytest.importorskip("tensorflow")
    import keras

    import eddy.runtime as runtime
    n = 200
    t = np.arange(n)
    a, b = np.sin(t / 5.0) * 3 + 10, np.cos(t / 9.0) + 0.05 * t
    text = "timestamp,a,b\n" + "".join(f"{1700000000 + 60 * i},{x:.5f},{y:.5f}\n" for i, x, y in zip(t, a, b))
    flags = ["--features", "a", "b", "--target", "b", "--horizon", "3", "--season", "12",
             "--cell", "lstm", "--layers", "2", "--units", "6", "--members", "1", "--epochs", "2", "--window", "8",
             "--dropout", "0.2", "--l2", "1e-4", "--reduce-lr-patience", "1", "--target-transform", "level",
             "--seed", "1"]
    run = fit(tmp_path_factory, text, flags)  # a kept run (tests/_fitted.py): what it printed and wrote is tested
    out_dir = run.version_dir.parent
    assert "seasonal naive" in run.out and "3 steps ahead" in run.out

    model = runtime.load(out_dir)
    m = model.manifest
    assert (m.horizon, m.features, m.targets, m.cell, m.layers) == (3, ["a", "b"], ["b"], "lstm", 2)
    assert [(s.name, s.shape) for s in m.state] == [("h0", [6]), ("c0", [6]), ("h1", [6]), ("c1", [6])]
    assert "LSTM" in m.graphs["sequence"].ops
    assert set(m.metrics["baselines"]) == {"persistence", "seasonal_naive", "auto_ets", "auto_arima", "auto_theta"}
    assert m.metrics["baselines"]["seasonal_naive"]["season"] == 12

    raw = np.stack([a, b], axis=1).astype(np.float32)  # [N, 2]
    keras_model = keras.saving.load_model(out_dir / "1" / "model.keras")
    norm = m.normalization
    x = ((raw[150:158] - norm.input_mean) / norm.input_std).astype(np.float32)[None]  # [1, W, F]
    want = forward(keras_model, x)[0] * norm.target_std + norm.target_mean  # raw b at row 157 + 3
    stream = model.stream()
    got = np.concatenate([stream.push(raw[150:153]), stream.push(raw[153:158])])  # [W, 1], any chunking
    np.testing.assert_allclose(got[-1], want, rtol=1e-5, atol=1e-5)

    report = json.loads((out_dir / "1" / "report.json").read_text())
    assert report["data"]["time_column"] == "timestamp" and report["model"]["horizon"] == 3
    assert report["test_predictions"]["labels"][-1] == str(1700000000 + 60 * (n - 1))
    assert report["config"]["dropout"] == 0.2 and report["config"]["season"] == 12


@pytest.mark.parametrize("training", ["tbptt", "windows"])
def test_non_finite_loss_stops_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, training: str
) -> None:
    pytest.importorskip("tensorflow")
    import dataclasses

    real = eddy.trainer.train.make_dataset

    def poisoned(*args: object, **kwargs: object) -> object:
        ds = real(*args, **kwargs)  # type: ignore[arg-type]
        y = ds.y_train.copy()
        y[5] = np.inf  # one overflowing target: the loss becomes non-finite in the first epoch
        rows = ds.row_labels.copy()
        rows[5] = np.inf  # the same for long-sequence training, which reads every row's label
        return dataclasses.replace(ds, y_train=y, row_labels=rows)

    monkeypatch.setattr(eddy.trainer.train, "make_dataset", poisoned)
    out_dir = tmp_path / "m"
    (out_dir / "1").mkdir(parents=True)
    code, _, err = _run(["--synthetic", *TINY, "--training", training, "--out", str(out_dir)], capsys)
    assert code == 1
    assert err == ("eddy train: training diverged: the loss became non-finite in epoch 1 "
                   "(try a lower --lr, --clipnorm or --clipvalue, or check the data's scale)\n")
    assert [p.name for p in out_dir.iterdir()] == ["1"]  # nothing new


def test_summary_names_version_rmse_and_parity(tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("tensorflow")

    def make(root: Path) -> None:
        """``eddy train --synthetic`` with every default but the size (the classical baselines, auto's transforms),
        and what it printed."""
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--synthetic", "--units", "8", "--members", "1", "--epochs", "1", "--seed", "0", "--out",
                         str(root / "sine")])
        (root / "printed.json").write_text(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue()}))

    root = kept(tmp_path_factory, "", make)  # a kept run (tests/_fitted.py): what it printed at its end is tested
    printed = json.loads((root / "printed.json").read_text())
    assert printed["code"] == 0, printed["err"]
    lines = printed["out"].splitlines()
    assert lines[0] == "fitting the classical baselines (AutoETS, AutoARIMA, AutoTheta) on the rows before the test part"
    assert [ln.split(":")[0] for ln in lines[1:4]] == ["baseline AutoETS", "baseline AutoARIMA", "baseline AutoTheta"]
    lines = lines[4:]
    assert lines[:2] == ["target transform level:", lines[1]]  # auto: one fit per applicable transform
    assert lines[1].startswith("epoch 1/1  loss ") and " val_loss " in lines[1] and " grad_norm " in lines[1]
    assert lines[2] == "target transform delta:" and lines[4].startswith("target transform auto: validation RMSE level ")
    assert lines[5].startswith(f"wrote {root / 'sine' / '1'}  (sine v1: simple_rnn 1x8")
    assert lines[6].startswith("test RMSE streamed ") and " window " in lines[6] and " vs persistence " in lines[6]
    assert lines[7].startswith("intervals (split conformal, 150 validation residuals, absolute) on the 150 test rows: "
                               "80% covers ") and " vs persistence's " in lines[7] and "; 95% covers " in lines[7]
    assert lines[8].startswith(f"parity vs Keras float64, max abs error (Keras float32's own), passed {RULE}: ")
    m = read_manifest(root / "sine" / "1")
    assert all(f"{k} {c['error']:.2g} ({c['keras_float32_error']:.2g})" in lines[8] for k, c in m.parity["checks"].items())
    assert lines[9].startswith("gradients healthy: finite norms")
    assert m.training["data"]["source"] == "synthetic" and m.name == "sine"
