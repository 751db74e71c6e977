"""The training report: report.json holds the figures (JSON-safe), report.png is a real, sized PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from _png import colour_fraction, png_size  # noqa: E402

from eddy.trainer.report import REPORT_JSON, REPORT_PNG, write_report  # noqa: E402


def _report(n_test: int = 40, epochs: int = 8) -> dict[str, Any]:
    """A report shaped like the one trainer.train builds, with a seasonal baseline."""
    t = np.arange(n_test)
    actual = (50 + 40 * np.sin(t / 3.0))[:, None]  # [n, 1]
    predicted = actual + np.random.default_rng(0).normal(0, 5, actual.shape)
    return {
        "model": {"name": "sunspots", "version": 3, "cell": "lstm", "layers": 2, "units": 16, "window": 10,
                  "horizon": 1, "features": ["sunspots"], "targets": ["sunspots"]},
        "config": {"epochs": epochs, "batch_size": 32, "lr": 1e-3, "clipnorm": 1.0, "season": 11},
        "data": {"source": "bundled", "path": "trainer/data/sunspots.csv", "rows": 309, "time_column": "year",
                 "split_rows": {"train": [0, 216], "val": [216, 262], "test": [262, 309]}},
        "history": {"epoch": list(range(1, epochs + 1)), "loss": list(np.geomspace(2.0, 0.05, epochs)),
                    "val_loss": list(np.geomspace(2.5, 0.2, epochs)), "grad_norm": list(np.geomspace(4, 0.3, epochs)),
                    "recurrent_grad_norm": [None] + list(np.geomspace(1, 0.1, epochs - 1)), "lr": [1e-3] * epochs},
        "gradient_health": {"exploded": False, "vanished": False, "notes": []},
        "test": {"rmse": 5.1, "mae": 4.0, "per_target": {"sunspots": {"rmse": 5.1, "mae": 4.0}}},
        "baselines": {"persistence": {"rmse": 29.1, "mae": 22.3},
                      "seasonal_naive": {"season": 11, "rmse": 25.0, "mae": 19.9}},
        "test_predictions": {"labels": list(range(1970, 1970 + n_test)), "targets": ["sunspots"],
                             "actual": actual.tolist(), "predicted": predicted.tolist()},
        "parity": {"rule": "error <= 20 x keras_float32_error + 1e-06 x max(1, max|float64 truth|)", "checks": {
            "chunked_sequence": {"error": 4e-7, "keras_float32_error": 3e-7, "limit": 7e-6, "steps": 309, "rule": "factor"}}},
    }


def test_report_files_hold_the_baselines_and_a_readable_plot(tmp_path: Path) -> None:
    write_report(tmp_path, _report())

    saved = json.loads((tmp_path / REPORT_JSON).read_text())
    assert saved["baselines"]["persistence"] == {"rmse": 29.1, "mae": 22.3}
    assert saved["baselines"]["seasonal_naive"]["season"] == 11
    assert saved["test"]["rmse"] < saved["baselines"]["persistence"]["rmse"]
    assert len(saved["history"]["loss"]) == 8 and saved["history"]["recurrent_grad_norm"][0] is None

    png = tmp_path / REPORT_PNG
    assert png_size(png) == (1200, 800)  # 12x8 in at 100 dpi
    # Drawn panels, not a blank canvas: curves in the loss panel (top left) and the gradient panel (top
    # right), the predictions (dashed tab:orange) in the test panel (bottom); a report without data has none.
    assert colour_fraction(png, "tab:blue", rows=(0.05, 0.5), cols=(0, 0.5)) > 0.001
    assert colour_fraction(png, "tab:blue", rows=(0.05, 0.5), cols=(0.5, 1)) > 0.001
    assert colour_fraction(png, "tab:orange", rows=(0.5, 1)) > 0.0005


def test_diverged_run_multi_target_and_missing_optional_parts(tmp_path: Path) -> None:
    report = _report()
    report["history"]["loss"][5:] = [float("nan")] * 3
    report["history"]["grad_norm"][4] = float("inf")
    report["gradient_health"] = {"exploded": True, "vanished": False, "notes": ["epoch 5: gradient norm is inf"]}
    del report["baselines"]["seasonal_naive"]
    del report["history"]["recurrent_grad_norm"]
    preds = report["test_predictions"]
    preds["targets"] = report["model"]["targets"] = ["a", "b"]
    preds["labels"] = [f"2024-01-{d % 28 + 1:02d}" for d in range(len(preds["actual"]))]  # dates, not numbers
    preds["actual"] = [[v[0], -v[0]] for v in preds["actual"]]
    preds["predicted"] = [[v[0], -v[0]] for v in preds["predicted"]]
    report["test"]["per_target"] = {"a": {"rmse": 5.0, "mae": 4.0}, "b": {"rmse": 5.2, "mae": 4.1}}
    report["history"]["lr"] = np.full(8, 1e-3, np.float32)  # numpy values are accepted too

    write_report(tmp_path, report)

    text = (tmp_path / REPORT_JSON).read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    saved = json.loads(text)
    assert saved["history"]["loss"][5:] == [None] * 3 and saved["history"]["grad_norm"][4] is None
    assert saved["gradient_health"]["exploded"] is True
    assert all(isinstance(v, float) and math.isclose(v, 1e-3, rel_tol=1e-6) for v in saved["history"]["lr"])
    assert png_size(tmp_path / REPORT_PNG) == (1200, 800)


def test_minimal_report_still_plots(tmp_path: Path) -> None:
    write_report(tmp_path, {"model": {"name": "m", "version": 1}})
    assert json.loads((tmp_path / REPORT_JSON).read_text()) == {"model": {"name": "m", "version": 1}}
    assert png_size(tmp_path / REPORT_PNG) == (1200, 800)
    assert colour_fraction(tmp_path / REPORT_PNG, "tab:blue") == colour_fraction(tmp_path / REPORT_PNG, "tab:orange") == 0
