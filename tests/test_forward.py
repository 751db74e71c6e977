"""``evaluate.forward`` answers what ``model.predict`` answers, bit for bit, for every network eddy builds: the
trainer's scores, the choice of target transform and the export's window check all read it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")


@pytest.mark.parametrize("cell, layers, units", [("simple_rnn", 1, 50), ("lstm", 2, 8), ("gru", 2, 8),
                                                 ("simple_rnn", 1, 500)])  # 500: the default's five merged networks
def test_forward_is_predict_bit_for_bit(cell: str, layers: int, units: int) -> None:
    from eddy.trainer import model as model_mod
    from eddy.trainer.config import TrainConfig
    from eddy.trainer.evaluate import FORWARD_ROWS, forward

    model_mod.set_seed(0)
    model = model_mod.build_model(TrainConfig(cell=cell, layers=layers, units=units, window=10), 2, 1)
    x = np.random.default_rng(0).normal(size=(FORWARD_ROWS + 77, 10, 2)).astype(np.float32)  # two calls' worth
    got = forward(model, x)
    assert got.dtype == np.float32 and got.shape == (FORWARD_ROWS + 77, 1)
    assert np.array_equal(got, model.predict(x, verbose=0))
    assert np.array_equal(forward(model, x[:3]), model.predict(x[:3], verbose=0))  # fewer windows than a batch
