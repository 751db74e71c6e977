"""The native-op sequence graph (eddy.trainer.native_rnn): cell variants, and the tf2onnx fallback.

Untrained tiny models: :func:`export_model` runs the three parity checks
(whole windows vs ``model.predict``, random chunks and single steps vs the
Keras layers, all against Keras in float64) and raises if any is over its limit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

import keras  # noqa: E402

from eddy.trainer.onnx_export import export_model  # noqa: E402

L = keras.layers
VARIANTS = [
    pytest.param([L.GRU(6, reset_after=False)], L.Dense(1), "GRU", id="gru-reset-before"),
    pytest.param([L.GRU(6, use_bias=False, return_sequences=True), L.GRU(6)], L.Dense(2, use_bias=False), "GRU",
                 id="gru-no-bias-stacked"),
    pytest.param([L.SimpleRNN(6, activation="relu")], L.Dense(1, activation="tanh"), "RNN", id="relu-rnn-tanh-head"),
    pytest.param([L.LSTM(6, return_sequences=True), L.LSTM(6, return_sequences=True), L.LSTM(6)], L.Dense(1),
                 "LSTM", id="lstm-3-layers"),
    pytest.param([L.LSTM(6, recurrent_activation="relu", use_bias=False)], L.Dense(1), "LSTM", id="lstm-relu-gates"),
    pytest.param([L.SimpleRNN(6, activation="elu")], L.Dense(1), "Loop", id="elu-falls-back-to-tf2onnx"),
]


@pytest.mark.parametrize(("layers", "head", "op"), VARIANTS)
def test_variants_export_with_parity(tmp_path: Path, layers: list, head: object, op: str) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 2)), *layers, head])
    rng = np.random.default_rng(0)
    series = rng.normal(size=(60, 2)).astype(np.float32)  # [T, F]
    windows = np.stack([series[i : i + 5] for i in range(0, 50, 5)])  # [10, 5, F]
    result = export_model(model, tmp_path, windows, series)  # raises ParityError past a check's limit
    assert op in result.graphs["sequence"].ops
    assert ("Loop" in result.graphs["sequence"].ops) == (op == "Loop")
    assert all(0 <= c["error"] <= c["limit"] for c in result.parity["checks"].values())
