"""Windows of a :class:`~eddy.trainer.series.Series`: cut, split in time order, normalised (numpy only).

A :class:`Dataset` cuts a series into windows of ``window`` samples, each
labelled with the target ``horizon`` steps after its last sample, and splits
the windows in time order by the row of their label: train, validation,
test. Normalisation statistics come from the rows of the training part only.

The network works in *model space* (:mod:`eddy.trainer.transform`): with the
``level`` transform its inputs and labels are the raw columns; with ``delta``
kinds they are changes since the previous sample. Statistics and windows are
taken in model space; :meth:`Dataset.raw_predictions` maps outputs back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eddy.runtime.core.manifest import Normalization

from .errors import DataError
from .series import Series
from .transform import Transform

__all__ = ["Dataset", "make_dataset", "sliding_windows"]


@dataclass(frozen=True)
class Dataset:
    """Windows of a :class:`Series`, split in time order and normalised."""

    series: Series
    window: int  # samples per input window
    horizon: int  # steps from a window's last sample to its target
    rows: dict[str, tuple[int, int]]  # split -> [start, end) rows holding its targets
    normalization: Normalization  # statistics of the training rows
    x_train: np.ndarray  # [n_train, W, F] float32, normalised
    y_train: np.ndarray  # [n_train, O] float32, normalised
    x_val: np.ndarray  # [n_val, W, F]
    y_val: np.ndarray  # [n_val, O]
    x_test: np.ndarray  # [n_test, W, F]
    y_test: np.ndarray  # [n_test, O]
    y_test_raw: np.ndarray  # [n_test, O] float64, raw units
    last_test_raw: np.ndarray  # [n_test, O] raw target at each test window's last sample (persistence)
    test_rows: np.ndarray  # [n_test] int, the series row each test window predicts
    transform: Transform | None = None  # model space; None = level
    val_rows: np.ndarray | None = None  # [n_val] int, the series row each validation window predicts
    row_labels: np.ndarray | None = None  # [N, O] float32 normalised label of every row (row t: target at t + horizon;
    # the last ``horizon`` rows have none and hold 0): what long-sequence training and streamed scoring read

    @property
    def kind(self) -> str:
        """The target transform's kind (``level`` when none was given)."""
        return self.transform.kind if self.transform is not None else "level"

    def seasonal_test_raw(self, season: int) -> np.ndarray:
        """Seasonal-naive forecasts for the test windows: the target ``season`` rows earlier, ``[n_test, O]``."""
        source = self.test_rows - season  # [n_test]
        if season < self.horizon or source.min(initial=0) < 0:
            where = self.series.path or self.series.name
            raise DataError(
                f"{where}: --season {season} must be at least the horizon ({self.horizon}) and at most "
                f"{int(self.test_rows.min())} rows (the first test row)"
            )
        return self.series.outputs[source]

    def normalised_inputs(self) -> np.ndarray:
        """The whole series' model-space inputs in normalised units, ``[N, F]`` float32 (what the core graph reads
        when the series is streamed from its first row)."""
        n = self.normalization
        return ((self._model_inputs() - n.input_mean) / n.input_std).astype(np.float32)

    def _model_inputs(self) -> np.ndarray:
        return self.transform.inputs(self.series.inputs) if self.transform is not None else self.series.inputs

    def raw_predictions(self, z: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Normalised model outputs ``z [n, O]`` for the windows predicting series ``rows`` ``[n]``, in raw units
        (float64): de-normalised, then the transform undone from each window's last input row."""
        y = self.denormalise_targets(z)  # [n, O] model space
        if self.transform is None:
            return y
        return self.transform.predictions(self.series.inputs, y, rows=np.asarray(rows) - self.horizon)

    def denormalise_targets(self, y: np.ndarray) -> np.ndarray:
        """Normalised ``[..., O]`` predictions to raw units (float64)."""
        n = self.normalization
        return np.asarray(y, dtype=np.float64) * n.target_std + n.target_mean


def sliding_windows(x: np.ndarray, window: int) -> np.ndarray:
    """All windows of ``window`` consecutive rows: ``[N, F]`` -> ``[N - window + 1, window, F]`` (a copy)."""
    return np.lib.stride_tricks.sliding_window_view(x, window, axis=0).transpose(0, 2, 1).copy()


def make_dataset(
    series: Series,
    window: int = 10,
    horizon: int = 1,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    transform: Transform | None = None,
    normalization: Normalization | None = None,
) -> Dataset:
    """Cut ``series`` into labelled windows, split them in time order and normalise.

    With a ``transform`` the windows and labels are in its model space
    (``delta``: changes since the previous sample, the first row's change 0).
    A given ``normalization`` is used as it is (``eddy export``: the model's
    own scaling) instead of the training rows' statistics.

    Window ``i`` covers rows ``i .. i+window-1`` and is labelled with the
    target at row ``t = i + window - 1 + horizon``; it belongs to the split
    whose rows contain ``t``. So no label is ever seen as an earlier split's
    label, while validation and test windows may look back into earlier rows.
    """
    where = series.path or series.name
    n = len(series)
    n_train = int(round(n * split[0]))
    n_val = int(round(n * split[1]))
    rows = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
    first_label = window - 1 + horizon  # row of the first window's target
    if n_train <= first_label or n_val < 1 or rows["test"][1] - rows["test"][0] < 1:
        raise DataError(
            f"{where}: {n} rows are too few for window {window}, horizon {horizon} and split "
            f"{'/'.join(f'{f:g}' for f in split)}: the training part ({n_train} rows) needs more than "
            f"{first_label} and the validation and test parts at least 1 row each"
        )

    if transform is not None:
        reason = transform.check(series.inputs, where)
        if reason:
            raise DataError(reason)
        inputs = transform.inputs(series.inputs)  # [N, F] model space
        labels = np.concatenate([transform.labels(series.inputs, series.outputs, horizon),
                                 np.zeros((horizon, len(series.targets)))])  # [N, O]: row t labels t + horizon
    else:
        inputs = series.inputs
        labels = np.concatenate([series.outputs[horizon:], np.zeros((horizon, len(series.targets)))])
    train_in = inputs[:n_train]
    if transform is None or not transform.is_delta:
        train_out = series.outputs[:n_train]  # the training rows' targets (as the seed computed them)
    else:
        train_out = labels[: n_train - horizon]  # the changes whose target row is a training row
    for cols, values in ((series.features, train_in), (series.targets, train_out)) if normalization is None else ():
        for j, col in enumerate(cols):
            if float(np.std(values[:, j])) == 0.0:
                raise DataError(f"{where}: column {col!r} is constant in the training part (std 0)")
    norm = normalization or Normalization(
        input_mean=[float(v) for v in train_in.mean(axis=0)],
        input_std=[float(v) for v in train_in.std(axis=0)],
        target_mean=[float(v) for v in train_out.mean(axis=0)],
        target_std=[float(v) for v in train_out.std(axis=0)],
    )

    x = (inputs - norm.input_mean) / norm.input_std  # [N, F]
    y = (labels - norm.target_mean) / norm.target_std  # [N, O], row t: the label of a window ending at t
    xw = sliding_windows(x, window)[: n - first_label]  # [n_windows, W, F]
    label_rows = np.arange(xw.shape[0]) + first_label  # [n_windows]

    def part(name: str) -> np.ndarray:
        start, end = rows[name]
        return (label_rows >= start) & (label_rows < end)

    tr, va, te = part("train"), part("val"), part("test")
    f32 = np.float32
    return Dataset(
        series=series,
        window=window,
        horizon=horizon,
        rows=rows,
        normalization=norm,
        x_train=xw[tr].astype(f32),
        y_train=y[label_rows[tr] - horizon].astype(f32),
        x_val=xw[va].astype(f32),
        y_val=y[label_rows[va] - horizon].astype(f32),
        x_test=xw[te].astype(f32),
        y_test=y[label_rows[te] - horizon].astype(f32),
        y_test_raw=series.outputs[label_rows[te]],
        last_test_raw=series.outputs[label_rows[te] - horizon],
        test_rows=label_rows[te],
        transform=transform,
        val_rows=label_rows[va],
        row_labels=y.astype(f32),
    )
