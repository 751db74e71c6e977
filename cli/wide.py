"""``eddy stream --fleet``: a wide CSV (one column per sensor) replayed as one fleet, row by row.

Each sensor column is one session of a one-feature model (session id: the
column name, after ``--session-prefix``); each CSV row is one fleet message
carrying every sensor's sample, answered with every sensor's prediction
before the next row is read. A model with more than one feature is refused:
a wide CSV has one number per sensor and row, so there is nothing to fill its
other features with (stream each sensor's own CSV with ``eddy stream``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from eddy.runtime.core.errors import EddyError

from .errors import UsageError

__all__ = ["EPILOG", "LocalFleet", "run_fleet"]

EPILOG = """\
--fleet (a wide CSV, one column per sensor): every sensor column is one
session of a one-feature model, named by the column (after --session-prefix),
and every row is one message carrying all of them; the output adds one
column pred_<column> per sensor (pred_<column>_<target> for a model with
several targets). --columns names the sensor columns (default: every column
but the first, taken as the row label, e.g. a date). A bad cell with --on-bad
skip fails only that sensor's prediction (empty cell, its state unchanged).
With --server the sessions are created (--resume: continued, they must
exist) and stay resumable by a Stream or a later fleet after the replay.
"""


class _Result(Protocol):
    y: np.ndarray  # [N, 1, O]
    errors: dict[int, EddyError]


class _Fleet(Protocol):
    def push(self, session_ids: Sequence[str], samples: np.ndarray, *, resume: bool = False) -> _Result: ...


class _LocalResult:
    def __init__(self, y: np.ndarray, errors: dict[int, EddyError]) -> None:
        self.y, self.errors = y, errors


class LocalFleet:
    """``--local --fleet``: one in-process stream per session id, with the served fleet's push."""

    def __init__(self, model: object) -> None:
        self._model = model
        self._streams: dict[str, object] = {}

    def push(self, session_ids: Sequence[str], samples: np.ndarray, *, resume: bool = False) -> _LocalResult:
        y = np.full((len(session_ids), samples.shape[1], self._model.n_targets), np.nan, np.float32)  # type: ignore[attr-defined]
        errors: dict[int, EddyError] = {}
        for i, sid in enumerate(session_ids):
            stream = self._streams.get(sid) or self._streams.setdefault(sid, self._model.stream())  # type: ignore[attr-defined]
            try:
                y[i] = stream.push(samples[i])  # type: ignore[attr-defined]
            except EddyError as e:  # a non-finite sample: refused, the stream unchanged
                errors[i] = e
        return _LocalResult(y, errors)


def run_fleet(args: argparse.Namespace, header: list[str], rows: Iterator[list[str]], fleet: _Fleet,
              features: list[str], targets: list[str], model: str, number: object) -> int:
    """Replay ``rows`` through ``fleet``; ``number(row, i, header, line, path, fill)`` parses one cell."""
    if len(features) != 1:
        raise UsageError(f"--fleet maps each CSV column to one session of a one-feature model; {model} takes "
                         f"{len(features)} features ({', '.join(features)}): stream each sensor's CSV without "
                         "--fleet instead")
    if args.features:
        raise UsageError("--features does not apply to --fleet; name the sensor columns with --columns")
    columns = args.columns or header[1:]
    missing = [c for c in columns if c not in header]
    if missing:
        raise UsageError(f"{args.csv} has no column(s) {', '.join(map(repr, missing))} (columns: {', '.join(header)})")
    if not columns:
        raise UsageError(f"{args.csv} has no sensor columns (the first column is the row label; name them with "
                         "--columns)")
    if len(set(columns)) != len(columns):
        raise UsageError("--columns names a column twice")
    index = [header.index(c) for c in columns]
    ids = [args.session_prefix + c for c in columns]
    out = csv.writer(sys.stdout, lineterminator="\n")
    suffix = [""] if len(targets) == 1 else [f"_{t}" for t in targets]
    out.writerow([*header, *(f"pred_{c}{s}" for c in columns for s in suffix)])
    last: list[float | None] = [None] * len(index)  # --fill ffill: each column's last value
    resume = args.resume
    for line, row in enumerate(rows, start=2):
        if not row:
            continue  # blank line
        x = np.empty((len(index), 1, 1), np.float32)  # [N, k=1, F=1]
        bad: dict[int, str] = {}
        for k, i in enumerate(index):
            try:
                x[k, 0, 0] = value = number(row, i, header, line, args.csv, last[k] if args.fill else None)
                last[k] = value
            except UsageError as e:
                if args.on_bad == "stop":
                    raise
                bad[k] = str(e)
                x[k, 0, 0] = np.nan  # the server refuses this session's sample alone, its state unchanged
        result = fleet.push(ids, x, resume=resume)
        cells: list[str] = []
        for k in range(len(index)):
            error = result.errors.get(k)
            if error is not None and k not in bad:
                if args.on_bad == "stop":
                    raise error
                bad[k] = f"{args.csv} line {line}: session {ids[k]}: {error.message}"
            cells += [""] * len(targets) if k in bad else [f"{v:.9g}" for v in result.y[k, 0]]
        for k in sorted(bad):
            print(f"eddy stream: {bad[k]}; skipped", file=sys.stderr)
        out.writerow([*row, *cells])
        sys.stdout.flush()  # one row of predictions per input row, as it comes
    return 0
