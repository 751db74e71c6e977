"""Prediction intervals and live accuracy in the core runtime: the calibration, the per-session monitor, local streams.

The monitor runs one kernel two ways (Python floats for a few sessions, numpy lanes for many); every test that
compares bits compares them with ``np.array_equal``. Models here are the committed default (calibrated at training)
and the pre-intervals legacy directory, plus manifests built in memory for the monitor's corner cases.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

import eddy.runtime as runtime
import eddy.runtime.core.monitor as monitor_module
from eddy.runtime.core.calibration import Calibration, bounds, conformal_quantile, scale_path, scores
from eddy.runtime.core.errors import FailedPrecondition, InvalidInput, ModelLoadError
from eddy.runtime.core.live import session_figures
from eddy.runtime.core.manifest import Manifest, read_manifest
from eddy.runtime.core.monitor import CUSUM_LIMIT, Monitor

COMMITTED = ROOT / "models" / "sunspots" / "1"


def test_conformal_quantile_is_the_ceil_n_plus_1_order_statistic() -> None:
    s = np.arange(1.0, 47.0)  # 46 residuals 1..46
    assert conformal_quantile(s, 0.8) == 38.0  # ceil(47 * 0.8) = 38
    assert conformal_quantile(s[::-1], 0.95) == 45.0  # ceil(47 * 0.95) = 45, order does not matter
    assert conformal_quantile(np.arange(1.0, 10.0), 0.95) == math.inf  # 9 residuals cannot make 95 %
    assert conformal_quantile(np.arange(1.0, 20.0), 0.95) == 19.0  # 19 can


def test_relative_scores_and_bounds_are_one_definition() -> None:
    y, yhat = np.array([110.0, 90.0, -1.0]), np.array([100.0, 100.0, 100.0])
    np.testing.assert_allclose(scores("relative", y, yhat)[:2], [0.1, 100 / 90 - 1])
    assert scores("relative", y, yhat)[2] == math.inf  # a non-positive value fits no ratio interval
    lo, hi = bounds("relative", np.float64(100.0), np.float64(0.25))
    assert (lo, hi) == (80.0, 125.0)  # [yhat / (1 + w), yhat * (1 + w)]: asymmetric in raw units
    assert bounds("absolute", np.float64(100.0), np.float64(5.0)) == (95.0, 105.0)


def test_bad_calibrations_are_refused_at_load() -> None:
    d = json.loads((COMMITTED / "manifest.json").read_text())
    for change, message in (({"levels": [0.95, 0.8]}, "ascending"), ({"levels": [0.8, 1.0]}, "in (0, 1)"),
                            ({"space": "log"}, "space"), ({"quantiles": {"other": [1, 2]}}, "one entry per target"),
                            ({"quantiles": {"sunspots": [3.0, 1.0]}}, "must not shrink"),
                            ({"online": {"gamma": -1}}, "gamma")):
        bad = copy.deepcopy(d)
        bad["calibration"].update(change)
        with pytest.raises(ModelLoadError, match="invalid calibration") as e:
            Manifest.from_dict(bad)
        assert message in str(e.value)


def test_the_committed_model_is_calibrated_and_its_figures_reproduce(model: runtime.Model,
                                                                      series: np.ndarray) -> None:
    """The manifest's quantiles are split conformal on the validation rows of what a local stream returns, and its
    served coverage is what a local stream's intervals cover on the test rows."""
    m = model.manifest
    cal = m.intervals
    assert cal is not None and cal.levels == (0.8, 0.95) and cal.space == "absolute"  # delta: absolute residuals
    (v0, v1), (t0, t1) = m.training["split_rows"]["val"], m.training["split_rows"]["test"]
    stream = model.stream()
    f = stream.push(series, intervals=True)  # [N, O]: row t predicts t + 1
    residuals = np.abs(series[v0:v1, 0].astype(np.float64) - f.y[v0 - 1:v1 - 1, 0])
    assert cal.rows == v1 - v0 == 46
    for i, level in enumerate(cal.levels):
        assert cal.quantiles["sunspots"][i] == pytest.approx(conformal_quantile(residuals, level), rel=1e-6)
        figures = m.metrics["intervals"]["levels"][f"{level * 100:g}"]
        actual = series[t0:t1, 0]
        inside = (f.lower[level][t0 - 1:t1 - 1, 0] <= actual) & (actual <= f.upper[level][t0 - 1:t1 - 1, 0])
        assert figures["served_coverage"] == pytest.approx(float(inside.mean()), abs=1 / (t1 - t0) + 1e-9)
        assert figures["width"] < figures["persistence_width"]  # narrower than persistence's at the same coverage


