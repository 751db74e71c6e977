"""The in-process runtime against the committed default model and its Keras twin.

``model`` and ``series`` (``[N, 1]``) are conftest's: the default model and the bundled series.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _models import copy_as

import eddy.runtime as runtime
from eddy.runtime.core.errors import InvalidInput, ModelLoadError, NotFound
from eddy.runtime.core.manifest import sha256_file


def _close(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """Max abs difference relative to the target scale (raw units)."""
    return float(np.abs(a - b).max() / scale)


def test_any_chunking_equals_whole_sequence(model, series):
    whole = model.predict(series[None])[0]  # [N, O]
    scale = float(np.abs(whole).max())
    rng = np.random.default_rng(7)
    for _ in range(5):
        stream, outs, i = model.stream(), [], 0
        while i < len(series):
            n = int(rng.integers(1, 25))
            outs.append(stream.push(series[i:i + n]))
            i += n
        assert stream.position == len(series)
        assert _close(np.concatenate(outs), whole, scale) <= 1e-5


def test_sample_by_sample_accepts_float_and_1d(model, series):
    a, b = model.stream(), model.stream()
    for v in series[:20, 0]:
        ya = a.push(float(v))  # plain float, F == 1
        yb = b.push(np.array([v]))  # [F]
        assert ya.shape == (1, model.n_targets)
        np.testing.assert_array_equal(ya, yb)


def test_window_equals_keras_predict(model, series):
    keras = pytest.importorskip("keras")
    km = keras.models.load_model(model.path / "model.keras")
    from eddy.trainer.transform import Transform

    m = model.manifest
    w, norm = m.window, m.normalization
    t = Transform.for_columns(m.target_transform, m.features, m.targets)  # delta: a fresh stream's first change is 0
    starts = [0, 50, 123, len(series) - w]
    windows = np.stack([series[s:s + w] for s in starts])  # [B, W, F] raw
    xk = np.stack([(t.inputs(win) - norm.input_mean) / norm.input_std for win in windows]).astype(np.float32)
    z = km.predict(xk, verbose=0).astype(np.float64) * norm.target_std + norm.target_mean  # [B, O] model space
    expect = t.predictions(windows[:, -1], z)  # [B, O] raw
    for window, want in zip(windows, expect):
        got = model.stream().push(window)[-1]
        assert _close(got, want, float(norm.target_std[0])) <= 1e-5


def test_state_round_trip_and_copy(model, series):
    a = model.stream()
    a.push(series[:40])
    saved = a.state
    saved_copy = {k: v.copy() for k, v in saved.items()}
    for v in saved.values():
        v[...] = 123.0  # mutating the copy must not touch the stream
    expect = a.push(series[40:60])
    b = model.stream()
    b.state = saved_copy
    np.testing.assert_array_equal(b.push(series[40:60]), expect)
    b.reset()
    assert b.position == 0
    np.testing.assert_array_equal(b.push(series[:5]), model.stream().push(series[:5]))


BAD_SAMPLES = [
    ([[1.0, 2.0]], "feature"),
    ([1.0, 2.0], "feature"),
    ([], "no samples"),
    (np.zeros((0, 1)), "no samples"),
    ([[float("nan")]], "finite"),
    ([[1.0], [float("inf")]], "finite"),
    ("12", "numbers"),
    (True, "numbers"),
    ([["a"]], "numbers"),
    ([[1.0], [2.0, 3.0]], "rectangular"),
    (np.zeros((1, 1, 1)), "dimensions"),
    (None, "numbers"),
]


@pytest.mark.parametrize("bad,words", BAD_SAMPLES, ids=[str(i) for i in range(len(BAD_SAMPLES))])
def test_rejected_push_leaves_state_unchanged(model, series, bad, words):
    stream, ref = model.stream(), model.stream()
    stream.push(series[:30])
    ref.push(series[:30])
    before = stream.state
    with pytest.raises(InvalidInput, match=words):
        stream.push(bad)
    assert stream.position == 30
    for k, v in stream.state.items():
        np.testing.assert_array_equal(v, before[k])
    np.testing.assert_array_equal(stream.push(series[30:35]), ref.push(series[30:35]))


def test_rejected_state_assignment(model):
    stream = model.stream()
    spec = model.state_spec[0]
    good = {s.name: np.zeros(s.shape, np.float32) for s in model.state_spec}
    for bad, words in [
        ({}, "exactly"),
        ({**good, "extra": np.zeros(3)}, "exactly"),
        ({**good, spec.name: np.zeros(spec.shape[0] + 1)}, "shape"),
        ({**good, spec.name: np.full(spec.shape, np.nan)}, "non-finite"),
        ([1, 2], "mapping"),
    ]:
        with pytest.raises(InvalidInput, match=words):
            stream.state = bad
    stream.state = good


def _copy_model(model: runtime.Model, tmp_path: Path) -> Path:
    return copy_as(model.path, tmp_path / "sunspots" / "1", version=1)


def test_load_picks_highest_version(model, tmp_path):
    v1 = _copy_model(model, tmp_path)
    copy_as(v1, v1.parent / "7", version=7)
    assert runtime.load(v1.parent).version == 7
    assert runtime.load(v1).version == 1


def test_broken_model_directories(model, tmp_path):
    with pytest.raises(NotFound, match="no such model directory"):
        runtime.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound, match="no model version"):
        runtime.load(tmp_path / "empty")

    d = _copy_model(model, tmp_path)
    step = d / "step.onnx"
    data = bytearray(step.read_bytes())
    data[len(data) // 2] ^= 0xFF
    step.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"step\.onnx: sha256 does not match"):
        runtime.load(d)

    # A corrupted graph whose hash was "fixed" still fails, naming the file.
    step.write_bytes(b"not an onnx file")
    m = json.loads((d / "manifest.json").read_text())
    m["graphs"]["step"]["sha256"] = sha256_file(step)
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelLoadError, match=r"step\.onnx: onnxruntime cannot load it"):
        runtime.load(d)

    (d / "sequence.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"sequence\.onnx: listed in the manifest but missing"):
        runtime.load(d)


def test_bad_manifests(model, tmp_path):
    d = _copy_model(model, tmp_path)
    good = json.loads((d / "manifest.json").read_text())
    cases = [
        ("{not json", "not valid JSON"),
        (json.dumps({**good, "format": "other/9"}), "unsupported format"),
        (json.dumps({k: v for k, v in good.items() if k != "state"}), "missing field 'state'"),
        (json.dumps({**good, "cell": "transformer"}), "unknown cell"),
        (json.dumps({**good, "normalization": {**good["normalization"], "input_std": [0.0]}}), "positive"),
    ]
    for text, words in cases:
        (d / "manifest.json").write_text(text)
        with pytest.raises(ModelLoadError, match=words):
            runtime.load(d)


def test_predict_shapes_and_initial_state(model, series):
    x = np.stack([series[:50], series[50:100]])  # [2, 50, 1]
    y, state = model.predict(x, return_state=True)
    assert y.shape == (2, 50, model.n_targets)
    y2 = model.predict(np.stack([series[50:60], series[100:110]]), state=state)
    a, b = model.stream(), model.stream()
    a.push(series[:50])
    b.push(series[50:100])
    assert _close(y2[0], a.push(series[50:60]), float(np.abs(y2).max())) <= 1e-5
    assert _close(y2[1], b.push(series[100:110]), float(np.abs(y2).max())) <= 1e-5
    with pytest.raises(InvalidInput, match=r"\[B, T, 1\]"):
        model.predict(series)
    with pytest.raises(ValueError, match="precision"):
        runtime.load(model.path, precision="fp4")
