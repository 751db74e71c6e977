"""Gradient health: decide from the per-epoch gradient norms whether training exploded or vanished.

Numpy/stdlib only, so it is testable without tensorflow. The norms come from
:class:`eddy.trainer.model.GradientMonitor`: at the end of every epoch, the
gradient of the training loss (MSE plus any L2 penalty, dropout off) with
respect to every trainable weight, over a fixed sample of training windows,
before clipping. ``grad_norm`` is the global L2 norm over all weights;
``recurrent_grad_norm`` the L2 norm over the recurrent kernels only (the
weights through which gradients flow back in time), with one list per layer
in ``recurrent_grad_norm_per_layer``.

Rules (thresholds below):

- exploded: a non-finite loss or norm, or a global norm more than
  ``EXPLODE_FACTOR`` times the median of the earlier epochs' norms;
- vanished: a recurrent-kernel norm below ``VANISH_FLOOR`` in some epoch, or
  the last epoch's recurrent norm ``VANISH_DROP`` times (or more) below the
  largest earlier one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["EXPLODE_FACTOR", "VANISH_DROP", "VANISH_FLOOR", "GradientHealth", "assess"]

EXPLODE_FACTOR = 10.0  # a norm this many times the running median of earlier epochs is an explosion
VANISH_FLOOR = 1e-6  # a recurrent-kernel gradient norm below this has vanished
VANISH_DROP = 1e3  # ... or one that shrank by this factor from its largest earlier value


@dataclass
class GradientHealth:
    """The verdict, with one human-readable note per finding (or one saying what was checked)."""

    exploded: bool = False
    vanished: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``"exploded"``, ``"vanished"``, ``"exploded and vanished"`` or ``"healthy"``."""
        status = [name for name, flag in (("exploded", self.exploded), ("vanished", self.vanished)) if flag]
        return " and ".join(status) or "healthy"

    def to_dict(self) -> dict[str, object]:
        return {"exploded": self.exploded, "vanished": self.vanished, "notes": list(self.notes)}


def assess(
    loss: Sequence[float],
    grad_norm: Sequence[float],
    recurrent_per_layer: Sequence[Sequence[float]],
) -> GradientHealth:
    """Judge one run's history; epochs are numbered from 1 in the notes.

    ``recurrent_per_layer`` is ``[layer][epoch]``.
    """
    health = GradientHealth()
    for epoch, value in enumerate(loss, start=1):
        if not math.isfinite(value):
            health.exploded = True
            health.notes.append(f"the loss became non-finite in epoch {epoch}")
            break
    for epoch, norm in enumerate(grad_norm, start=1):
        if not math.isfinite(norm):
            health.exploded = True
            health.notes.append(f"the gradient norm became non-finite in epoch {epoch}")
            break
        earlier = [n for n in grad_norm[: epoch - 1] if math.isfinite(n)]
        if len(earlier) >= 2:
            median = statistics.median(earlier)
            if median > 0 and norm > EXPLODE_FACTOR * median:
                health.exploded = True
                health.notes.append(
                    f"gradient norm {norm:.3g} in epoch {epoch} is {norm / median:.0f}x the median "
                    f"of the earlier epochs ({median:.3g}); try a lower --lr or --clipnorm"
                )
                break
    for layer, norms in enumerate(recurrent_per_layer):
        finite = [n for n in norms if math.isfinite(n)]
        if not finite:
            continue
        low = min(finite)
        if low < VANISH_FLOOR:
            epoch = norms.index(low) + 1
            health.vanished = True
            health.notes.append(
                f"layer {layer}'s recurrent-kernel gradient norm fell to {low:.3g} in epoch {epoch} "
                f"(below {VANISH_FLOOR:g}); try an lstm or gru cell or a shorter --window"
            )
        elif len(finite) >= 2 and max(finite[:-1]) >= VANISH_DROP * finite[-1]:
            health.vanished = True
            health.notes.append(
                f"layer {layer}'s recurrent-kernel gradient norm shrank from {max(finite[:-1]):.3g} to "
                f"{finite[-1]:.3g} (by {VANISH_DROP:g}x or more)"
            )
    if not (health.exploded or health.vanished):
        health.notes.append(
            f"finite norms, no {EXPLODE_FACTOR:g}x jump over the running median, recurrent norms above {VANISH_FLOOR:g}"
        )
    return health
