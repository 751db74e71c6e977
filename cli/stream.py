"""``eddy stream``: a CSV, row by row, through a served or local model; predictions as CSV on stdout."""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from eddy.runtime.core.errors import EddyError

from . import wide
from .connect import add_client_flags
from .errors import UsageError

__all__ = ["add_parser", "run"]

_STREAM_EPILOG = """\
output: CSV on stdout, one row per input row, written as soon as it is
predicted: the input row's columns unchanged, then one column pred_<target>
per model target. pred_<target> on row i is the model's prediction after
seeing rows 0..i for the target at row i + horizon (the model's horizon,
shown by `eddy info`; 1 for the default model: the next value). With
--interval LEVEL, lower_<target> and upper_<target> follow each
pred_<target>: the LEVEL prediction interval, recalibrated online as the
stream's actuals arrive (bit for bit the same with --server and --local).

bad rows: a non-numeric or non-finite cell, or a missing one without
--fill, stops the stream (--on-bad stop) or, with --on-bad skip, is reported
on stderr and answered with empty prediction columns while the stream goes
on with its state unchanged. --fill ffill replaces a missing cell (empty, NA,
NaN, null, None) by the column's last value, as `eddy train --fill ffill` does.

connection: a failed connection is explained in one line (nothing listens
there; TLS against plaintext: pass or drop --tls; a certificate that does not
verify: pass --tls-ca; a client certificate required or refused), found by
probing the address once; the TLS files are checked before dialing.

exit status: 0 ok; 2 bad usage, a bad CSV (missing column, a bad row with
--on-bad stop), TLS flags that do not fit the server, a missing or broken
--local model directory, or a request the server calls wrong (an unknown
model or version: NOT_FOUND; INVALID_ARGUMENT; a bad token); 1 the server or
the model failed (UNAVAILABLE, RESOURCE_EXHAUSTED, INTERNAL, ...) or nothing
listens at --server; 130 interrupted. Errors: one line on stderr.
"""


