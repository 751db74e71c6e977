"""Training configuration: one dataclass that the CLI fills and the manifest records.

Importing this module is cheap (no tensorflow), so the CLI can validate flags
before paying for the tensorflow import.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eddy.runtime.core.calibration import LEVELS, MAX_LEVELS
from eddy.runtime.core.layout import (
    CELLS,  # the cell types a manifest may name; the trainer builds them all
    GRAPH_FORMATS,  # graph file formats: onnx, and ort for onnxruntime's mobile builds
)
from eddy.runtime.core.layout import QUANTIZED_PRECISIONS as PRECISIONS  # extra graph precisions --quantize adds

from .transform import AUTO, KINDS, SEASONAL_KINDS

__all__ = ["BASELINES", "BLENDS", "CELLS", "FILLS", "GRAPH_FORMATS", "PRECISIONS", "PRESETS", "TARGET_TRANSFORMS", "TRAININGS",
           "TrainConfig"]

FILLS = ("ffill", "interpolate", "drop")  # ways to handle missing values in the used CSV columns
TARGET_TRANSFORMS = (AUTO, *KINDS)  # --target-transform (trainer/transform.py; SEASONAL_KINDS need --season)
TRAININGS = ("windows", "tbptt")  # --training: the seed's windows, or long streams with the state carried
# --preset NAME -> the fields it sets (flags given explicitly win). default: the dataclass defaults below;
# seed: the seed article's network as it was, SimpleRNN(50), window 10, Dense(1), MSE, Adam, 10 epochs (patience 5),
# batch 32, one network (trained with the state carried, tbptt, and the target transform auto chooses, like the default)
PRESETS: dict[str, dict[str, Any]] = {"default": {}, "seed": {"units": 50, "members": 1, "epochs": 10, "patience": 5}}
BLENDS = ("arima", "none")  # --blend: an ARIMA filter in the graph, weighted on the validation rows (trainer/blend.py)
BASELINES = ("naive", "classical")  # --baselines: persistence/seasonal naive only, or also AutoETS/AutoARIMA/AutoTheta


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults are the seed model's architecture (SimpleRNN, Dense(1),
    MSE, Adam, batch 32, window 10) with 100 units instead of 50, trained with the state carried between batches
    (``training="tbptt"``, so that the served stream is what was trained) for up to 100 epochs with early stopping
    on the validation part (patience 15), five of them from consecutive seeds averaged inside one graph
    (``members``), the target transform chosen by one network of ``auto_units`` (50) per candidate;
    :meth:`for_preset` ``("seed")`` is one SimpleRNN(50) trained for the seed's 10 epochs (patience 5), and with
    ``training="windows"`` the seed's recipe exactly.

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
    fill: str | None = None  # missing values: None = error, "ffill", "interpolate" or "drop" the row
    season: int | None = None  # seasonal-naive baseline period in samples; None = no seasonal baseline
    target_transform: str = "auto"  # level, delta, log_delta, seasonal_delta/double_delta (need season); auto: best val RMSE
    baselines: str = "classical"  # naive: persistence (+ seasonal naive); classical: also AutoETS, AutoARIMA, AutoTheta
    blend: str = "none"  # none: the networks alone; arima: blended with an in-graph ARIMA, weighted on the validation rows
    # model
    cell: str = "simple_rnn"  # recurrent cell (seed: SimpleRNN)
    layers: int = 1  # stacked recurrent layers (seed: 1)
    units: int = 100  # units per recurrent layer of each member (seed: 50)
    auto_units: int = 50  # units of the one network per candidate that --target-transform auto compares (at most units)
    members: int = 5  # networks from seeds seed, seed+1, ... averaged inside one exported graph (seed: 1)
    dropout: float = 0.0  # dropout on each recurrent layer's inputs, training only
    recurrent_dropout: float = 0.0  # dropout on each recurrent layer's state, training only
    l2: float = 0.0  # L2 penalty on every kernel (input, recurrent, Dense); 0 = off
    # optimisation
    training: str = "tbptt"  # tbptt: parallel streams, state carried between chunks; windows: the seed's many-to-one
    epochs: int = 100  # maximum training epochs; early stopping keeps the best validation epoch (seed: 10)
    batch_size: int = 32  # windows per gradient step (seed: 32)
    lr: float = 1e-3  # Adam learning rate (Keras default, as in the seed)
    clipnorm: float | None = 1.0  # clip each gradient's norm to this (exploding-gradient guard); None = off
    clipvalue: float | None = None  # clip each gradient element to [-v, v] instead; excludes clipnorm
    patience: int = 15  # early stopping: epochs without val-loss improvement before stopping (seed: 5)
    reduce_lr_patience: int = 0  # halve the lr after this many epochs without val-loss improvement; 0 = off
    seed: int | None = None  # random seed; None = draw one (it is recorded, so any run can be repeated)
    preset: str = "default"  # the recipe the fields above came from (PRESETS), recorded in the manifest
    # output
    out: Path | None = None  # model directory; None = models/<name>
    name: str | None = None  # model name; None = --out's last component, else the data set's name
    quantize: str | None = None  # also write graphs of this precision ("int8"); None = float32 only
    formats: tuple[str, ...] = ("onnx",)  # graph files: "onnx" always; "ort" adds onnxruntime-format twins (.ort)
    intervals: tuple[float, ...] = LEVELS  # prediction-interval levels calibrated on the validation part

    @classmethod
    def for_preset(cls, preset: str, **fields: Any) -> TrainConfig:
        """The config of ``preset`` (:data:`PRESETS`) with ``fields`` on top; ``ValueError`` for an unknown preset."""
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        return cls(**{**PRESETS[preset], **fields, "preset": preset})

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        if self.data is not None and self.synthetic:
            raise ValueError("give either a CSV file or synthetic data, not both")
        for name in ("window", "horizon", "layers", "units", "auto_units", "members", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("patience", "reduce_lr_patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("dropout", "recurrent_dropout"):
            rate = getattr(self, name)
            if not (math.isfinite(rate) and 0.0 <= rate < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            raise ValueError(f"l2 must be 0 or a positive number, got {self.l2}")
        if self.fill is not None and self.fill not in FILLS:
            raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {self.fill!r}")
        if self.target_transform not in TARGET_TRANSFORMS:
            raise ValueError(f"target_transform must be one of {', '.join(TARGET_TRANSFORMS)}, got {self.target_transform!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.baselines not in BASELINES:
            raise ValueError(f"baselines must be one of {', '.join(BASELINES)}, got {self.baselines!r}")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {self.blend!r}")
        if self.training not in TRAININGS:
            raise ValueError(f"training must be one of {', '.join(TRAININGS)}, got {self.training!r}")
        if self.season is not None and self.season < 1:
            raise ValueError(f"season must be at least 1, got {self.season}")
        if self.target_transform in SEASONAL_KINDS and (self.season is None or self.season < self.horizon):
            raise ValueError(f"target_transform {self.target_transform} needs --season N of at least the horizon "
                             f"({self.horizon})")
        if self.quantize is not None and self.quantize not in PRECISIONS:
            raise ValueError(f"quantize must be one of {', '.join(PRECISIONS)}, got {self.quantize!r}")
        if "onnx" not in self.formats or any(f not in GRAPH_FORMATS for f in self.formats):
            raise ValueError(f"formats must include onnx and be among {', '.join(GRAPH_FORMATS)}, got {list(self.formats)}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        for name in ("clipnorm", "clipvalue"):
            clip = getattr(self, name)
            if clip is not None and not (math.isfinite(clip) and clip > 0):
                raise ValueError(f"{name} must be a positive number, got {clip}")
        if self.clipnorm is not None and self.clipvalue is not None:
            raise ValueError("give either clipnorm or clipvalue, not both (Keras applies one kind of clipping)")
        if len(self.split) != 3 or any(not (math.isfinite(f) and f > 0) for f in self.split):
            raise ValueError(f"split needs three positive fractions (train, val, test), got {self.split}")
        if abs(sum(self.split) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {sum(self.split):g}")
        if self.seed is not None and not (0 <= self.seed < 2**32):
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed}")
        levels = list(self.intervals)
        if not 1 <= len(levels) <= MAX_LEVELS or any(not (math.isfinite(v) and 0 < v < 1) for v in levels) \
                or len(set(levels)) != len(levels):
            raise ValueError(f"intervals must be 1-{MAX_LEVELS} distinct levels in (0, 1), e.g. 0.8 0.95, got {levels}")
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
        d["formats"] = list(self.formats)
        d["intervals"] = list(self.intervals)
        return d
