"""An average of networks from different seeds is one exported network (``--members N``): a stack of N x U units
with block-diagonal weights whose head averages the members; its graphs stream exactly like any other model's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _fitted import fit

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_the_merged_network_outputs_the_members_average(cell: str) -> None:
    from eddy.trainer import model as model_mod
    from eddy.trainer.config import TrainConfig
    from eddy.trainer.ensemble import merge_weights
    from eddy.trainer.evaluate import forward

    config = TrainConfig(cell=cell, layers=2, units=4, window=6)
    members = []
    for seed in range(3):
        model_mod.set_seed(seed)
        members.append(model_mod.build_model(config, 2, 3))
    merged = model_mod.build_model(dataclasses.replace(config, units=12), 2, 3)
    merged.set_weights(merge_weights([m.get_weights() for m in members], config.layers))
    x = np.random.default_rng(0).normal(size=(5, 6, 2)).astype(np.float32)  # [B, W, F]
    want = np.mean([forward(m, x) for m in members], axis=0)  # [B, O]
    np.testing.assert_allclose(forward(merged, x), want, rtol=0, atol=1e-6)


def test_trained_members_export_as_one_streaming_model(tmp_path_factory: pytest.TempPathFactory) -> None:
    import eddy.runtime as runtime

    t = np.arange(120)
    v = 20 + 5 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(1).normal(0, 0.5, 120)
    run = fit(tmp_path_factory, "v\n" + "".join(f"{x:.4f}\n" for x in v),  # a kept run: what it printed and wrote
              ["--members", "2", "--units", "3", "--epochs", "1", "--window", "6", "--target-transform", "delta",
               "--baselines", "naive", "--seed", "7"])
    out = run.out
    assert "member 2 of 2 (seed 8, target transform delta):" in out and "average of 2 members: validation RMSE" in out
    model = runtime.load(run.version_dir.parent)
    m = model.manifest
    assert (m.units, m.layer_units) == (6, [6])
    assert [(s.name, s.shape) for s in m.state] == [("h0", [6]), ("x_last", [1]), ("x_seen", [1])]
    ensemble = m.metrics["ensemble"]
    assert (ensemble["members"], ensemble["member_units"]) == (2, 3)
    assert len(ensemble["validation_rmse"]["members"]) == 2
    # What a stream returns is the streamed score the manifest records, in any chunking.
    x = v[:, None].astype(np.float32)  # [T, 1]
    one = model.stream().push(x)  # [T, 1]
    s = model.stream()
    chunked = np.concatenate([s.push(x[i : i + 7]) for i in range(0, len(x), 7)])
    np.testing.assert_allclose(chunked, one, rtol=1e-5, atol=1e-5 * float(np.abs(one).max()))
    rows = np.arange(*m.training["split_rows"]["test"])
    rmse = float(np.sqrt(np.mean((one[rows - 1, 0].astype(np.float64) - v[rows]) ** 2)))
    assert rmse == pytest.approx(m.metrics["streamed"]["rmse"], rel=1e-5)


def test_the_seed_preset_is_one_network_and_flags_given_win() -> None:
    from eddy.trainer.config import TrainConfig

    default, seed = TrainConfig(), TrainConfig.for_preset("seed")
    assert (default.members, default.units, default.auto_units, default.epochs, default.patience, default.preset) \
        == (5, 100, 50, 100, 15, "default")
    assert (seed.members, seed.units, seed.window, seed.epochs, seed.patience, seed.batch_size, seed.cell, seed.layers,
            seed.preset) == (1, 50, 10, 10, 5, 32, "simple_rnn", 1, "seed")
    assert TrainConfig.for_preset("seed", members=3).members == 3
    with pytest.raises(ValueError, match="preset must be one of default, seed"):
        TrainConfig.for_preset("fast")


def test_auto_chooses_the_transform_with_networks_of_auto_units_then_trains_the_members(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    import eddy.runtime as runtime

    t = np.arange(120)
    v = 20 + 5 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(1).normal(0, 0.5, 120)
    run = fit(tmp_path_factory, "v\n" + "".join(f"{x:.4f}\n" for x in v),
              ["--members", "2", "--units", "4", "--auto-units", "3", "--epochs", "1", "--window", "6", "--season", "12",
               "--baselines", "naive", "--seed", "7"])
    m = runtime.load(run.version_dir.parent).manifest
    choice = m.metrics["target_transform"]
    kinds = ["level", "delta", "log_delta", "seasonal_delta"]
    assert (list(choice["validation_rmse"]), choice["units"]) == (kinds, 3)
    assert choice["kind"] == min(kinds, key=choice["validation_rmse"].get)
    for kind in kinds:
        assert f"target transform {kind} (one network of 3 units):" in run.out
    assert f"member 1 of 2 (seed 7, 4 units, target transform {choice['kind']}):" in run.out
    assert f"member 2 of 2 (seed 8, target transform {choice['kind']}):" in run.out
    assert (m.units, m.metrics["ensemble"]["member_units"]) == (8, 4)
