"""``eddy info``: the committed default model's key figures, JSON output, clean failures."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eddy.cli.main import main
from eddy.runtime.core.layout import resolve_version_dir

ROOT = Path(__file__).resolve().parent.parent


def test_table_shows_the_key_figures(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(models_dir / "sunspots")]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((resolve_version_dir(models_dir / "sunspots") / "manifest.json").read_text())
    ops = {op for g in manifest["graphs"].values() for op in g["ops"]}  # whatever the exporter used, not a pinned list
    state = [f"{s['name']} [B, {', '.join(map(str, s['shape']))}]" for s in manifest["state"]]  # e.g. h0 [B, 50]
    for needle in ("sunspots v", "simple_rnn x1 (500 units) -> Dense(1): the average of 5 networks of 100 units",
                   "sunspots -> sunspots", ", ".join(state), "AutoARIMA", "AutoETS", "AutoTheta",
                   "step.onnx", "sequence.onnx", "(ok: error <=", "persistence", "streamed RMSE", "window RMSE",
                   "RMSE", "MAE", "epochs run", "tensorflow", "tf2onnx", "eddy", *ops,
                   "tbptt (2 streams x 108 rows, chunks of 10)"):
        assert needle in out, needle
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines)  # wrapped, readable in a terminal
    assert all(line[:14].strip() == "" or line[14:16] == "  " for line in lines)  # one aligned key column


def test_json_holds_the_merged_figures(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(models_dir / "sunspots"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    manifest = json.loads((Path(info["path"]) / "manifest.json").read_text())
    assert info["name"] == "sunspots" and info["version"] == manifest["version"]
    assert info["test"]["rmse"] == manifest["metrics"]["rmse"]
    assert info["test"]["baselines"]["persistence"]["rmse"] == manifest["metrics"]["persistence_rmse"]
    assert info["parity"] == manifest["parity"]
    step = (Path(info["path"]) / "step.onnx").read_bytes()  # what is on disk, not what info computed
    assert info["graphs"]["step"] == {"file": "step.onnx", "bytes": len(step), "ops": manifest["graphs"]["step"]["ops"],
                                      "sha256": hashlib.sha256(step).hexdigest()}


@pytest.mark.parametrize("make", ["missing", "empty", "broken_json", "tampered"])
def test_bad_model_dir_fails_in_one_line(make: str, models_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "m"
    if make != "missing":
        target.mkdir()
    if make == "broken_json":
        (target / "manifest.json").write_text("{not json")
    if make == "tampered":
        target.rmdir()
        shutil.copytree(resolve_version_dir(models_dir / "sunspots"), target)
        with open(target / "step.onnx", "ab") as f:
            f.write(b"\0")
    assert main(["info", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eddy info: ") and err.count("\n") == 1 and "Traceback" not in err


def test_console_script_runs_without_tensorflow(models_dir: Path) -> None:
    """The runtime side: `eddy info` works where tensorflow and matplotlib cannot be imported."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "block_tensorflow"), str(ROOT)])}
    code = "import sys; sys.modules['matplotlib'] = None; from eddy.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "info", str(models_dir / "sunspots")],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "persistence" in proc.stdout
