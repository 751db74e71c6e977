"""`--blend arima`: statsforecast's AutoARIMA fitted on the training rows, weighted against the networks
on the validation rows, refitted on the training and validation rows and run inside the exported graphs as state
(its conditional one-step recursion). The float64 reference agrees with statsforecast's own one-step forecasts after
a burn-in; the graphs agree with the reference; a served stream is a local one bit for bit, resumes from exported
state bytes and refuses a bad row without moving. Tiny 1-epoch networks: the mechanics, not accuracy.
"""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _fitted import SEASON, TINY, fitted
from _serving import chunked, served

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
statsforecast_models = pytest.importorskip("statsforecast.models")

import eddy.runtime as runtime  # noqa: E402
from eddy.cli.export import main as export_main  # noqa: E402
from eddy.cli.info import collect, format_table  # noqa: E402
from eddy.runtime.client import Client  # noqa: E402
from eddy.runtime.core.errors import EddyError, InvalidInput  # noqa: E402
from eddy.runtime.core.manifest import read_manifest  # noqa: E402
from eddy.trainer import blend  # noqa: E402
from eddy.trainer.config import TrainConfig  # noqa: E402
from eddy.trainer.keras_record import MEMBER  # noqa: E402
from eddy.trainer.self_contained import RTOL  # noqa: E402

NETWORKS = [*TINY, "--window", "6", "--season", str(SEASON), "--target-transform", "delta", "--blend", "none"]
BLENDED = [*NETWORKS, "--blend", "arima"]  # the same networks (same seed and flags), then the ARIMA stage
SIZES = [1, 4, 25, 1, 13, 156]  # a stream's messages: 200 rows


def _simulate(a: list[float], theta: dict[int, float], k: float, n: int = 400) -> np.ndarray:
    """``n`` samples of ``y[t] = k + sum_i a[i] y[t-1-i] + e[t] + sum_j theta[j] e[t-j]``, standard normal ``e``."""
    rng = np.random.default_rng(0)
    e, y = rng.normal(size=n + 100), np.zeros(n + 100)
    for t in range(len(a), len(y)):
        y[t] = k + sum(c * y[t - 1 - i] for i, c in enumerate(a)) + e[t] + sum(c * e[t - j] for j, c in theta.items())
    return y[100:]


AIRLINE_MA = {1: -0.4, SEASON: -0.6, SEASON + 1: 0.24}  # (1 - 0.4 B)(1 - 0.6 B^12)


