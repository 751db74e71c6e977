"""Gradient-health verdicts from per-epoch norms (no tensorflow needed)."""

from __future__ import annotations

import math

from eddy.trainer.gradients import assess


def test_healthy() -> None:
    h = assess([1.0, 0.5, 0.4], [1.0, 0.8, 0.9], [[0.3, 0.2, 0.25]])
    assert (h.exploded, h.vanished) == (False, False) and h.verdict == "healthy" and h.notes[0].startswith("finite norms")


def test_non_finite_loss_or_norm_is_an_explosion() -> None:
    h = assess([1.0, math.nan], [1.0, 2.0], [[0.1, 0.1]])
    assert h.exploded and h.notes == ["the loss became non-finite in epoch 2"] and h.verdict == "exploded"
    h = assess([1.0, 1.0], [1.0, math.inf], [[0.1, 0.1]])
    assert h.exploded and "gradient norm became non-finite in epoch 2" in h.notes[0]


def test_jump_over_ten_times_the_running_median() -> None:
    h = assess([1.0] * 4, [1.0, 1.2, 0.9, 13.0], [[0.1] * 4])
    assert h.exploded and "epoch 4 is 13x the median" in h.notes[0]
    assert not assess([1.0] * 3, [1.0, 9.0, 9.5], [[0.1] * 3]).exploded  # needs two earlier epochs; 9.5 < 10x 5


def test_vanishing_floor_and_collapse_per_layer() -> None:
    h = assess([1.0] * 3, [1.0] * 3, [[0.1, 0.1, 0.1], [1e-3, 1e-7, 1e-7]])
    assert h.vanished and not h.exploded and h.notes[0].startswith("layer 1's recurrent-kernel")
    h = assess([1.0] * 3, [1.0] * 3, [[0.5, 0.01, 4e-4]])
    assert h.vanished and "shrank from 0.5 to 0.0004" in h.notes[0]
