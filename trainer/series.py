"""Time series from CSV files: load, validate and fill missing values (numpy only, no tensorflow).

A :class:`Series` is a time-ordered table of raw input and target columns.
:mod:`eddy.trainer.windows` cuts one into labelled, split, normalised windows.
Bad data fails fast here, before the slow imports.

CSV rules (:func:`load_csv`):

- The time column, if any, labels rows in reports and is never chosen as a
  feature by default: the first column named like a time axis (``date``,
  ``time``, ``datetime``, ``timestamp``, ``year``, or ending in ``_date``,
  ``_time``, ...), else the first column whose every cell is an ISO 8601
  date or date-time (``2024-01-31``, ``2024-01-31T12:00``).
- Missing values (an empty cell, ``NA``, ``N/A``, ``NaN``, ``null``, ``None``)
  in a used column are an error unless ``fill`` says how to handle them:
  ``ffill`` (the last observed value; a gap at the start is an error),
  ``interpolate`` (linear in the row index; gaps at either end take the
  nearest observed value) or ``drop`` (drop the row).
- Other non-numeric or non-finite cells in a used column are always errors,
  named by line. Without ``--features``, a column counts as numeric when most
  of its present cells are numbers, so a bad cell gets that same error.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["BUNDLED_CSV", "MISSING", "Series", "bundled_series", "load_csv", "synthetic_series"]

# Yearly mean sunspot numbers 1700-2008 (NOAA, public domain; as shipped by
# statsmodels' `sunspots` data set). Columns: year, sunspots.
BUNDLED_CSV = Path(__file__).parent / "data" / "sunspots.csv"
_BUNDLED_COLUMN = "sunspots"

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})  # cells read as missing values (lower-cased)
_TIME_NAME = re.compile(r"(?i)(?:.*[_\- ])?(?:date|time|datetime|timestamp|year)")  # e.g. date, trade_date, Year


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
    time_column: str | None = None  # the CSV column that labels rows, if one was recognised
    labels: list[str] | None = field(default=None, repr=False)  # [N] time label per row; None = row index
    missing: int = 0  # missing cells in used columns that --fill handled
    dropped_rows: int = 0  # rows removed by --fill drop

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def label(self, row: int) -> str:
        """Row ``row``'s time label, or its index when the series has no time column."""
        return self.labels[row] if self.labels is not None else str(row)


def load_csv(
    path: str | Path,
    features: list[str] | None = None,
    targets: list[str] | None = None,
    *,
    fill: str | None = None,
    name: str | None = None,
    source: str = "csv",
) -> Series:
    """Read a CSV file with a header row into a :class:`Series`.

    ``features`` default to the file's single numeric column other than the
    time column (an error if there are several); ``targets`` default to the
    features when there is one feature. Only the columns in use must be
    numeric; ``fill`` handles their missing values (see the module docstring).
    Raises :class:`~eddy.trainer.errors.DataError` with one line naming the file,
    the line and the problem.
    """
    path = Path(path)
    header, rows = _read_rows(path)
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    time_column = _time_column(header, rows)
    features, targets = _choose_columns(path, header, rows, features, targets, time_column)
    used = list(dict.fromkeys(features + targets))
    values = np.stack([_numeric_column(path, header, rows, col, fill) for col in used], axis=1)  # [N, C], NaN = missing
    gaps = np.isnan(values)  # [N, C]
    keep = ~gaps.any(axis=1) if fill == "drop" else np.ones(len(rows), dtype=bool)  # [N]
    if fill == "ffill":
        values = _forward_fill(path, values, [line for line, _ in rows], used)
    elif fill == "interpolate":
        values = _interpolate(path, values, used)
    values = values[keep]
    labels = None
    if time_column is not None:
        j = header.index(time_column)
        labels = [r[j].strip() for (_, r), k in zip(rows, keep) if k]
    if not len(values):
        raise DataError(f"{path}: no rows left after --fill drop removed every row with a missing value")
    column = {c: values[:, k] for k, c in enumerate(used)}
    return Series(
        name=name or path.stem,
        source=source,
        path=str(path),
        features=list(features),
        targets=list(targets),
        inputs=np.stack([column[c] for c in features], axis=1),  # [N, F]
        outputs=np.stack([column[c] for c in targets], axis=1),  # [N, O]
        time_column=time_column,
        labels=labels,
        missing=int(gaps.sum()),
        dropped_rows=int((~keep).sum()),
    )


def bundled_series() -> Series:
    """The bundled yearly sunspot numbers (1700-2008): one feature, predicting itself."""
    return load_csv(BUNDLED_CSV, [_BUNDLED_COLUMN], [_BUNDLED_COLUMN], name="sunspots", source="bundled")  # time: year


