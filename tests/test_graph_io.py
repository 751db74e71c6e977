"""Self-contained graphs: normalisation and target transform inside the ONNX graph (no tensorflow).

The core is the pre-issue-11 default model's tf2onnx graphs (tests/data/legacy_sunspots: the step graph and
the sequence graph's ``Loop``); the reference is the float64 transform of
:mod:`eddy.trainer.transform` around the core run in onnxruntime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from eddy.runtime.core.manifest import Normalization, StateSpec, read_manifest
from eddy.trainer.graph_io import metadata, set_metadata, wrap_raw
from eddy.trainer.transform import KINDS, SEASONAL_KINDS, Transform, applicable_kinds

NORM = Normalization([40.0], [30.0], [0.5], [7.0])  # arbitrary, not the model's own: any affine must round-trip
CHUNKS = [1, 1, 7, 1, 30, 2, 100, 1, 167]  # sums to 309, the series length


@pytest.fixture(scope="module")
def core_dir(legacy_dir: Path) -> Path:
    return legacy_dir


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _reference(core_dir: Path, t: Transform, x: np.ndarray) -> np.ndarray:
    """float64 transform around the core sequence graph over the whole series: raw ``[T, F]`` -> raw ``[T, O]``."""
    core = _session(onnx.load(core_dir / "sequence.onnx"))
    u = (t.inputs(x) - NORM.input_mean) / NORM.input_std  # [T, F]
    z = core.run(["y"], {"x": u[None].astype(np.float32), "h0": np.zeros((1, 50), np.float32)})[0][0]  # [T, O]
    return t.predictions(x, z * np.asarray(NORM.target_std) + NORM.target_mean, rows=np.arange(len(x)))


@pytest.mark.parametrize(("kind", "season", "horizon"), [(k, None, 1) for k in KINDS if k not in SEASONAL_KINDS]
                         + [(k, s, h) for k in SEASONAL_KINDS for s, h in ((11, 1), (11, 3), (2, 2))])
def test_wrapped_graphs_stream_the_float64_transform_in_any_chunking(core_dir: Path, series: np.ndarray, kind: str,
                                                                     season: int | None, horizon: int) -> None:
    t = Transform.for_columns(kind, ["sunspots"], ["sunspots"], season=season, horizon=horizon)
    x = series.astype(np.float64) + 1.0  # > 0 for log_delta
    sessions = {k: _session(wrap_raw(onnx.load(core_dir / f"{k}.onnx"), k, t, NORM)) for k in ("step", "sequence")}
    names = [i.name for i in sessions["step"].get_inputs()]
    assert names == ["x", "h0", *(s.name for s in t.extra_state())]
    assert [o.name for o in sessions["step"].get_outputs()] == ["y", *(n + "_out" for n in names[1:])]
    state = {"h0": np.zeros((1, 50), np.float32), **{s.name: np.zeros((1, *s.shape), np.float32) for s in t.extra_state()}}
    ys, pos = [], 0
    for n in CHUNKS:
        chunk = x[pos : pos + n].astype(np.float32)[None]  # [1, n, F]
        if n == 1:
            y, *new = sessions["step"].run(None, {"x": chunk[:, 0], **state})
            y = y[:, None]
        else:
            y, *new = sessions["sequence"].run(None, {"x": chunk, **state})
        state = dict(zip(state, new))
        ys.append(y[0])
        pos += n
    got = np.concatenate(ys)  # [T, O]
    want = _reference(core_dir, t, x)
    scale = np.maximum(np.abs(want), 1.0)
    assert float(np.max(np.abs(got - want) / scale)) < 1e-5
    if t.is_seasonal:  # the shift buffer holds the last `season` raw samples (double_delta: one more)
        assert np.array_equal(state["x_season"][0], x[-t.buffer_rows:].astype(np.float32)) and state["x_seen"][0, 0] == 1
    elif t.is_delta:
        assert state["x_last"][0, 0] == np.float32(x[-1, 0]) and state["x_seen"][0, 0] == 1.0


def test_identity_statistics_add_no_arithmetic(core_dir: Path) -> None:
    identity = Normalization([0.0], [1.0], [0.0], [1.0])
    core = onnx.load(core_dir / "step.onnx")
    wrapped = wrap_raw(core, "step", Transform("level", 1), identity)
    added = [n.op_type for n in wrapped.graph.node if n.name.startswith("eddy_io/")]
    assert added == ["Identity", "Identity"]


def test_metadata_props_carry_the_contract(core_dir: Path, tmp_path: Path) -> None:
    m = read_manifest(core_dir)
    t = Transform("delta", 1, (0,))
    state = [*m.state, *t.extra_state()]
    proto = wrap_raw(onnx.load(core_dir / "step.onnx"), "step", t, NORM)
    set_metadata(proto, metadata(features=m.features, targets=m.targets, horizon=1, window=10, state=state,
                                 transform="delta", graph="step", fmt="eddy.model/1"))
    onnx.save(proto, tmp_path / "step.onnx")
    props = _session(onnx.load(tmp_path / "step.onnx")).get_modelmeta().custom_metadata_map
    assert props["eddy.io"] == "raw" and props["eddy.target_transform"] == "delta"
    assert json.loads(props["eddy.state"]) == [{"name": "h0", "shape": [50], "initial": 0.0},
                                               {"name": "x_last", "shape": [1], "initial": 0.0},
                                               {"name": "x_seen", "shape": [1], "initial": 0.0}]
    assert json.loads(props["eddy.features"]) == ["sunspots"] and props["eddy.horizon"] == "1"


def test_transform_choices_and_refusals() -> None:
    x = np.array([[1.0, -2.0], [2.0, 3.0]])
    assert applicable_kinds(["a", "b"], ["a"], x) == ["level", "delta"]  # b is negative: no log
    assert applicable_kinds(["a"], ["b"], x[:, :1]) == ["level"]  # target not a feature: no delta
    with pytest.raises(ValueError, match="needs every target among the features; b is not"):
        Transform.for_columns("delta", ["a"], ["b"])
    t = Transform.for_columns("log_delta", ["a", "b"], ["b"])
    assert t.check(x, "data.csv") == "data.csv: log_delta needs every feature value positive"
    y = np.array([[2.0], [4.0], [8.0]])
    xs = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 8.0]])
    assert np.allclose(t.labels(xs, y, 1), np.log(2.0))  # each step doubles
    assert np.allclose(t.predictions(xs[:2], t.labels(xs, y, 1)), y[1:])


def test_seasonal_delta_is_seasonal_naive_plus_the_predicted_change() -> None:
    x = np.array([[1.0], [5.0], [2.0], [6.0], [3.0], [7.0], [4.0]])  # [T, 1], season 2
    t = Transform.for_columns("seasonal_delta", ["a"], ["a"], season=2, horizon=1)
    assert t.extra_state() == [StateSpec("x_season", [2, 1]), StateSpec("x_seen", [1])]
    assert t.inputs(x)[:, 0].tolist() == [0.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # x[t] - x[t-2]; row 0 for rows < 0
    assert t.labels(x, x, 1)[:, 0].tolist() == [4.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # y[t+1] - x[t+1-2]
    # A zero change is seasonal naive: the value one season before the predicted row t + 1.
    assert t.predictions(x, np.zeros((6, 1)), rows=np.arange(6))[:, 0].tolist() == [1.0, 1.0, 5.0, 2.0, 6.0, 3.0]
    with pytest.raises(ValueError, match="need the whole series"):
        t.predictions(x[:6], np.zeros((6, 1)))
    with pytest.raises(ValueError, match="needs --season at least the horizon \\(2\\), got 1"):
        Transform.for_columns("seasonal_delta", ["a"], ["a"], season=1, horizon=2)
    with pytest.raises(ValueError, match="needs --season at least the horizon \\(1\\), got none"):
        Transform.for_columns("seasonal_delta", ["a"], ["a"])
    assert applicable_kinds(["a"], ["a"], x, season=2) == ["level", "delta", "log_delta", "seasonal_delta"]
    assert applicable_kinds(["a"], ["b"], x, season=2) == ["level"]  # the base is the target's own past


def test_double_delta_is_the_airline_models_differencing() -> None:
    trend, pattern = np.arange(9.0), np.tile([0.0, 10.0, 4.0], 3)
    x = (trend * 2 + pattern)[:, None]  # [T, 1]: a trend plus a season of 3
    t = Transform.for_columns("double_delta", ["a"], ["a"], season=3, horizon=1)
    assert t.extra_state() == [StateSpec("x_season", [4, 1]), StateSpec("x_seen", [1])]
    u = t.inputs(x)[:, 0]  # (x[t] - x[t-1]) - (x[t-3] - x[t-4]); rows before 0 stand for row 0
    assert u[:4].tolist() == [0.0, 12.0, -4.0, -2.0] and np.all(u[4:] == 0.0)  # a trend plus a season: no change
    assert np.all(t.labels(x, x, 1)[3:] == 0.0)  # once a season is seen, a zero change predicts every row exactly
    zero = t.predictions(x, np.zeros((8, 1)), rows=np.arange(8))[:, 0]  # x[t] + x[t+1-3] - x[t-3]
    assert zero[3:].tolist() == x[4:, 0].tolist() and zero[0] == x[0, 0] and zero[1] == x[1, 0] + x[0, 0] - x[0, 0]
    assert np.allclose(t.inputs(t.series_from_inputs(u))[4:], u[4:, None])  # the inverse, from row S + 1 on
    with pytest.raises(ValueError, match="'double_delta' needs --season at least the horizon \\(1\\), got none"):
        Transform.for_columns("double_delta", ["a"], ["a"])
