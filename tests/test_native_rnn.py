"""The native-op sequence graph (eddy.trainer.native_rnn): cell variants, and the tf2onnx fallback.

Untrained tiny models: :func:`export_model` runs the three parity checks
(whole windows vs ``model.predict``, random chunks and single steps vs the
Keras layers, all against Keras in float64) and raises if any is over its limit.
Each export's graphs and figures are made once and kept across runs
(tests/_fitted.py :func:`kept`, keyed by the trainer's, runtime's and CLI's
files, this file and the library versions); the graphs' ops are read from the
kept files.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest
from _fitted import kept

pytestmark = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("tensorflow", "tf2onnx")),
                                reason="the training extra (tensorflow, tf2onnx) is not installed")

# A variant's recurrent layers and head from keras.layers (L): built only when it is exported.
VARIANTS = [
    pytest.param(lambda L: ([L.GRU(6, reset_after=False)], L.Dense(1)), "GRU", id="gru-reset-before"),
    pytest.param(lambda L: ([L.GRU(6, use_bias=False, return_sequences=True), L.GRU(6)], L.Dense(2, use_bias=False)),
                 "GRU", id="gru-no-bias-stacked"),
    pytest.param(lambda L: ([L.SimpleRNN(6, activation="relu")], L.Dense(1, activation="tanh")), "RNN",
                 id="relu-rnn-tanh-head"),
    pytest.param(lambda L: ([L.LSTM(6, return_sequences=True), L.LSTM(6, return_sequences=True), L.LSTM(6)],
                            L.Dense(1)), "LSTM", id="lstm-3-layers"),
    pytest.param(lambda L: ([L.LSTM(6, recurrent_activation="relu", use_bias=False)], L.Dense(1)), "LSTM",
                 id="lstm-relu-gates"),
    pytest.param(lambda L: ([L.SimpleRNN(6, activation="elu")], L.Dense(1)), "Loop", id="elu-falls-back-to-tf2onnx"),
]


@pytest.mark.parametrize(("variant", "op"), VARIANTS)
def test_variants_export_with_parity(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                                     variant: Callable[[ModuleType], tuple[list, object]], op: str) -> None:
    def make(root: Path) -> None:
        import keras

        from eddy.trainer.onnx_export import export_model

        keras.utils.set_random_seed(0)
        layers, head = variant(keras.layers)
        model = keras.Sequential([keras.Input((5, 2)), *layers, head])
        rng = np.random.default_rng(0)
        series = rng.normal(size=(60, 2)).astype(np.float32)  # [T, F]
        windows = np.stack([series[i : i + 5] for i in range(0, 50, 5)])  # [10, 5, F]
        result = export_model(model, root, windows, series)  # raises ParityError past a check's limit
        (root / "result.json").write_text(json.dumps({"ops": result.graphs["sequence"].ops, "parity": result.parity}))

    root = kept(tmp_path_factory, request.node.callspec.id, make)
    result = json.loads((root / "result.json").read_text())
    ops = sorted({node.op_type for node in onnx.load(str(root / "sequence.onnx")).graph.node})
    assert set(result["ops"]) >= set(ops) and op in ops  # the ops the export recorded hold the graph's own
    assert ("Loop" in ops) == (op == "Loop")
    assert all(0 <= c["error"] <= c["limit"] for c in result["parity"]["checks"].values())