def test_local_stream_intervals_on_request(model: runtime.Model, series: np.ndarray) -> None:
    a, b = model.stream(), model.stream()
    first = a.push(series[:1], intervals=True)
    cal = model.manifest.intervals
    q = cal.quantile_matrix(model.targets)  # [L, O] split conformal half-widths
    if cal.normalised:  # normalised scores: the quantile of the scores times the starting scale
        norm = cal.normalised
        q = np.array([[norm.quantiles[t][i] * norm.scale[t] for t in model.targets] for i in range(len(cal.levels))])
    for i, level in enumerate(model.interval_levels):  # a new stream starts from the calibrated widths
        np.testing.assert_array_equal(first.lower[level], (first.y - q[i]).astype(np.float32))
        np.testing.assert_array_equal(first.upper[level], (first.y + q[i]).astype(np.float32))
    assert np.array_equal(b.push(series[:1]), first.y)  # without intervals: the plain array, same bits
    one = a.push(float(series[1, 0]), intervals=0.95)
    assert set(one.lower) == {0.95} and one.y.shape == (1, 1)
    assert np.array_equal(b.push(float(series[1, 0]), intervals=[0.95, 0.8]).lower[0.95], one.lower[0.95])
    with pytest.raises(InvalidInput, match="levels 0.8, 0.95 .* not 0.9"):
        a.push(series[2:3], intervals=0.9)  # refused before anything runs
    assert np.array_equal(a.push(series[2:5], intervals=True).lower[0.8], b.push(series[2:5], intervals=0.8).lower[0.8])
    assert np.array_equal(a._monitor_state, b._monitor_state) and a.position == b.position == 5


def test_chunked_intervals_follow_the_same_recalibration(model: runtime.Model, series: np.ndarray) -> None:
    """Chunks run the sequence graph, single samples the step graph: the intervals agree within the parity rule
    until an actual lands on a bound within that rule (a hit in one chunking, a miss in the other: on the bundled
    series 1961's 53.9 against an 80 % lower bound of 53.9 or 53.900005); the recalibration then goes on from
    widths one step apart."""
    ones = model.stream()
    single = [ones.push(float(v), intervals=True) for v in series[:, 0]]
    chunked, rng, i, out = model.stream(), np.random.default_rng(5), 0, []
    while i < len(series):
        n = int(rng.integers(1, 30))
        out.append(chunked.push(series[i:i + n], intervals=True))
        i += n
    scale, actual = float(np.abs(series).max()), series[1:, 0]  # row t's interval is for the actual at t + 1
    for level in model.interval_levels:
        bounds = {side: (np.concatenate([getattr(f, side)[level] for f in out])[:, 0],
                         np.concatenate([getattr(f, side)[level] for f in single])[:, 0]) for side in ("lower", "upper")}
        on_bound = np.zeros(len(actual), bool)
        for _, want in bounds.values():
            on_bound |= np.abs(want[:-1] - actual) <= 1e-5 * scale
        end = int(np.argmax(on_bound)) + 1 if on_bound.any() else len(series)  # rows up to the first tie
        for got, want in bounds.values():
            assert float(np.abs(got[:end] - want[:end]).max()) / scale <= 1e-5


def test_a_model_without_calibration_serves_and_says_how_to_get_one(legacy_dir: Path, series: np.ndarray) -> None:
    model = runtime.load(legacy_dir)
    assert model.manifest.intervals is None and model.interval_levels == ()
    stream = model.stream()
    y = stream.push(series[:3])
    with pytest.raises(FailedPrecondition, match=r"no interval calibration.*eddy train.*eddy export .*--data"):
        stream.push(series[3:4], intervals=True)
    assert stream.position == 3
    twin = model.stream()
    twin.push(series[:3])
    assert np.array_equal(stream.push(series[3:6]), twin.push(series[3:6])) and y.shape == (3, 1)
    assert stream.live.actuals == 5  # live accuracy needs no calibration (the target is a feature)


def test_reset_starts_the_monitor_afresh(model: runtime.Model, series: np.ndarray) -> None:
    s = model.stream()
    s.push(series[:40])
    s.reset()
    assert np.array_equal(s._monitor_state, model.monitor.fresh(1)[0]) and s.live.actuals == 0