def synthetic_series(length: int = 1000, seed: int = 0) -> Series:
    """A noisy sine (period 50 samples, noise std 0.1), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    period = 50.0  # samples per cycle
    noise = 0.1  # std of the added Gaussian noise, amplitude 1
    value = (np.sin(2 * np.pi * t / period) + noise * rng.standard_normal(length))[:, None]  # [N, 1]
    return Series("synthetic", "synthetic", None, ["value"], ["value"], value, value.copy())


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
    time_column: str | None,
) -> tuple[list[str], list[str]]:
    for col in (features or []) + (targets or []):
        if col not in header:
            raise DataError(f"{path}: unknown column {col!r} (columns: {', '.join(header)})")
    if features is None and targets is not None:
        features = list(targets)  # predict the targets from their own past
    if features is None:
        numeric = [c for i, c in enumerate(header) if c != time_column and _is_numeric_column(rows, i)]
        if len(numeric) != 1:
            found = f"numeric columns {', '.join(numeric)}" if numeric else "no numeric column"
            besides = f" besides the time column {time_column!r}" if time_column else ""
            raise DataError(f"{path}: found {found}{besides}; choose with --features and --target")
        features = numeric
    if targets is None:
        if len(features) != 1:
            raise DataError(f"{path}: {len(features)} feature columns; choose the predicted one(s) with --target")
        targets = list(features)
    return features, targets


def _time_column(header: list[str], rows: list[tuple[int, list[str]]]) -> str | None:
    """The column that labels rows: named like a time axis, else all ISO dates (see the module docstring)."""
    for col in header:
        if _TIME_NAME.fullmatch(col):
            return col
    for j, col in enumerate(header):
        if all(_is_iso_time(r[j].strip()) for _, r in rows):
            return col
    return None


def _is_iso_time(cell: str) -> bool:
    if not cell or _is_number(cell):  # 20240131 parses as an ISO date but is a number
        return False
    try:
        datetime.fromisoformat(cell)
    except ValueError:
        return False
    return True


def _numeric_column(
    path: Path, header: list[str], rows: list[tuple[int, list[str]]], col: str, fill: str | None
) -> np.ndarray:
    """Column ``col`` as float64 ``[N]``, NaN where a value is missing (only when ``fill`` is given)."""
    j = header.index(col)
    out = np.empty(len(rows), dtype=np.float64)
    for k, (line, r) in enumerate(rows):
        cell = r[j].strip()
        if cell.lower() in MISSING:
            if fill is None:
                shown = "empty cell" if not cell else repr(cell)
                raise DataError(
                    f"{path}: line {line}: column {col!r}: missing value ({shown}); "
                    "fill it or pass --fill ffill|interpolate|drop"
                )
            out[k] = math.nan
            continue
        try:
            v = float(cell)
        except ValueError:
            raise DataError(f"{path}: line {line}: column {col!r}: {cell!r} is not a number") from None
        if not math.isfinite(v):
            raise DataError(f"{path}: line {line}: column {col!r}: {cell!r} is not a finite number")
        out[k] = v
    return out


def _forward_fill(path: Path, values: np.ndarray, lines: list[int], columns: list[str]) -> np.ndarray:
    """Replace NaN by the last observed value above it, column by column; ``[N, C]`` -> ``[N, C]``."""
    out = values.copy()
    for c, col in enumerate(columns):
        if np.isnan(out[0, c]):
            raise DataError(
                f"{path}: line {lines[0]}: column {col!r}: missing value with nothing before it to fill "
                "forward from (use --fill interpolate or drop)"
            )
        for k in np.flatnonzero(np.isnan(out[:, c])):  # ascending, so each gap copies an already filled value
            out[k, c] = out[k - 1, c]
    return out


def _interpolate(path: Path, values: np.ndarray, columns: list[str]) -> np.ndarray:
    """Linear interpolation over the row index of each column's NaN; ends take the nearest value."""
    out = values.copy()
    rows = np.arange(len(values))
    for c, col in enumerate(columns):
        gaps = np.isnan(out[:, c])
        if gaps.all():
            raise DataError(f"{path}: column {col!r} has no values to interpolate from")
        if gaps.any():
            out[gaps, c] = np.interp(rows[gaps], rows[~gaps], out[~gaps, c])
    return out


def _is_numeric_column(rows: list[tuple[int, list[str]]], j: int) -> bool:
    """More numbers than other present cells: a numeric column, perhaps with a bad cell that reading it names
    by its line (a column of numbers with one typo is still the column the user means)."""
    cells = [c for c in (r[j].strip() for _, r in rows) if c.lower() not in MISSING]
    numbers = sum(_is_number(c) for c in cells)
    return numbers > len(cells) - numbers


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False
