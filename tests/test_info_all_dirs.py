"""`eddy info` works on every model directory eddy can write, `eddy export --data`'s included.

Tiny untrained or 1-epoch models: what matters is the directory layout each command writes. The exports and the
trained models are kept across runs (tests/_fitted.py): what they wrote is what is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _fitted import DELTA_FLAGS, SEASON, fitted, kept, seasonal_csv, seasonal_flags, trend_csv
from _models import raw_copy
from conftest import MODEL

from eddy.cli.info import main as info_main
from eddy.runtime.core.layout import resolve_version_dir

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

WINDOW = 5


def _exports(root: Path) -> None:
    """A seeded untrained Keras file and three eddy exports of it: without data, with --data and .ort graphs, scaled."""
    import keras

    from eddy.cli.export import main as export_main

    t = np.arange(90)
    rows = (f"2020-01-01T{i // 60:02d}:{i % 60:02d},{20 + 0.1 * i + np.sin(i / 3):.4f}\n" for i in t)
    (root / "s.csv").write_text("date,v\n" + "".join(rows))
    keras.utils.set_random_seed(0)
    inp = keras.Input((WINDOW, 1))
    keras.Model(inp, keras.layers.Dense(1)(keras.layers.SimpleRNN(3)(inp))).save(root / "m.keras")
    for name, flags in (("export", []), ("export_data_ort", ["--data", str(root / "s.csv"), "--format", "onnx", "ort"]),
                        ("export_scaled", ["--input-mean", "20", "--input-std", "3", "--target-mean", "20"])):
        assert export_main([str(root / "m.keras"), "--out", str(root / name), *flags]) == 0


@pytest.fixture(scope="module")
def model_dirs(models_dir: Path, legacy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dirs")
    dirs = {"committed": resolve_version_dir(models_dir / MODEL), "legacy": legacy_dir,
            "raw_copy": raw_copy(legacy_dir, root / "raw" / "1")}
    exported = kept(tmp_path_factory, f"WINDOW={WINDOW}", _exports)  # kept across runs like the trained ones
    for name in ("export", "export_data_ort", "export_scaled"):
        dirs[name] = exported / name / "1"
    dirs["train_delta_int8"], _ = fitted(tmp_path_factory, trend_csv(), DELTA_FLAGS)  # shared with other modules
    dirs["train_seasonal_ort"], _ = fitted(tmp_path_factory, seasonal_csv(), seasonal_flags(1))
    return dirs


@pytest.mark.parametrize("kind", ["committed", "legacy", "raw_copy", "export", "export_data_ort", "export_scaled",
                                  "train_delta_int8", "train_seasonal_ort"])
def test_info_on_every_model_dir(model_dirs: dict[str, Path], kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    for flags in ([], ["--json"]):
        assert info_main([str(model_dirs[kind]), *flags]) == 0
    out = capsys.readouterr().out
    assert "io units" in out and '"io":' in out
    if kind in ("committed", "export_data_ort", "train_delta_int8", "train_seasonal_ort"):
        assert "streamed RMSE" in out and "window RMSE" in out
    if kind == "train_seasonal_ort":
        assert f"x_season [B, {SEASON}, 1]" in out and "step_ort" in out and "seasonal naive  RMSE" in out
    if kind == "export":
        assert "not scored (export without --data)" in out