# -- the monitor on manifests built in memory --------------------------------------------------------------------

def _manifest(targets: int, observed: tuple[bool, ...], extra_features: int, levels: int, horizon: int,
              season: int | None, space: str, normalised: bool = True, seed: int = 0) -> Manifest:
    rng = np.random.default_rng(seed)
    m = read_manifest(COMMITTED)
    names = [f"t{j}" for j in range(targets)]
    features = [t for t, ok in zip(names, observed) if ok] + [f"f{i}" for i in range(extra_features)]
    level_values = [0.5, 0.8, 0.95][:levels]
    cal = {"levels": level_values, "space": space, "rows": 40, "season": season,
           "quantiles": {t: sorted(rng.uniform(0.1, 3.0, levels).tolist()) for t in names}} if levels else {}
    if levels and normalised:
        cal["normalised"] = {"rate": 0.1, "clip": 4.0, "scale": {t: float(rng.uniform(0.2, 1.0)) for t in names},
                             "quantiles": {t: sorted(rng.uniform(0.5, 3.0, levels).tolist()) for t in names}}
    metrics = {"mae": 1.0, "persistence_mae": 1.5,
               "streamed": {"mae": 1.3, "per_target": {t: {"mae": 1.0 + j} for j, t in enumerate(names)}},
               "baselines": {"persistence": {"mae": 1.5},
                             **({"seasonal_naive": {"season": season, "mae": 1.2}} if season else {})}}
    norm = dataclasses.replace(m.normalization, input_mean=[0.0] * len(features), input_std=[1.0] * len(features),
                               target_mean=[0.0] * targets, target_std=[1.0] * targets)
    return dataclasses.replace(m, targets=names, features=features, horizon=horizon, normalization=norm,
                               calibration=cal, metrics=metrics)


CONFIGS = [(o, obs, extra, lv, h, season, space, norm)
           for o, lv, h, season, space in itertools.product((1, 2), (0, 2), (1, 3), (None, 4), ("absolute", "relative"))
           for obs, extra in ((tuple([True] * o), 0), ((True,) + (False,) * (o - 1), 1), ((False,) * o, 1))
           for norm in ((True, False) if lv else (False,))  # normalised scores, or a calibration made before them
           if lv or any(obs)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c)))
def test_the_kernels_agree_bit_for_bit_at_any_batch_size(config: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python floats (a few sessions) and numpy lanes (many) give the same bits, and a session's bits never
    depend on the others in its batch: non-finite predictions, chunks, horizons, seasons, unobserved targets."""
    o, observed, extra, levels, h, season, space, norm = config
    mon = Monitor(_manifest(o, observed, extra, levels, h, season, space, norm))
    rng = np.random.default_rng(1)
    f = len(observed) - observed.count(False) + extra
    b = 24
    block, pos = mon.fresh(b), rng.integers(0, 6, b)
    for _ in range(8):
        n = 1 if rng.random() < 0.6 else 3
        x = rng.uniform(0.5, 3.0, (b, n, f)).astype(np.float32)
        y = (x[:, :, :1].repeat(o, axis=2) + rng.normal(0, 0.6, (b, n, o))).astype(np.float32)
        y[rng.integers(0, b), 0, 0] = np.nan if rng.random() < 0.3 else y[0, 0, 0]
        y[rng.integers(0, b), -1, 0] = 1e4 if rng.random() < 0.3 else y[0, -1, 0]  # an error that raises the alarm
        monkeypatch.setattr(monitor_module, "_SMALL_BATCH", 10**9)
        floats = mon.advance(block, pos, x, y)  # one by one on floats (a chunk: the chunk path)
        monkeypatch.setattr(monitor_module, "_SMALL_BATCH", 0)
        lanes = mon.advance(block, pos, x, y)  # numpy lanes, sample by sample
        same = _equal if n == 1 else _close  # chunks: the same intervals; figures up to summation order
        assert np.array_equal(floats.answer, lanes.answer, equal_nan=True)
        assert same(floats.block, lanes.block)
        assert (floats.observed is None) == (lanes.observed is None)
        if floats.observed is not None:
            assert same(floats.observed, lanes.observed)
        for i in (0, b // 2, b - 1):  # alone in its batch
            alone = mon.advance(block[i:i + 1], pos[i:i + 1], x[i:i + 1], y[i:i + 1])
            assert same(alone.block[0], lanes.block[i])
            assert np.array_equal(alone.answer[0], lanes.answer[i], equal_nan=True)
        block, pos = lanes.block, pos + n


@pytest.mark.parametrize("space", ["absolute", "relative"])
def test_bounds_beyond_float32_are_its_largest_value(space: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forecast near float32's largest value: its interval ends there instead of at infinity, on every path
    (floats, lanes, a chunk), and a finite float32 actual still lies within."""
    mon = Monitor(_manifest(1, (True,), 0, 2, 1, None, space))
    big = np.finfo(np.float32).max
    if space == "absolute":
        big = -big  # yhat - w overflows downwards
    x = np.full((2, 3, 1), 5.0, np.float32)
    y = np.full((2, 3, 1), big, np.float32)
    answers = []
    for small in (10**9, 0):
        monkeypatch.setattr(monitor_module, "_SMALL_BATCH", small)
        answers.append(mon.advance(mon.fresh(2), np.zeros(2, np.int64), x[:, :1], y[:, :1]).answer)
    answers.append(mon.advance(mon.fresh(1), 0, x[:1], y[:1]).answer[:, :1])  # a chunk
    for a in answers:
        assert np.isfinite(a).all() and np.array_equal(a, answers[0][:len(a)])
        assert (a[..., 1:] == np.finfo(np.float32).max).any() or (a[..., 1:] == -np.finfo(np.float32).max).any()


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, rtol=1e-10, atol=1e-12, equal_nan=True))


