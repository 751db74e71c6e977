"""The ``eddy`` command: serve models, stream a CSV through one, train/export.

``train`` and ``export`` belong to the trainer (tensorflow); they are
imported only when asked for, so the runtime never pulls tensorflow in.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import EddyError

__all__ = ["main"]

_TRAINER = {  # subcommand -> (trainer.cli function, one-line help)
    "train": ("main", "train a model and export it to models/NAME/<next version> (needs eddy[train])"),
    "export": ("export_main", "re-export a trained model to ONNX (needs eddy[train])"),
}
_STREAM_EPILOG = """\
output: CSV on stdout, one row per input row, written as soon as it is
predicted: the input row's columns unchanged, then one column pred_<target>
per model target. pred_<target> on row i is the model's prediction after
seeing rows 0..i (for the default model: the next value of the series).

exit status: 0 ok; 1 the server or model failed (message on stderr);
2 bad usage or bad CSV (missing column, non-numeric or non-finite cell).
"""


class _UsageError(Exception):
    """Bad arguments or input file: one line on stderr, exit 2."""


class _Pushable(Protocol):
    def push(self, samples: np.ndarray) -> np.ndarray: ...


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eddy", description="Stateful streaming inference for recurrent models.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("serve", help="serve every model of a repository over gRPC",
                       description="Serve every model version under --models over gRPC (eddy.v1 + grpc.health.v1).")
    s.add_argument("--models", type=Path, default=Path(os.environ.get("EDDY_MODELS", "models")),
                   help="model repository, holding NAME/VERSION/manifest.json (default: $EDDY_MODELS or ./models)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    s.add_argument("--port", type=int, default=50051, help="port to bind; 0 picks a free one (default: 50051)")
    s.add_argument("--grace", type=float, default=5.0,
                   help="seconds open streams get to finish on SIGINT/SIGTERM (default: 5)")
    s.add_argument("--log-level", default="INFO", help="logging level on stderr (default: INFO)")

    t = sub.add_parser("stream", help="stream a CSV row by row through a model, print predictions as CSV",
                       description="Send each CSV row as one message (as it is read) to a served or local "
                                   "model and write one prediction per row as CSV to stdout.",
                       epilog=_STREAM_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = t.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", metavar="HOST:PORT", help="eddy server to stream to (default: none)")
    where.add_argument("--local", metavar="PATH", type=Path,
                       help="run in-process instead: models/NAME or models/NAME/VERSION (default: none)")
    t.add_argument("--model", help="model name on the server; required with --server (default: none)")
    t.add_argument("--version", default=None, help="model version on the server (default: the latest)")
    t.add_argument("--csv", required=True, type=Path, help="input CSV with a header row (required)")
    t.add_argument("--features", nargs="+", metavar="COL",
                   help="CSV columns to send, in the model's feature order (default: the model's features)")
    t.add_argument("--encoding", choices=("raw", "values"), default="raw",
                   help="wire encoding of samples with --server (default: raw)")

    for name, (_, help_) in _TRAINER.items():
        sub.add_parser(name, help=help_, add_help=False)  # dispatched before parsing; see main()
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eddy`` command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in _TRAINER:
        return _trainer(args_list[0], args_list[1:])
    args = _parser().parse_args(args_list)
    try:
        if args.command == "serve":
            return _serve(args)
        return _stream(args)
    except _UsageError as e:
        print(f"eddy {args.command}: {e}", file=sys.stderr)
        return 2
    except EddyError as e:
        print(f"eddy {args.command}: {e.code}: {e.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `eddy stream ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        print(f"eddy {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _trainer(command: str, argv: list[str]) -> int:
    try:
        from trainer import cli as trainer_cli  # lazy: tensorflow stays out of the runtime
    except ImportError as e:
        print(f"eddy {command}: the trainer is not available ({e}); install it with: pip install 'eddy[train]'",
              file=sys.stderr)
        return 2
    entry = getattr(trainer_cli, _TRAINER[command][0], None)
    if entry is None:
        print(f"eddy {command}: this trainer has no `{command}` command (`eddy train` exports as it trains)",
              file=sys.stderr)
        return 2
    return int(entry(argv) or 0)


def _serve(args: argparse.Namespace) -> int:
    from .server import serve  # grpc import only when serving

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(args.models, args.host, args.port, grace=args.grace)


def _stream(args: argparse.Namespace) -> int:
    if args.server and not args.model:
        raise _UsageError("--model is required with --server")
    try:
        f = open(args.csv, newline="", encoding="utf-8")
    except OSError as e:
        raise _UsageError(f"cannot read {args.csv}: {e.strerror}") from None
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise _UsageError(f"{args.csv}: empty file (expected a header row)")
        if args.local is not None:
            from .model import load

            model = load(args.local)
            return _run(args, header, reader, model.stream(), model.features, model.targets)
        from .client import Client

        with Client(args.server) as client, client.stream(args.model, args.version, encoding=args.encoding) as rs:
            return _run(args, header, reader, rs, rs.features, rs.targets)


def _run(args: argparse.Namespace, header: list[str], rows: Iterator[list[str]], stream: _Pushable,
         model_features: list[str], targets: list[str]) -> int:
    features = args.features or model_features
    missing = [c for c in features if c not in header]
    if missing:
        raise _UsageError(f"{args.csv} has no column(s) {', '.join(map(repr, missing))} "
                          f"(columns: {', '.join(header)})")
    if len(features) != len(model_features):
        raise _UsageError(f"the model takes {len(model_features)} feature(s) ({', '.join(model_features)}); "
                          f"--features names {len(features)}")
    index = [header.index(c) for c in features]
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow([*header, *(f"pred_{t}" for t in targets)])
    for line, row in enumerate(rows, start=2):
        if not row:
            continue  # blank line
        x = np.array([[_number(row, i, header, line, args.csv) for i in index]], np.float32)  # [1, F]
        y = stream.push(x)  # [1, O]
        out.writerow([*row, *(f"{v:.9g}" for v in y[0])])
        sys.stdout.flush()  # one prediction per row, as it comes
    return 0


def _number(row: list[str], i: int, header: list[str], line: int, path: Path) -> float:
    cell = row[i].strip() if i < len(row) else ""
    try:
        value = float(cell)
    except ValueError:
        raise _UsageError(f"{path} line {line}: column {header[i]!r} is not a number: {cell!r}") from None
    if not math.isfinite(value):
        raise _UsageError(f"{path} line {line}: column {header[i]!r} is not finite: {cell!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