@pytest.mark.parametrize("y, order, seasonal, terms", [
    (_simulate([1] + [0] * (SEASON - 2) + [1, -1], AIRLINE_MA, 0.0), (0, 1, 1), (0, 1, 1), {}),  # the airline model
    (_simulate([0.5, -0.3], {1: 0.4}, 8.0), (2, 0, 1), (0, 0, 0), {"include_mean": True}),  # an intercept
    (_simulate([1.5, -0.5], {}, 0.3), (1, 1, 0), (0, 0, 0), {"include_drift": True}),  # a drift with one difference
])
def test_the_reference_is_statsforecasts_one_step_forecast_after_a_burn_in(y, order, seasonal, terms) -> None:
    model = statsforecast_models.ARIMA(order=order, seasonal_order=seasonal, season_length=SEASON, **terms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(y[:150])
    arima = blend.Arima.from_fitted(model.model_)
    assert arima.ma_root < blend.MAX_MA_ROOT
    assert set(arima.terms) == {{"include_mean": "intercept", "include_drift": "drift"}[k] for k in terms}
    ours = blend.reference(arima, y)  # entry t forecasts y[t + 1]
    # The conditional start (errors 0 before the first forecast) and the Kalman filter's differ by a term that decays
    # as the MA root's modulus per step (0.95 for the airline model here: 1e-2 of std at rows 50-100, 5e-9 at 350-400)
    rows = np.arange(300, len(y))
    theirs = np.array([model.forward(y=y[:r], h=1)["mean"][0] for r in rows])
    assert np.max(np.abs(ours[rows - 1] - theirs)) < 1e-6 * np.std(y)
    assert np.array_equal(blend.reference(blend.Arima.from_dict(arima.to_dict()), y), ours)


def test_the_weight_leans_to_the_better_forecaster_and_a_non_invertible_ma_is_refused() -> None:
    actual = np.zeros(20)
    w, scores = blend.choose_weight(np.full(20, 1.0), np.full(20, 2.0), actual)  # MSE 1 and 4
    assert w == pytest.approx(0.2) and scores["networks"] == 1.0 and scores["arima"] == 2.0
    assert scores["blend"] == pytest.approx(1.2)
    assert blend._invertible(np.array([-2.0])) == pytest.approx([-0.5])  # the invertible form of an MA(1)
    assert blend._invertible(np.array([0.3, -0.1])) == pytest.approx([0.3, -0.1])  # invertible already
    unit_root = blend.Arima(k=0.0, a=(1.0,), theta=(-1.0,), model="m", order=(0,) * 7, terms=()).ma_root
    assert unit_root == pytest.approx(1.0) and unit_root > blend.MAX_MA_ROOT
    assert blend.applies(["v"], ["v"], 1) is None
    assert "horizon 2" in blend.applies(["v"], ["v"], 2)
    assert "2 targets" in blend.applies(["a", "b"], ["a", "b"], 1)
    assert "not a feature" in blend.applies(["a"], ["b"], 1)
    assert TrainConfig().blend == "none" and TrainConfig.for_preset("seed").blend == "none"


def _csv() -> str:
    """200 rows of an airline-model series (an ARIMA fits it with an invertible MA), one column ``v``."""
    y = 100 + _simulate([1] + [0] * (SEASON - 2) + [1, -1], AIRLINE_MA, 0.0, n=200)
    return "v\n" + "".join(f"{v:.4f}\n" for v in y)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    blended, path = fitted(tmp_path_factory, _csv(), BLENDED)
    networks, _ = fitted(tmp_path_factory, _csv(), NETWORKS)
    return blended, networks, np.loadtxt(path, skiprows=1, dtype=np.float32)[:, None]  # [T, 1] as written


def test_the_graphs_are_the_networks_blended_with_the_reference(trained: tuple[Path, Path, np.ndarray]) -> None:
    blended, networks, x = trained
    m, alone = read_manifest(blended), read_manifest(networks)
    entry = m.metrics["blend"]
    assert entry["kind"] == "arima" and 0 < entry["weight"] < 1 and entry["fitted_on"] == "training and validation rows"
    assert [s.name for s in m.state] == [s.name for s in alone.state] + ["arima_y", "arima_e", "arima_n"]
    arima = blend.Arima.from_dict(entry["arima"])
    assert [s.shape for s in m.state[-3:]] == [[len(arima.a)], [len(arima.theta)], [1]]
    assert all(0 <= m.parity["blend"][k] <= 1 for k in ("chained_step", "chunked_sequence"))
    net = runtime.load(networks).stream().push(x)[:, 0]  # [T] the networks alone
    whole = runtime.load(blended).stream().push(x)  # [T, 1]
    want = blend.blend(net, blend.reference(arima, x[:, 0].astype(np.float64)), entry["weight"])
    np.testing.assert_allclose(whole[:, 0], want, rtol=0, atol=RTOL * float(np.max(np.abs(want))))
    s = runtime.load(blended).stream()
    pieces = np.concatenate([s.push(c) for c in chunked(x, SIZES)])
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=RTOL * float(np.max(np.abs(whole))))
    assert np.array_equal(s.state["arima_y"], x[::-1][: len(arima.a), 0])  # the last samples, newest first
    test = np.arange(*m.training["split_rows"]["test"])
    rmse = float(np.sqrt(np.mean((whole[test - 1, 0].astype(np.float64) - x[test, 0]) ** 2)))
    assert rmse == pytest.approx(m.metrics["streamed"]["rmse"], rel=1e-5)
    assert entry["network_streamed"]["rmse"] == pytest.approx(alone.metrics["streamed"]["rmse"], rel=1e-6)
    assert "blend" not in alone.metrics
    assert json.loads((blended / "report.json").read_text())["test"]["blend"] == json.loads(json.dumps(entry))
    table = " ".join(format_table(collect(blended)).split())  # eddy info: the blend, its weight, the networks' score
    assert f"{entry['weight']:.3f} x {arima.model}" in table and "networks alone: streamed test RMSE" in table