def test_scores_wait_for_the_horizon() -> None:
    """With horizon 2 the actual at row t scores the forecast made at t - 2; persistence is the actual at t - 2."""
    mon = Monitor(_manifest(1, (True,), 0, 1, 2, None, "absolute"))
    x = np.array([[[10.0], [11.0], [13.0], [12.0]]], np.float32)  # [1, 4, 1]
    y = np.array([[[20.0], [21.0], [22.0], [23.0]]], np.float32)  # forecasts for rows 2, 3, 4, 5
    got = mon.advance(mon.fresh(1), 0, x, y).observed[0]  # [4, E]
    assert np.isnan(got[:2]).all()  # rows 0 and 1: nothing forecast for them yet
    assert got[2, :2].tolist() == [13.0 - 20.0, 13.0 - 10.0] and got[3, :2].tolist() == [12.0 - 21.0, 12.0 - 11.0]


def test_session_live_accuracy_is_the_plain_mean_before_its_window(model: runtime.Model, series: np.ndarray) -> None:
    s = model.stream()
    y = s.push(series[:60])[:, 0].astype(np.float64)
    actual = series[:60, 0].astype(np.float64)
    e_model, e_naive = actual[1:] - y[:-1], actual[1:] - actual[:-1]
    live = s.live
    assert live.actuals == 59 and live.window == 100
    assert live.rmse["model"] == pytest.approx(math.sqrt(np.mean(e_model**2)), rel=1e-12)
    assert live.mae["persistence"] == pytest.approx(np.mean(np.abs(e_naive)), rel=1e-12)
    assert live.error_ratio == pytest.approx(live.rmse["model"] / live.rmse["persistence"])