class _Pushable(Protocol):
    def push(self, samples: np.ndarray) -> Any: ...


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``stream`` to the ``eddy`` subcommands."""
    t = sub.add_parser("stream", help="stream a CSV row by row through a model, print predictions as CSV",
                       description="Send each CSV row as one message (as it is read) to a served or local "
                                   "model and write one prediction per row as CSV to stdout.",
                       epilog=_STREAM_EPILOG + "\n" + wide.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = t.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", metavar="HOST:PORT",
                       help="eddy server to stream to; the port is required ([V6]:PORT for IPv6) (default: none)")
    where.add_argument("--local", metavar="PATH", type=Path,
                       help="run in-process instead: models/NAME or models/NAME/VERSION (default: none)")
    t.add_argument("--model", help="model name on the server; required with --server (default: none)")
    t.add_argument("--version", default=None, help="model version on the server (default: the latest)")
    t.add_argument("--csv", required=True, type=Path,
                   help="input CSV with a header row, or - for standard input (each row is sent as soon as it "
                        "is read, its prediction printed before the next row is read) (required)")
    t.add_argument("--features", nargs="+", metavar="COL",
                   help="CSV columns to send, in the model's feature order (default: the model's features)")
    t.add_argument("--encoding", choices=("raw", "values"), default="raw",
                   help="wire encoding of samples with --server (default: raw)")
    t.add_argument("--on-bad", choices=("stop", "skip"), default="stop",
                   help="a bad row: stop with exit status 2, or skip it (one line on stderr, empty prediction, "
                        "state unchanged) and go on (default: stop)")
    t.add_argument("--fill", choices=("ffill",), default=None,
                   help="missing cells: ffill = the column's last value, as in eddy train (default: a missing "
                        "cell is a bad row)")
    t.add_argument("--interval", type=_level, default=None, metavar="LEVEL",
                   help="also print the model's LEVEL prediction interval (e.g. 0.8, one of its calibrated levels, "
                        "see eddy info): columns lower_<target> and upper_<target> after each pred_<target> "
                        "(default: none)")
    t.add_argument("--fleet", action="store_true",
                   help="a wide CSV, one column per sensor: each column is one session of a one-feature model and "
                        "each row one message carrying all of them (see below) (default: off)")
    t.add_argument("--columns", nargs="+", metavar="COL",
                   help="with --fleet: the sensor columns (default: every column but the first)")
    t.add_argument("--session-prefix", default="", metavar="PREFIX",
                   help="with --fleet --server: session ids are PREFIX + column name (default: none)")
    t.add_argument("--resume", action="store_true",
                   help="with --fleet --server: continue the sessions of an earlier replay (they must exist) "
                        "instead of creating them (default: off)")
    add_client_flags(t)
    return t


def run(args: argparse.Namespace) -> int:
    """Run ``eddy stream``; returns the exit status (errors propagate to :func:`eddy.cli.errors.report`)."""
    if args.server and not args.model:
        raise UsageError("--model is required with --server")
    if not args.fleet and (args.columns or args.session_prefix or args.resume):
        raise UsageError("--columns, --session-prefix and --resume go with --fleet")
    if args.fleet and args.interval is not None:
        raise UsageError("--interval goes with a stream of rows, not with --fleet")
    if str(args.csv) == "-":
        f = open(sys.stdin.fileno(), newline="", encoding="utf-8", closefd=False)  # rows as they arrive
    else:
        try:
            f = open(args.csv, newline="", encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read {args.csv}: {e.strerror}") from None
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise UsageError(f"{args.csv}: empty file (expected a header row)")
        if args.local is not None:
            from eddy.runtime.core.model import load

            model = load(args.local)  # a missing directory is NOT_FOUND: exit 2, as over --server
            if args.fleet:
                return wide.run_fleet(args, header, reader, wide.LocalFleet(model), model.features, model.targets,
                                      model.name, _number)
            stream: _Pushable = model.stream()
            if args.interval is not None:
                model._interval_index(args.interval)  # a model without that level: refused before any row is read
                stream = _WithInterval(model.stream(), args.interval)
            return _run(args, header, reader, stream, model.features, model.targets)
        from eddy.runtime.client import Client

        from .connect import check_client_tls, explain_connect_failure, server_address

        server_address(args.server)  # a missing port would dial 443
        check_client_tls(args.tls_ca, args.tls_cert, args.tls_key)
        tls = args.tls or any(f is not None for f in (args.tls_ca, args.tls_cert, args.tls_key))
        try:
            client = Client(args.server, tls=args.tls, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                            tls_key=args.tls_key, token=args.token)
            if args.fleet:
                with client, client.fleet(args.model, args.version, encoding=args.encoding) as rf:
                    return wide.run_fleet(args, header, reader, rf, rf.features, rf.targets, args.model, _number)
            levels = () if args.interval is None else (args.interval,)
            with client, client.stream(args.model, args.version, encoding=args.encoding, intervals=levels) as rs:
                return _run(args, header, reader, rs, rs.features, rs.targets)
        except EddyError as e:
            raise explain_connect_failure(e, args.server, tls=tls, ca=args.tls_ca, cert=args.tls_cert,
                                          key=args.tls_key) from None


def _run(args: argparse.Namespace, header: list[str], rows: Iterator[list[str]], stream: _Pushable,
         model_features: list[str], targets: list[str]) -> int:
    features = args.features or model_features
    missing = [c for c in features if c not in header]
    if missing:
        raise UsageError(f"{args.csv} has no column(s) {', '.join(map(repr, missing))} "
                          f"(columns: {', '.join(header)})")
    if len(features) != len(model_features):
        raise UsageError(f"the model takes {len(model_features)} feature(s) ({', '.join(model_features)}); "
                          f"--features names {len(features)}")
    index = [header.index(c) for c in features]
    out = csv.writer(sys.stdout, lineterminator="\n")
    bounds = args.interval is not None
    names = [[f"pred_{t}", f"lower_{t}", f"upper_{t}"] if bounds else [f"pred_{t}"] for t in targets]
    width = sum(len(n) for n in names)
    out.writerow([*header, *(n for group in names for n in group)])
    last: list[float | None] = [None] * len(index)  # --fill ffill: each column's last value
    for line, row in enumerate(rows, start=2):
        if not row:
            continue  # blank line
        try:
            values = [_number(row, i, header, line, args.csv, last[k] if args.fill else None)
                      for k, i in enumerate(index)]
        except UsageError as e:
            if args.on_bad == "stop":
                raise
            print(f"eddy stream: {e}; skipped", file=sys.stderr)
            out.writerow([*row, *([""] * width)])
            sys.stdout.flush()
            continue
        last = list(values)
        answer = stream.push(np.array([values], np.float32))  # [1, O], or a Forecast with --interval
        if bounds:
            level = next(iter(answer.lower))
            cells = [f"{v:.9g}" for j in range(len(targets))
                     for v in (answer.y[0, j], answer.lower[level][0, j], answer.upper[level][0, j])]
        else:
            cells = [f"{v:.9g}" for v in answer[0]]
        out.writerow([*row, *cells])
        sys.stdout.flush()  # one prediction per row, as it comes
    return 0


class _WithInterval:
    """A local stream answering every push with one interval level (what --interval asks of a server)."""

    def __init__(self, stream: Any, level: float) -> None:
        self._stream, self._level = stream, level

    def push(self, samples: np.ndarray) -> Any:
        return self._stream.push(samples, intervals=self._level)


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a level such as 0.8, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"an interval level is a coverage in (0, 1), e.g. 0.8, got {text}")
    return value


def _number(row: list[str], i: int, header: list[str], line: int, path: Path, fill: float | None = None) -> float:
    cell = row[i].strip() if i < len(row) else ""
    if fill is not None:
        from eddy.trainer.series import MISSING  # numpy only; the cells eddy train reads as missing

        if cell.lower() in MISSING:
            return fill
    try:
        value = float(cell)
    except ValueError:
        raise UsageError(f"{path} line {line}: column {header[i]!r} is not a number: {cell!r}") from None
    if not math.isfinite(value):
        raise UsageError(f"{path} line {line}: column {header[i]!r} is not finite: {cell!r}")
    return value
