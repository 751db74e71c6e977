"""Training data: load a series, cut it into windows, split it, normalise it.

Numpy only (no tensorflow), so bad data fails fast, before the slow imports.

A :class:`Series` is a time-ordered table of raw input and target columns. A
:class:`Dataset` cuts it into windows of ``window`` samples, each labelled with
the target ``horizon`` steps after its last sample, and splits the windows in
time order by the row of their label: train, validation, test. Normalisation
statistics come from the rows of the training part only.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.manifest import Normalization

from .errors import DataError

__all__ = [
    "BUNDLED_CSV",
    "Dataset",
    "Series",
    "bundled_series",
    "load_csv",
    "make_dataset",
    "sliding_windows",
    "synthetic_series",
]

# Yearly mean sunspot numbers 1700-2008 (NOAA, public domain; as shipped by
# statsmodels' `sunspots` data set). Columns: year, sunspots.
BUNDLED_CSV = Path(__file__).parent / "data" / "sunspots.csv"
_BUNDLED_COLUMN = "sunspots"


@dataclass(frozen=True)
class Series:
    """A time-ordered series: raw input and target columns over the same rows."""

    name: str  # data set name, e.g. "sunspots"; the default model name
    source: str  # "bundled", "csv" or "synthetic"
    path: str | None  # the CSV file, if any
    features: list[str]  # input column names, F of them
    targets: list[str]  # target column names, O of them
    inputs: np.ndarray  # [N, F] float64, raw units
    outputs: np.ndarray  # [N, O] float64, raw units

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


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

    def normalised_inputs(self) -> np.ndarray:
        """The whole series' inputs in normalised units, ``[N, F]`` float32."""
        n = self.normalization
        return ((self.series.inputs - n.input_mean) / n.input_std).astype(np.float32)

    def denormalise_targets(self, y: np.ndarray) -> np.ndarray:
        """Normalised ``[..., O]`` predictions to raw units (float64)."""
        n = self.normalization
        return np.asarray(y, dtype=np.float64) * n.target_std + n.target_mean


def load_csv(
    path: str | Path,
    features: list[str] | None = None,
    targets: list[str] | None = None,
    *,
    name: str | None = None,
    source: str = "csv",
) -> Series:
    """Read a CSV file with a header row into a :class:`Series`.

    ``features`` default to the file's single numeric column (an error if
    there are several); ``targets`` default to the features when there is one
    feature. Only the columns in use must be numeric. Raises
    :class:`~trainer.errors.DataError` with one line naming the file, the line
    and the problem.
    """
    path = Path(path)
    header, rows = _read_rows(path)
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    features, targets = _choose_columns(path, header, rows, features, targets)
    values = {col: _numeric_column(path, header, rows, col) for col in dict.fromkeys(features + targets)}
    return Series(
        name=name or path.stem,
        source=source,
        path=str(path),
        features=list(features),
        targets=list(targets),
        inputs=np.stack([values[c] for c in features], axis=1),  # [N, F]
        outputs=np.stack([values[c] for c in targets], axis=1),  # [N, O]
    )


def bundled_series() -> Series:
    """The bundled yearly sunspot numbers (1700-2008): one feature, predicting itself."""
    return load_csv(BUNDLED_CSV, [_BUNDLED_COLUMN], [_BUNDLED_COLUMN], name="sunspots", source="bundled")