def _jump_stream(normalised: bool, n: int = 1000, jump: int = 500,
                 seed: int = 3) -> tuple[Monitor, np.ndarray, np.ndarray, np.ndarray]:
    """Errors three times larger from row ``jump`` on, through a monitor calibrated on the errors before it (levels
    0.5 and 0.8; normalised scores or the half-width tracked itself): (monitor, truth, forecasts, answer)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, n) * np.where(np.arange(n) < jump, 1.0, 3.0)
    truth = 100 + np.cumsum(rng.normal(0, 0.1, n))
    x = truth[:, None].astype(np.float32)[None]  # [1, N, 1]
    y = np.roll(truth - noise, -1)[:, None].astype(np.float32)[None]  # row t forecasts row t + 1, error noise[t + 1]
    cal = {"levels": [0.5, 0.8], "space": "absolute", "rows": 100, "quantiles": {"t0": [0.674, 1.2816]}}
    if normalised:  # |N(0, 1)| has mean 0.798: the quantiles of |e| / scale are about 0.85 and 1.6
        cal["normalised"] = {"scale": {"t0": 0.798}, "quantiles": {"t0": [0.85, 1.65]}}
    mon = Monitor(dataclasses.replace(_manifest(1, (True,), 0, 2, 1, None, "absolute"), targets=["t0"], features=["t0"],
                                      calibration=Calibration.from_dict(cal, ["t0"]).to_dict()))
    return mon, truth, y[0, :, 0], mon.advance(mon.fresh(1), 0, x, y).answer[0]  # answer [N, 5]


def test_online_recalibration_holds_coverage_through_a_variance_jump() -> None:
    """Errors three times larger from row 500 on: the calibrated width covers ~30 % at 80 %. Normalised scores cover
    80 % within 5 points over the 80 forecasts right after the jump; tracking the half-width itself (calibrations
    made before normalised scores) gets there only later (the bench measures both on the bundled series)."""
    for normalised in (True, False):
        mon, truth, y, answer = _jump_stream(normalised)
        assert mon.normalised == normalised
        hit = (answer[:-1, 3] <= truth[1:]) & (truth[1:] <= answer[:-1, 4])  # [N - 1]: row t's interval for t + 1
        soon, later = hit[499:579].mean(), hit[700:].mean()
        assert abs(later - 0.8) < 0.05, (normalised, later)
        if normalised:
            assert abs(soon - 0.8) < 0.05, soon
        else:
            assert soon < 0.72, soon
        fixed = np.abs(truth[701:] - y[700:-1]) <= 1.2816
        assert fixed.mean() < 0.5


def test_a_session_issues_q_times_its_scale() -> None:
    """A new session issues the normalised quantile times the calibration's scale; then the scale follows
    calibration.scale_path over the session's scores, bit for bit, and every interval is q x scale around the
    forecast (at one sample at a time and in a chunk)."""
    mon, truth, y, answer = _jump_stream(True, n=300, jump=150)
    q0 = mon.fresh(1)[0, mon._w_at:mon._w_at + 2]  # [L]
    assert q0.tolist() == [0.85, 1.65] and mon.fresh(1)[0, mon._scale_at] == 0.798
    y64 = y.astype(np.float64)
    assert answer[0, 1] == np.float32(y64[0] - 0.85 * 0.798) and answer[0, 4] == np.float32(y64[0] + 1.65 * 0.798)
    x = truth[:, None].astype(np.float32)[None]
    block, rows = mon.fresh(1), []
    for t in range(len(truth)):
        block = mon.advance(block, t, x[:, t:t + 1], y[None, t:t + 1, None]).block
        rows.append(block[0].copy())
    rows = np.array(rows)
    s = np.full(len(truth), np.nan)
    s[1:] = np.abs(x[0, 1:, 0].astype(np.float64) - y64[:-1])
    assert np.array_equal(rows[:, mon._scale_at], scale_path(s, 0.798))
    issued = rows[:, mon._w_at:mon._w_at + 2] * rows[:, [mon._scale_at]]  # [N, L]: q x scale after each row
    assert np.array_equal(answer[1:, 2], (y64[1:] + issued[1:, 0]).astype(np.float32))
    assert np.array_equal(answer[1:, 4], (y64[1:] + issued[1:, 1]).astype(np.float32))
    figures = session_figures(mon, rows[-1])
    assert figures.width[0.8] == [issued[-1, 1]]  # the live figures show the half-width issued now


def test_a_target_without_actuals_keeps_its_calibrated_width() -> None:
    """Normalised scores need the target's actual: a target that is not a feature starts (and stays) at its split
    conformal half-width, scale 1; an observed one at the normalised quantile times its starting scale."""
    m = _manifest(2, (True, False), 1, 2, 1, None, "absolute")
    mon, cal = Monitor(m), Calibration.from_dict(m.calibration, m.targets)
    row = mon.fresh(1)[0]
    q, scale = row[mon._w_at:mon._w_at + 4].reshape(2, 2), row[mon._scale_at:mon._scale_at + 2]
    assert q[:, 0].tolist() == list(cal.normalised.quantiles["t0"]) and scale[0] == cal.normalised.scale["t0"]
    assert q[:, 1].tolist() == list(cal.quantiles["t1"]) and scale[1] == 1.0
    x = np.ones((1, 5, 2), np.float32)
    y = np.full((1, 5, 2), 3.0, np.float32)
    answer = mon.advance(mon.fresh(1), 0, x, y).answer[0]  # [5, 2 + 2 * 2 * 2]: misses on t0, nothing on t1
    assert (answer[:, 2 + 1] == np.float32(3.0 - cal.quantiles["t1"][0])).all()


def test_a_calibration_without_normalised_scores_tracks_the_half_width() -> None:
    """Calibrations made before normalised scores still serve: the session tracks the half-width itself (scale 1),
    a miss multiplying it by exp(gamma level), a hit by exp(-gamma (1 - level)), as before; the section round-trips
    and a broken one is refused naming it."""
    mon, truth, y, answer = _jump_stream(False, n=60, jump=30)
    w, gamma, widths = 1.2816, 0.1, []
    for t in range(len(truth)):
        if t:
            covered = answer[t - 1, 3] <= truth[t] <= answer[t - 1, 4]
            w = max(w * math.exp(-gamma * 0.2 if covered else gamma * 0.8), 0.012816)
        widths.append(w)
    np.testing.assert_allclose(answer[:, 4].astype(np.float64) - y.astype(np.float64), widths, rtol=1e-5)
    assert mon.fresh(1)[0, mon._scale_at] == 1.0
    base = {"levels": [0.8], "space": "absolute", "rows": 9, "quantiles": {"t": [1.0]}}
    good = {"rate": 0.2, "clip": 3.0, "scale": {"t": 0.5}, "quantiles": {"t": [2.0]}}
    cal = Calibration.from_dict({**base, "normalised": good}, ["t"])
    assert cal.to_dict()["normalised"] == {**good, "quantiles": {"t": [2.0]}}
    assert Calibration.from_dict(cal.to_dict(), ["t"]) == cal
    assert Calibration.from_dict(base, ["t"]).normalised is None and "normalised" not in \
        Calibration.from_dict(base, ["t"]).to_dict()
    for bad in ({**good, "rate": 0.0}, {**good, "clip": 0.5}, {**good, "scale": {"t": 0.0}},
                {**good, "scale": {"u": 1.0}}, {**good, "quantiles": {"t": [1.0, 2.0]}}, [1]):
        with pytest.raises(ValueError, match="calibration.normalised"):
            Calibration.from_dict({**base, "normalised": bad}, ["t"])


def test_drift_alarm_on_a_frozen_sensor_one_log_line(model: runtime.Model, series: np.ndarray,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A sensor stuck at its last value: persistence becomes perfect, the model does not, the alarm rises within a
    bounded number of samples, once, and the session's own statistic is the pool's (one session)."""
    fresh = runtime.load(COMMITTED)  # its own pool
    s = fresh.stream()
    s.push(series)
    assert not fresh.live.figures().drift and not s.live.drift  # the series itself raises nothing
    caplog.set_level(logging.WARNING, logger="eddy.drift")
    frozen = np.full((300, 1), series[-1, 0], np.float32)
    for k in range(len(frozen)):
        s.push(frozen[k:k + 1])
        if s.live.drift:
            break
    assert s.live.drift and k < 200, k
    pool = fresh.live.figures()
    assert pool.drift and pool.cusum == pytest.approx(s.live.cusum)
    lines = [r.getMessage() for r in caplog.records if r.name == "eddy.drift"]
    assert len(lines) == 1 and lines[0].startswith("drift model=sunspots/1 ") and f"limit={CUSUM_LIMIT:g}" in lines[0]
    assert session_figures(fresh.monitor, s._monitor_state).drift