def test_served_blend_is_the_local_stream_resumes_and_refuses_a_bad_row_without_moving(
        trained: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    blended, _, x = trained
    models = tmp_path / "models"
    shutil.copytree(blended, models / "mix" / "1")
    pieces = chunked(x, SIZES)
    local = runtime.load(blended).stream()
    want = [local.push(p) for p in pieces]
    bad = np.array([[np.nan]], np.float32)
    with pytest.raises(InvalidInput):
        runtime.load(blended).stream().push(bad)
    with served(models) as server, Client(server.address) as client:
        with client.stream("mix") as s:
            got = [s.push(p) for p in pieces[:3]]
            with pytest.raises(EddyError) as e:
                s.push(bad)
            assert e.value.code == "INVALID_ARGUMENT"
            got.append(s.push(pieces[3]))  # the refused row changed nothing
            blob = s.export_state()
        with client.stream("mix", state=blob) as s:  # a new session from the exported bytes
            got += [s.push(p) for p in pieces[4:]]
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_export_of_a_blended_model_keras_serves_the_same_blend(trained: tuple[Path, Path, np.ndarray], tmp_path: Path,
                                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    """The record inside model.keras carries the ARIMA and its weight: `eddy export` of the file, with the training
    data or copied elsewhere without it, serves what the version served, bit for bit."""
    blended, _, x = trained
    m = read_manifest(blended)
    assert json.loads(zipfile.ZipFile(blended / "model.keras").read(MEMBER))["blend"] == {
        "arima": json.loads(json.dumps(m.metrics["blend"]["arima"])), "weight": m.metrics["blend"]["weight"]}
    alone = tmp_path / "elsewhere" / "copy.keras"
    alone.parent.mkdir()
    shutil.copyfile(blended / "model.keras", alone)
    data = fitted(tmp_path_factory, _csv(), BLENDED)[1]  # the CSV the version trained on
    runs = {"in_place": [str(blended / "model.keras"), "--out", str(tmp_path / "in_place"), "--data", str(data)],
            "copied": [str(alone), "--out", str(tmp_path / "copied")]}  # no --data: seeded inputs, the record alone
    want_whole, s = runtime.load(blended).stream().push(x), runtime.load(blended).stream()
    want_steps = np.concatenate([s.push(row) for row in x])
    for name, argv in runs.items():
        assert export_main(argv) == 0, name
        out = read_manifest(tmp_path / name / "1")
        assert [(st.name, st.shape) for st in out.state] == [(st.name, st.shape) for st in m.state]
        assert out.metrics["blend"]["weight"] == m.metrics["blend"]["weight"] and 0 <= out.parity["blend"]["chained_step"] <= 1
        got = runtime.load(tmp_path / name / "1")
        s = got.stream()
        assert np.array_equal(got.stream().push(x), want_whole)  # bit for bit: the same ONNX computation
        assert np.array_equal(np.concatenate([s.push(row) for row in x]), want_steps)
        table = " ".join(format_table(collect(tmp_path / name / "1")).split())  # eddy info names the blend
        assert f"{m.metrics['blend']['weight']:.3f} x {m.metrics['blend']['arima']['model']}" in table
    exported = read_manifest(tmp_path / "in_place" / "1").metrics
    assert exported["streamed"]["rmse"] == m.metrics["streamed"]["rmse"]  # the served score, as eddy train reported it
    assert exported["blend"]["network_streamed"]["rmse"] == m.metrics["blend"]["network_streamed"]["rmse"]
