"""int8 graphs: quantize tiny exported SimpleRNN and LSTM models, load them with
``runtime.load(precision="int8")``, stream through them and compare with float.

Real tensorflow, tf2onnx and onnxruntime; the models are tiny and untrained.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

import keras  # noqa: E402
from _fitted import kept  # noqa: E402

import eddy.runtime as runtime  # noqa: E402
from eddy.cli.info import collect, format_table  # noqa: E402
from eddy.runtime.core.errors import ModelLoadError  # noqa: E402
from eddy.runtime.core.manifest import Manifest, Normalization, read_manifest, sha256_file, write_manifest  # noqa: E402
from eddy.trainer.onnx_export import export_model  # noqa: E402
from eddy.trainer.quantize import INT8_FILES, quantize_graphs  # noqa: E402

UNITS, WINDOW = 16, 8
MEAN, STD = 40.0, 30.0  # raw = z * STD + MEAN
CELLS = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM}


def _series(n: int = 160) -> np.ndarray:
    """A normalised two-frequency series, ``[n, 1]``."""
    t = np.arange(n, dtype=np.float32)
    return (np.sin(t / 5.0) + 0.5 * np.sin(t / 17.0))[:, None].astype(np.float32)


@pytest.fixture(scope="module", params=sorted(CELLS))
def quantized(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A version directory with float and int8 graphs, and the quantisation figures: made once and kept across runs
    (tests/_fitted.py kept(), keyed by the code, this file and the library versions)."""
    cell = request.param

    def make(root: Path) -> None:
        out = root / "1"
        out.mkdir()
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((WINDOW, 1)), CELLS[cell](UNITS), keras.layers.Dense(1)])
        x = _series()
        windows = np.stack([x[i : i + WINDOW] for i in range(0, 40, 4)])  # [10, W, 1]
        exported = export_model(model, out, windows, x)
        int8_graphs, figures = quantize_graphs(out, exported.graphs, x, exported.state, latency_calls=200)
        write_manifest(out, Manifest(
            name=f"tiny_{cell}", version=1, cell=cell, layers=1, units=UNITS, features=["v"], targets=["v"],
            window=WINDOW, horizon=1, state=exported.state, normalization=Normalization([MEAN], [STD], [MEAN], [STD]),
            graphs={**exported.graphs, **int8_graphs}, opset=17, parity=exported.parity, metrics={"int8": figures},
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), versions={}))

    out = kept(tmp_path_factory, cell, make) / "1"
    return out, read_manifest(out).metrics["int8"]


def test_int8_files_and_graph_specs(quantized: tuple[Path, dict]) -> None:
    out, figures = quantized
    m = read_manifest(out)  # hashes of all four graphs verified
    for key, file in INT8_FILES.items():
        spec = m.graphs[f"{key}_int8"]
        assert spec.file == file and spec.sha256 == sha256_file(out / file)
        assert spec.ops == sorted(set(spec.ops)) and "DynamicQuantizeLinear" in spec.ops
    step = figures["graphs"]["step"]
    assert step["quantized_ops"]["MatMulInteger"] == 3  # input, recurrent and head MatMuls
    for key, g in figures["graphs"].items():  # the sizes are the files' (at 16 units int8 can even be larger)
        sizes = ((out / m.graphs[key].file).stat().st_size, (out / INT8_FILES[key]).stat().st_size)
        assert (g["float_bytes"], g["int8_bytes"]) == sizes and g["size_ratio"] == round(sizes[1] / sizes[0], 4)
    assert figures["latency_us"]["step_float"] > 0 and figures["latency_us"]["step_int8"] > 0
    assert figures["latency_us"]["calls"] == 200
    # The chunking note states the measured figures (it is always there: int8 depends on chunking).
    assert f"max abs diff {figures['int8_step_vs_sequence_max_abs_diff']:.2g}" in figures["notes"][-1]
    assert 0 < figures["max_abs_diff"] < 0.05  # normalised units; measured ~0.003 on these models


def test_what_got_quantized_per_cell(quantized: tuple[Path, dict]) -> None:
    out, figures = quantized
    seq = figures["graphs"]["sequence"]
    if read_manifest(out).cell == "lstm":
        assert seq["quantized_ops"].get("DynamicQuantizeLSTM") == 1  # the native LSTM op got int8 weights
        assert not seq["float_weight_ops"]
        assert seq["int8_bytes"] < seq["float_bytes"]
        assert not any("Loop" in n for n in figures["notes"])  # no note about Loop MatMuls left float
    else:
        # SimpleRNN: onnxruntime has no int8 RNN op, so the native RNN stays float; the figures say so.
        assert seq["float_weight_ops"] == {"RNN": 1} and not seq["float_weight_ops_in_loops"]
        assert seq["quantized_ops"] == {"MatMulInteger": 1}  # the Dense head only
        assert any("RNN stay float32" in n for n in figures["notes"])


def test_load_int8_and_stream_close_to_float(quantized: tuple[Path, dict]) -> None:
    out, _ = quantized
    raw = _series(120) * STD + MEAN  # [120, 1] raw units
    f32, i8 = runtime.load(out), runtime.load(out, precision="int8")
    assert i8.precision == "int8" and i8._step is not f32._step  # noqa: SLF001 (two different graphs)

    whole = f32.predict(raw[None])[0]  # [120, 1]
    for model in (f32, i8):
        stream, ys = model.stream(), []
        for chunk in np.split(raw, [1, 2, 7, 30, 31, 80]):  # single samples (step) and chunks (sequence)
            ys.append(stream.push(chunk))
        got = np.concatenate(ys)
        err = float(np.max(np.abs(got - whole)))
        if model is f32:
            assert err <= 1e-5 * STD  # float keeps eddy's exactness promise
        else:
            assert 1e-7 < err < 0.05 * STD  # int8 is really used, and close: within 5% of the target's std


def test_info_shows_int8_figures(quantized: tuple[Path, dict]) -> None:
    out, figures = quantized
    info = collect(out)
    assert {"step_int8", "sequence_int8"} <= set(info["graphs"])
    table = " ".join(format_table(info).split())  # unwrapped
    lat = figures["latency_us"]
    assert f"step latency (batch 1, median): float {lat['step_float']:.1f} us, int8 {lat['step_int8']:.1f} us" in table
    for key, g in figures["graphs"].items():
        assert f"{key} " in table and f"max abs diff {g['max_abs_diff']:.2g} normalised" in table
    assert "MatMulInteger" in table and all(f"note: {' '.join(n.split())}" in table for n in figures["notes"])


def test_missing_int8_graph_is_a_clear_load_error(quantized: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = quantized
    m = read_manifest(out)
    plain = tmp_path / "1"
    plain.mkdir()
    for key in ("step", "sequence"):
        (plain / m.graphs[key].file).write_bytes((out / m.graphs[key].file).read_bytes())
    write_manifest(plain, dataclasses.replace(m, graphs={k: m.graphs[k] for k in ("step", "sequence")}))
    with pytest.raises(ModelLoadError, match="has no int8 step graph"):
        runtime.load(plain, precision="int8")