@pytest.mark.parametrize("change", ["none", "noise"])
def test_drift_alarm_on_the_test_part(series: np.ndarray, change: str, caplog: pytest.LogCaptureFixture) -> None:
    """The committed model streamed over its series: the unmodified test part raises nothing; Gaussian noise of twice
    the test RMSE added from the test part's first row on raises the alarm within 40 samples, with one log line
    naming the model, its version and the figures (bench/bench_intervals.py measures the delays on every series)."""
    fresh = runtime.load(COMMITTED)  # its own pool
    t0 = fresh.manifest.training["split_rows"]["test"][0]
    x = series.copy()
    if change == "noise":
        rmse = fresh.manifest.metrics["streamed"]["rmse"]
        x[t0:] += np.random.default_rng(0).normal(0.0, 2.0 * rmse, x[t0:].shape).astype(np.float32)
    caplog.set_level(logging.WARNING, logger="eddy.drift")
    s = fresh.stream()
    s.push(x[:t0])
    assert not s.live.drift
    raised = [t - t0 for t in range(t0, len(x)) if (s.push(x[t:t + 1]), s.live.drift)[1]]
    pooled = fresh.live.figures()  # the model's pool (what eddy_drift shows) folds its queue in and logs
    assert pooled.drift == bool(raised)
    lines = [r.getMessage() for r in caplog.records if r.name == "eddy.drift"]
    if change == "none":
        assert not raised and not lines
        return
    assert raised and raised[0] < 40, raised[:1]
    assert len(lines) == 1 and lines[0].startswith("drift model=sunspots/1 statistic='error above its reference level' ")
    for figure in ("live_rmse=", f"test_rmse={fresh.manifest.metrics['streamed']['rmse']:.4g} ", "error_ratio=",
                   "actuals=", "cusum=", f"limit={CUSUM_LIMIT:g}"):
        assert figure in lines[0], (figure, lines[0])