def synthetic_series(length: int = 1000, seed: int = 0) -> Series:
    """A noisy sine (period 50 samples, noise std 0.1), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    period = 50.0  # samples per cycle
    noise = 0.1  # std of the added Gaussian noise, amplitude 1
    value = (np.sin(2 * np.pi * t / period) + noise * rng.standard_normal(length))[:, None]  # [N, 1]
    return Series("synthetic", "synthetic", None, ["value"], ["value"], value, value.copy())


def sliding_windows(x: np.ndarray, window: int) -> np.ndarray:
    """All windows of ``window`` consecutive rows: ``[N, F]`` -> ``[N - window + 1, window, F]`` (a copy)."""
    return np.lib.stride_tricks.sliding_window_view(x, window, axis=0).transpose(0, 2, 1).copy()


def make_dataset(
    series: Series,
    window: int = 10,
    horizon: int = 1,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Dataset:
    """Cut ``series`` into labelled windows, split them in time order and normalise.

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

    train_in = series.inputs[:n_train]
    train_out = series.outputs[:n_train]
    for cols, values in ((series.features, train_in), (series.targets, train_out)):
        for j, col in enumerate(cols):
            if float(np.std(values[:, j])) == 0.0:
                raise DataError(f"{where}: column {col!r} is constant in the training part (std 0)")
    norm = Normalization(
        input_mean=[float(v) for v in train_in.mean(axis=0)],
        input_std=[float(v) for v in train_in.std(axis=0)],
        target_mean=[float(v) for v in train_out.mean(axis=0)],
        target_std=[float(v) for v in train_out.std(axis=0)],
    )

    x = (series.inputs - norm.input_mean) / norm.input_std  # [N, F]
    y = (series.outputs - norm.target_mean) / norm.target_std  # [N, O]
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
        y_train=y[label_rows[tr]].astype(f32),
        x_val=xw[va].astype(f32),
        y_val=y[label_rows[va]].astype(f32),
        x_test=xw[te].astype(f32),
        y_test=y[label_rows[te]].astype(f32),
        y_test_raw=series.outputs[label_rows[te]],
        last_test_raw=series.outputs[label_rows[te] - horizon],
    )


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, fields)`` of every non-blank row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a CSV file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV: {e}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None
    if not header or not any(c.strip() for c in header):
        raise DataError(f"{path}: empty file (expected a header row of column names)")
    header = [c.strip() for c in header]
    if any(not c for c in header):
        raise DataError(f"{path}: line 1: empty column name in the header")
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise DataError(f"{path}: line 1: duplicate column name(s) {', '.join(map(repr, dupes))}")
    for line, r in rows:
        if len(r) != len(header):
            raise DataError(f"{path}: line {line}: {len(r)} fields, but the header has {len(header)}")
    return header, rows


def _choose_columns(
    path: Path,
    header: list[str],
    rows: list[tuple[int, list[str]]],
    features: list[str] | None,
    targets: list[str] | None,
) -> tuple[list[str], list[str]]:
    for col in (features or []) + (targets or []):
        if col not in header:
            raise DataError(f"{path}: unknown column {col!r} (columns: {', '.join(header)})")
    if features is None and targets is not None:
        features = list(targets)  # predict the targets from their own past
    if features is None:
        numeric = [c for i, c in enumerate(header) if all(_is_number(r[i]) for _, r in rows)]
        if len(numeric) != 1:
            found = f"numeric columns {', '.join(numeric)}" if numeric else "no numeric column"
            raise DataError(f"{path}: found {found}; choose with --features and --target")
        features = numeric
    if targets is None:
        if len(features) != 1:
            raise DataError(f"{path}: {len(features)} feature columns; choose the predicted one(s) with --target")
        targets = list(features)
    return features, targets


def _numeric_column(path: Path, header: list[str], rows: list[tuple[int, list[str]]], col: str) -> np.ndarray:
    j = header.index(col)
    out = np.empty(len(rows), dtype=np.float64)
    for k, (line, r) in enumerate(rows):
        cell = r[j].strip()
        if not cell:
            raise DataError(f"{path}: line {line}: column {col!r} is empty (missing value)")
        try:
            v = float(cell)
        except ValueError:
            raise DataError(f"{path}: line {line}: column {col!r}: {cell!r} is not a number") from None
        if not math.isfinite(v):
            raise DataError(f"{path}: line {line}: column {col!r}: {cell!r} is not a finite number")
        out[k] = v
    return out


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False
