"""Training configuration: one dataclass that the CLI fills and the manifest records.

Importing this module is cheap (no tensorflow), so the CLI can validate flags
before paying for the tensorflow import.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["CELLS", "TrainConfig"]

CELLS = ("simple_rnn", "lstm", "gru")  # recurrent cell types the trainer builds and exports


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults reproduce the seed model.

    :meth:`validate` raises ``ValueError`` naming the bad field; the CLI turns
    that into a usage error.
    """

    # data
    data: Path | None = None  # CSV file; None = the bundled sunspots series
    synthetic: bool = False  # use the generated noisy sine instead of a CSV
    features: list[str] | None = None  # input columns; None = the single numeric column
    targets: list[str] | None = None  # predicted columns; None = the features (if one)
    window: int = 10  # input window length in samples (seed: 10)
    horizon: int = 1  # predict the target this many steps after the window's last sample
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train/val/test fractions, time-ordered
    # model
    cell: str = "simple_rnn"  # recurrent cell (seed: SimpleRNN)
    layers: int = 1  # stacked recurrent layers (seed: 1)
    units: int = 50  # units per recurrent layer (seed: 50)
    # optimisation
    epochs: int = 10  # maximum training epochs (seed: 10)
    batch_size: int = 32  # windows per gradient step (seed: 32)
    lr: float = 1e-3  # Adam learning rate (Keras default, as in the seed)
    clipnorm: float | None = 1.0  # clip each gradient's norm to this (exploding-gradient guard); None = off
    patience: int = 5  # early stopping: epochs without val-loss improvement before stopping
    seed: int | None = None  # random seed; None = draw one (it is recorded, so any run can be repeated)
    # output
    out: Path | None = None  # model directory; None = models/<name>
    name: str | None = None  # model name; None = --out's last component, else the data set's name

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        if self.data is not None and self.synthetic:
            raise ValueError("give either a CSV file or synthetic data, not both")
        for name in ("window", "horizon", "layers", "units", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ValueError(f"patience must be 0 or more, got {self.patience}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.clipnorm is not None and not (math.isfinite(self.clipnorm) and self.clipnorm > 0):
            raise ValueError(f"clipnorm must be a positive number, got {self.clipnorm}")
        if len(self.split) != 3 or any(not (math.isfinite(f) and f > 0) for f in self.split):
            raise ValueError(f"split needs three positive fractions (train, val, test), got {self.split}")
        if abs(sum(self.split) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {sum(self.split):g}")
        if self.seed is not None and not (0 <= self.seed < 2**32):
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed}")
        for name in ("features", "targets"):
            cols = getattr(self, name)
            if cols is not None and (not cols or len(set(cols)) != len(cols)):
                raise ValueError(f"{name} must be a non-empty list of distinct column names, got {cols}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the manifest's ``training`` section."""
        d = asdict(self)
        d["data"] = None if self.data is None else str(self.data)
        d["out"] = None if self.out is None else str(self.out)
        d["split"] = list(self.split)
        return d
