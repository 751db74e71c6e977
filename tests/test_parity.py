"""Parity judged against float32's own rounding: a correct export passes with its figures
recorded, and exports broken on purpose (wrong weights, state wiring, activation, normalisation applied
twice) are refused by orders of magnitude.

The models are untrained (parity is a property of the export, not of training), except the one
end-to-end run on a long weekly series with gaps, where a fixed 1e-5 tolerance refused correct exports.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

import _broken  # noqa: E402
import keras  # noqa: E402
from _fitted import fit, kept  # noqa: E402

from eddy.cli.info import collect, format_table  # noqa: E402
from eddy.runtime.core.manifest import read_manifest  # noqa: E402
from eddy.trainer.config import TrainConfig  # noqa: E402
from eddy.trainer.errors import ParityError  # noqa: E402
from eddy.trainer.model import build_model, set_seed  # noqa: E402
from eddy.trainer.onnx_export import export_model  # noqa: E402
from eddy.trainer.parity import CHECKS, FACTOR, FLOOR, RULE, judge, verify_parity  # noqa: E402
from eddy.trainer.series import BUNDLED_CSV, bundled_series  # noqa: E402
from eddy.trainer.windows import Dataset, make_dataset  # noqa: E402

REFUSED_BY = 100  # a broken export's error must exceed its limit at least this many times


@pytest.fixture(scope="module")
def sunspots() -> Dataset:
    return make_dataset(bundled_series(), window=10)


def _untrained(cell: str) -> keras.Model:
    """An untrained model of ``cell`` (8 units, as eddy train builds them), seeded: the same weights every time."""
    set_seed(0)
    return build_model(TrainConfig(cell=cell, units=8), 1, 1)


@pytest.fixture(scope="module")
def exported(sunspots: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[keras.Model, Path]]:
    """Untrained simple_rnn and lstm models and their exports, made once and kept across runs (tests/_fitted.py
    kept(): the tests below copy them before breaking them, and check them against the model built again)."""
    out = {}
    for cell in ("simple_rnn", "lstm"):
        def make(root: Path, cell: str = cell) -> None:
            export_model(_untrained(cell), root, sunspots.x_test, sunspots.normalised_inputs(), seed=0)

        out[cell] = _untrained(cell), kept(tmp_path_factory, cell, make)
    return out


def test_correct_export_records_every_check(exported: dict, sunspots: Dataset) -> None:
    model, path = exported["simple_rnn"]
    parity = verify_parity(model, path, sunspots.x_test, sunspots.normalised_inputs())
    assert (parity["rule"], parity["factor"], parity["floor"]) == (RULE, FACTOR, FLOOR)
    assert tuple(parity["checks"]) == CHECKS
    for name, c in parity["checks"].items():
        assert set(c) == {"error", "keras_float32_error", "limit", "steps", "rule"}, name
        assert c["limit"] == pytest.approx(FACTOR * c["keras_float32_error"] + FLOOR, rel=1e-9)  # |truth| < 1 here
        assert 0 <= c["error"] <= c["limit"] and c["rule"] in ("factor", "floor", "factor+floor")
        assert 0 < c["keras_float32_error"] < 1e-5  # Keras float32 is really compared with a float64 truth
    assert [parity["checks"][k]["steps"] for k in CHECKS] == [10, 309, 309]


def test_judge_rule_and_floor_scale_with_the_truth() -> None:
    truth = [np.array([0.0, 1.0, 2.0])]  # max |truth| 2: the floor doubles
    record = judge("c", [truth[0] + 3e-6], [truth[0] + 1e-6], truth, steps=3)
    assert record["limit"] == pytest.approx(FACTOR * 1e-6 + 2 * FLOOR) and record["rule"] == "factor"
    assert judge("c", [truth[0] + 1e-6], [truth[0]], truth, steps=3)["rule"] == "floor"  # Keras exact
    with pytest.raises(ParityError, match=r"'c' failed: max abs error 0.001 against Keras in float64 exceeds the limit"):
        judge("c", [truth[0] + 1e-3], [truth[0] + 1e-6], truth, steps=3)
    with pytest.raises(ParityError):  # NaN never passes
        judge("c", [truth[0] * np.nan], [truth[0]], truth, steps=3)


def _wrong_weights(model: keras.Model, path: Path, data: Dataset) -> None:
    """The graphs come from a model whose recurrent kernel was transposed (a conversion bug)."""
    export_model(_broken.transposed_recurrent_kernel(model), path, data.x_test, data.normalised_inputs())


def _normalised_twice(model: keras.Model, path: Path, data: Dataset) -> None:
    n = data.normalization
    _broken.normalised_twice(path, n.input_mean, n.input_std)


BROKEN: list = [
    pytest.param("simple_rnn", _wrong_weights, "window_vs_predict", id="wrong-weights"),
    pytest.param("simple_rnn", lambda m, p, d: _broken.state_not_carried(p, "h0"), "chunked_sequence",
                 id="state-not-carried"),
    pytest.param("lstm", lambda m, p, d: _broken.swapped_states(p, "h0", "c0"), "chunked_sequence",
                 id="lstm-h-and-c-swapped"),
    pytest.param("simple_rnn", lambda m, p, d: _broken.activation(p, "Tanh", "Relu"), "window_vs_predict",
                 id="relu-for-tanh"),
    pytest.param("simple_rnn", _normalised_twice, "window_vs_predict", id="normalised-twice"),
]


@pytest.mark.parametrize(("cell", "breaks", "check"), BROKEN)
def test_broken_exports_are_refused_by_orders_of_magnitude(
    exported: dict, sunspots: Dataset, tmp_path: Path, cell: str,
    breaks: Callable[[keras.Model, Path, Dataset], None], check: str,
) -> None:
    model, good = exported[cell]
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    breaks(model, broken, sunspots)
    with pytest.raises(ParityError) as e:
        verify_parity(model, broken, sunspots.x_test, sunspots.normalised_inputs())
    assert e.value.check == check  # state wiring passes whole windows and is caught by the chained checks
    assert e.value.error > REFUSED_BY * e.value.limit, (e.value.error, e.value.limit)


def test_long_weekly_series_with_gaps_exports(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The run that failed with a fixed 1e-5 tolerance: weekly CO2 (2,284 rows, a trend, 59 gaps
    interpolated), one epoch. (bench/parity_sweep.py runs it over 20 seeds.) A kept run (tests/_fitted.py): what is
    tested is what its export recorded."""
    flags = ["--fill", "interpolate", "--members", "1", "--epochs", "1", "--window", "10", "--units", "8",
             "--target-transform", "level", "--seed", "1", "--quiet", "--baselines", "naive"]  # a fixed tolerance refused
    run = fit(tmp_path_factory, (BUNDLED_CSV.parent / "co2_weekly.csv").read_text(), flags)
    out = run.version_dir.parent
    checks = read_manifest(run.version_dir).parity["checks"]
    assert checks["chunked_sequence"]["steps"] == checks["chained_step"]["steps"] == 2284  # the whole series
    assert all(c["error"] <= c["limit"] for c in checks.values())
    table = format_table(collect(out))  # eddy info shows each check's figures and the rule
    for needle in ("chunked_sequence", "Keras float32", "2284 steps", "passed by", f"ok: {RULE}"):
        assert needle in " ".join(table.split()), needle