LEVEL_SHIFT = 300.0  # sunspots, raw units: 22 validation MAEs (a +2 sd shift, 68, is one of 4 MAEs: see the guide)


@pytest.mark.parametrize("chunk", [1, 5])
def test_drift_alarm_on_a_level_shift(series: np.ndarray, chunk: int, caplog: pytest.LogCaptureFixture) -> None:
    """A level shift a differencing model follows after one sample: one very large error, then ordinary ones. The
    Shewhart part raises the alarm at the shift's own sample (one sample at a time or inside a chunk), the pool logs
    it once, and the session's statistic falls below the limit once the errors have been back in control."""
    fresh = runtime.load(COMMITTED)  # its own pool
    ref = fresh.monitor.reference
    assert ref is not None and ref.part == "validation"  # the error level's unit: the validation part's MAE
    assert ref.level[0] == pytest.approx(fresh.manifest.intervals.mae["sunspots"])
    t0 = fresh.manifest.training["split_rows"]["test"][0]
    x = series.copy()
    x[t0:] += np.float32(LEVEL_SHIFT)
    caplog.set_level(logging.WARNING, logger="eddy.drift")
    s = fresh.stream()
    s.push(x[:t0])
    assert not s.live.drift
    states = []
    for start in range(t0, len(x), chunk):
        s.push(x[start:start + chunk])
        states.append(s.live)
    assert states[0].drift and states[0].cusum[0] >= CUSUM_LIMIT  # raised by the shift's own sample
    assert not states[-1].drift  # below the limit again: the model follows the new level
    assert fresh.live.figures().cusum == pytest.approx(s.live.cusum)  # the pool (one session) runs the same test
    lines = [r.getMessage() for r in caplog.records if r.name == "eddy.drift"]
    assert len(lines) == 1 and "statistic='one error beyond 12 reference MAEs'" in lines[0], lines


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c)))
def test_a_chunk_issues_the_intervals_of_its_samples_one_by_one(config: tuple) -> None:
    """A chunk moves the widths sample by sample with the same operations (same bits for the same predictions) and
    computes the live figures over the chunk at once (the same up to summation order)."""
    o, observed, extra, levels, h, season, space, norm = config
    mon = Monitor(_manifest(o, observed, extra, levels, h, season, space, norm))
    rng = np.random.default_rng(2)
    f = len(observed) - observed.count(False) + extra
    n = 40
    x = rng.uniform(0.5, 3.0, (1, n, f)).astype(np.float32)
    y = (x[:, :, :1].repeat(o, axis=2) + rng.normal(0, 0.6, (1, n, o))).astype(np.float32)
    y[0, 7, 0] = np.nan  # a non-finite prediction is never scored
    for p0 in (0, 3):
        block = mon.fresh(1)
        for k in range(5):
            block = mon.advance(block, p0 + k, x[:, k:k + 1], y[:, k:k + 1]).block
        one, answers, scored = block, [], []
        for k in range(5, n):
            a = mon.advance(one, p0 + k, x[:, k:k + 1], y[:, k:k + 1])
            one = a.block
            answers.append(a.answer[0, 0])
            scored.append(None if a.observed is None else a.observed[0, 0])
        chunk = mon.advance(block, p0 + 5, x[:, 5:], y[:, 5:])
        assert np.array_equal(chunk.answer[0], np.array(answers), equal_nan=True)
        np.testing.assert_allclose(chunk.block[0], one[0], rtol=1e-10, atol=1e-12)
        if chunk.observed is not None:
            np.testing.assert_allclose(chunk.observed[0], np.array(scored), rtol=1e-10, atol=1e-12)
