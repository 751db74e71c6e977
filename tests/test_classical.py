"""The classical baselines (statsforecast's AutoETS, AutoARIMA, AutoTheta) follow the streamed score's protocol, and
the warning names the best of them when the model loses to it by more than the stated margin.

Fits run on series of 100-150 rows (well under a second each).
"""

from __future__ import annotations

import numpy as np
import pytest

from eddy.trainer.evaluate import CLASSICAL_MARGIN, baseline_warnings, best_classical

pytest.importorskip("statsforecast")

FIT, N = 100, 120  # rows the models are fitted on; rows in the series


@pytest.fixture(scope="module")
def walk() -> np.ndarray:
    """A seeded random walk with drift, ``[N, 1]``."""
    return (100 + np.cumsum(np.random.default_rng(3).normal(0.2, 1.0, N)))[:, None]


def test_a_forecast_sees_only_the_rows_before_its_origin(walk: np.ndarray) -> None:
    from eddy.trainer.classical import CLASSICAL, classical_forecasts

    rows = np.arange(FIT, N)
    for horizon in (1, 3):
        base = classical_forecasts(walk, FIT, rows, horizon, None)
        assert set(base) == set(CLASSICAL) and all("predictions" in f for f in base.values()), base
        cut = 110  # change every value from row 110 on: forecasts of rows whose origin is before it must not move
        changed = walk.copy()
        changed[cut:] += 50.0
        moved = classical_forecasts(changed, FIT, rows, horizon, None)
        origin = rows - horizon + 1  # the forecast of row r is made from y[: r - horizon + 1]
        for key in CLASSICAL:
            before, after = base[key]["predictions"], moved[key]["predictions"]  # [n, 1]
            assert np.array_equal(before[origin <= cut], after[origin <= cut]), key
            assert not np.allclose(before[origin > cut], after[origin > cut]), key  # the later ones do follow the data


def test_parameters_are_fitted_once_on_the_rows_before_the_test_part(walk: np.ndarray) -> None:
    """Forecasting the same test rows from a series whose *test* part differs keeps the fitted parameters: the
    first test row's forecast (its origin is the last fitted row) is the same whatever comes after."""
    from eddy.trainer.classical import classical_forecasts

    rows = np.arange(FIT, N)
    a = classical_forecasts(walk, FIT, rows, 1, None)
    other = walk.copy()
    other[FIT:] = other[FIT:][::-1]  # a different test part
    b = classical_forecasts(other, FIT, rows, 1, None)
    for key in a:
        assert a[key]["predictions"][0, 0] == b[key]["predictions"][0, 0], key
        assert a[key]["model"] == b[key]["model"], key


def test_seasonal_models_use_the_season() -> None:
    from eddy.trainer.classical import classical_forecasts

    t = np.arange(144)
    y = (50 + 10 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 0.3, 144))[:, None]
    rows = np.arange(123, 144)
    f = classical_forecasts(y, 123, rows, 1, 12)
    naive = np.sqrt(np.mean((y[rows - 12] - y[rows]) ** 2))
    for key, forecast in f.items():
        rmse = np.sqrt(np.mean((forecast["predictions"] - y[rows]) ** 2))
        assert rmse < naive, (key, forecast["model"], rmse, naive)  # a seasonal model beats seasonal naive here
    assert "[12]" in f["auto_arima"]["model"] and f["auto_ets"]["model"].endswith(",A)"), f


def _metrics(streamed: float, persistence: float, classical: dict[str, float]) -> dict:
    baselines: dict = {"persistence": {"rmse": persistence}}
    baselines.update({k: {"rmse": v, "model": k.upper()} for k, v in classical.items()})
    return {"rmse": streamed, "streamed": {"rmse": streamed}, "baselines": baselines}


def test_the_warning_names_the_best_classical_model_beyond_the_margin() -> None:
    classical = {"auto_ets": 10.0, "auto_arima": 9.0, "auto_theta": 11.0}
    assert best_classical(_metrics(9.0, 20.0, classical)) == ("auto_arima", 9.0)
    assert best_classical({"baselines": {"persistence": {"rmse": 1.0}}}) is None  # a manifest without them
    within = 9.0 * (1 + CLASSICAL_MARGIN) * 0.999
    assert baseline_warnings(_metrics(within, 20.0, classical)) == []
    (line,) = baseline_warnings(_metrics(9.9, 20.0, classical), window=10)
    assert line.startswith("warning: the model loses to AutoARIMA (AUTO_ARIMA), the best classical baseline, by more "
                           "than 5% on the test part: streamed RMSE 9.9 vs 9 (1.10x); try --season N if the series "
                           "has a season"), line
    assert line.endswith("or forecast this series with AutoARIMA itself (statsforecast): on these test rows it is "
                         "the better one-step forecaster"), line
    # With a season the advice does not ask for one.
    seasonal = _metrics(9.9, 20.0, classical)
    seasonal["baselines"]["seasonal_naive"] = {"season": 12, "rmse": 30.0}
    (line,) = baseline_warnings(seasonal, window=12)
    assert "--season N" not in line
    # A failed fit is not a baseline.
    failed = _metrics(9.9, 20.0, {"auto_ets": 10.0})
    failed["baselines"]["auto_arima"] = {"error": "ValueError: too short"}
    assert best_classical(failed) == ("auto_ets", 10.0)


def test_a_random_walk_gets_an_honest_warning() -> None:
    # Every method ties with persistence: the model losing to it by 1 % is told so, without advice that cannot help,
    # and the classical models (which lose to persistence too) are no separate line.
    metrics = _metrics(10.1, 10.0, {"auto_ets": 10.02, "auto_arima": 10.0, "auto_theta": 10.05})
    (line,) = baseline_warnings(metrics)
    assert line == ("warning: the model loses to persistence (repeating the last value) on the test part: streamed "
                    "RMSE 10.1 vs 10 (1.01x); no classical model beats it by more than 2% either (best: AutoARIMA "
                    "10, 1.000x): the series behaves like a random walk, whose best one-step forecast is the last "
                    "value"), line
    # The model ties with persistence by a hair: still told that the series behaves like a random walk.
    (line,) = baseline_warnings(_metrics(9.99, 10.0, {"auto_ets": 10.02, "auto_arima": 10.0, "auto_theta": 9.96}))
    assert line == ("warning: the series behaves like a random walk on the test part: no classical model beats "
                    "persistence (repeating the last value) by more than 2% (best: AutoTheta 9.96, 0.996x) and the "
                    "model's streamed RMSE is 9.99 (0.999x): repeating the last value forecasts as well; take a small "
                    "edge over it for noise"), line
    # When a classical model does beat persistence clearly, the usual advice stays.
    (line, classical) = baseline_warnings(_metrics(10.1, 10.0, {"auto_ets": 8.0}))
    assert "random walk" not in line and "try --target-transform delta" in line
    assert classical.startswith("warning: the model loses to AutoETS")
