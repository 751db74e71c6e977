"""``evaluate.forward`` answers what ``model.predict`` answers, bit for bit, for every network eddy builds: the
trainer's scores, the choice of target transform and the export's window check all read it.

``model.predict``'s answers (it traces a graph and a tf.data pipeline per model) are made once and kept across runs
(tests/_fitted.py :func:`kept`, keyed by the trainer's, runtime's and CLI's files, this file and the library
versions); ``forward`` runs every time, on the same seeded model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from _fitted import kept

if TYPE_CHECKING:
    import keras

pytest.importorskip("tensorflow")


def _model(cell: str, layers: int, units: int) -> keras.Model:
    from eddy.trainer import model as model_mod
    from eddy.trainer.config import TrainConfig

    model_mod.set_seed(0)
    return model_mod.build_model(TrainConfig(cell=cell, layers=layers, units=units, window=10), 2, 1)


@pytest.mark.parametrize("cell, layers, units", [("simple_rnn", 1, 50), ("lstm", 2, 8), ("gru", 2, 8),
                                                 ("simple_rnn", 1, 500)])  # 500: the default's five merged networks
def test_forward_is_predict_bit_for_bit(tmp_path_factory: pytest.TempPathFactory, cell: str, layers: int,
                                        units: int) -> None:
    from eddy.trainer.evaluate import FORWARD_ROWS, forward

    x = np.random.default_rng(0).normal(size=(FORWARD_ROWS + 77, 10, 2)).astype(np.float32)  # two calls' worth

    def make(root: Path) -> None:
        model = _model(cell, layers, units)
        np.savez(root / "predict.npz", all=model.predict(x, verbose=0), few=model.predict(x[:3], verbose=0))

    predict = np.load(kept(tmp_path_factory, f"{cell} {layers} {units}", make)
                      / "predict.npz")
    model = _model(cell, layers, units)
    got = forward(model, x)
    assert got.dtype == np.float32 and got.shape == (FORWARD_ROWS + 77, 1)
    assert np.array_equal(got, predict["all"])
    assert np.array_equal(forward(model, x[:3]), predict["few"])  # fewer windows than a batch
