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

from eddy.runtime.core.errors import EddyError
from eddy.runtime.core.layout import PRECISIONS
from eddy.runtime.serving.config import DEFAULT_HOST, DEFAULT_PORT, ServeConfig

__all__ = ["main"]

_TRAINER = {  # subcommand -> (trainer.cli function, one-line help)
    "train": ("main", "train a model and export it to models/NAME/<next version> (needs eddy-rnn[train])"),
    "export": ("export_main", "export a Keras model file to ONNX as models/NAME/<next version> (needs eddy-rnn[train])"),
}
_STREAM_EPILOG = """\
output: CSV on stdout, one row per input row, written as soon as it is
predicted: the input row's columns unchanged, then one column pred_<target>
per model target. pred_<target> on row i is the model's prediction after
seeing rows 0..i (for the default model: the next value of the series).

exit status: 0 ok; 1 the server or model failed (message on stderr);
2 bad usage or bad CSV (missing column, non-numeric or non-finite cell).
"""


_SERVE_EPILOG = """\
sessions: a stream may name a session id and resume it later (also from
another connection); idle sessions live --session-ttl seconds. One stream at
a time per session. See README.md, "Serving in production".

shutdown: SIGINT/SIGTERM turns health NOT_SERVING, refuses new RPCs, answers
open streams for up to --grace seconds, then cancels what is left.
"""


class _UsageError(Exception):
    """Bad arguments or input file: one line on stderr, exit 2."""


class _Pushable(Protocol):
    def push(self, samples: np.ndarray) -> np.ndarray: ...


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eddy", description="Stateful streaming inference for recurrent models.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = ServeConfig()
    s = sub.add_parser("serve", help="serve every model of a repository over gRPC",
                       description="Serve every model version under --models over gRPC: eddy.v1.Inference\n"
                                   "(streams with resumable sessions, Predict), on the same port the Open\n"
                                   "Inference Protocol inference.GRPCInferenceService (KServe v2; Triton's\n"
                                   "sequence_id/start/end map onto the same sessions, so tritonclient works),\n"
                                   "grpc.health.v1 (overall, each service and eddy.v1.Inference/<model>) and\n"
                                   "server reflection; optional Prometheus metrics over HTTP.",
                       epilog=_SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--models", type=Path, default=Path(os.environ.get("EDDY_MODELS", "models")),
                   help="model repository, holding NAME/VERSION/manifest.json (default: $EDDY_MODELS or ./models)")
    s.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind, for gRPC and metrics (default: {DEFAULT_HOST}, loopback only)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port to bind; 0 picks a free one (default: {DEFAULT_PORT})")
    s.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="graphs to serve: float32, or the int8 twins written by `eddy train --quantize int8` "
                        "(versions without them are skipped, with the reason in the log; int8 outputs are not "
                        f"bit-exact across chunking) (default: {d.precision})")
    s.add_argument("--session-ttl", type=float, default=d.session_ttl, metavar="SECONDS",
                   help=f"evict sessions idle longer than this (default: {d.session_ttl:g})")
    s.add_argument("--max-sessions", type=int, default=d.max_sessions, metavar="N",
                   help=f"live sessions at most; new ones past it get RESOURCE_EXHAUSTED, live ones are never "
                        f"evicted for room (default: {d.max_sessions})")
    s.add_argument("--max-batch", type=int, default=d.max_batch, metavar="N",
                   help=f"sessions per onnxruntime call when batching (default: {d.max_batch})")
    s.add_argument("--max-delay-us", type=int, default=d.max_delay_us, metavar="US",
                   help="microseconds to wait for more sessions' steps before running a batch; 0 batches "
                        f"what is already queued (default: {d.max_delay_us})")
    s.add_argument("--batching", choices=("on", "off"), default="on" if d.batching else "off",
                   help="batch steps of different sessions into one onnxruntime call (default: on)")
    s.add_argument("--no-batching", dest="batching", action="store_const", const="off",
                   help="same as --batching off (default: batching on)")
    s.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes, metavar="BYTES",
                   help="largest gRPC message received or sent; a larger request ends the RPC with "
                        "RESOURCE_EXHAUSTED, and a request whose answer would be larger is refused (same status) "
                        f"before it runs (default: {d.max_message_bytes})")
    s.add_argument("--max-samples-per-message", type=int, default=d.max_samples_per_message, metavar="N",
                   help="samples per stream message, or B*T per Predict; more is RESOURCE_EXHAUSTED "
                        f"(default: {d.max_samples_per_message})")
    s.add_argument("--grace", type=float, default=d.grace, metavar="SECONDS",
                   help=f"seconds open streams get to finish on SIGINT/SIGTERM (default: {d.grace:g})")
    s.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics; 0 picks a free port "
                        "(default: off)")
    s.add_argument("--session-store", default=d.session_store, metavar="URL",
                   help="keep sessions in a Redis/Valkey server shared by replicas and workers, e.g. "
                        "redis://127.0.0.1:6379/0 or unix:///run/valkey.sock: every answer is written there "
                        "first, so sessions survive a crash and resume on any replica (needs eddy-rnn[redis]) "
                        "(default: this process's memory)")
    s.add_argument("--lease-s", type=float, default=d.lease_s, metavar="SECONDS",
                   help="with --session-store: a stream's lease on its session; a crashed replica's sessions "
                        f"can be resumed elsewhere after this (default: {d.lease_s:g})")
    s.add_argument("--store-timeout", type=float, default=d.store_timeout, metavar="SECONDS",
                   help=f"with --session-store: wait this long for the store, then UNAVAILABLE "
                        f"(default: {d.store_timeout:g})")
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="serve from N processes sharing the port (SO_REUSEPORT), to use N cores; needs "
                        "--session-store, since each process has its own memory (default: 1)")
    s.add_argument("--poll-models", type=float, default=d.poll_models, metavar="SECONDS",
                   help="rescan --models this often: new versions are served without a restart, removed ones "
                        "take no new sessions (their open sessions carry on) (default: 0, off)")
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
    t.add_argument("--csv", required=True, type=Path,
                   help="input CSV with a header row, or - for standard input (each row is sent as soon as it "
                        "is read, its prediction printed before the next row is read) (required)")
    t.add_argument("--features", nargs="+", metavar="COL",
                   help="CSV columns to send, in the model's feature order (default: the model's features)")
    t.add_argument("--encoding", choices=("raw", "values"), default="raw",
                   help="wire encoding of samples with --server (default: raw)")

    for name, (_, help_) in _TRAINER.items():
        sub.add_parser(name, help=help_, add_help=False)  # dispatched before parsing; see main()
    sub.add_parser("info", help="show a model version's manifest and training report", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eddy`` command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in _TRAINER:
        return _trainer(args_list[0], args_list[1:])
    if args_list and args_list[0] == "info":
        from .info import main as info_main

        return info_main(args_list[1:])
    args = _parser().parse_args(args_list)
    args.argv = args_list  # as given, for --workers to pass on
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
        from . import train as trainer_cli  # lazy: serve/stream/info never load the trainer
    except ImportError as e:
        print(f"eddy {command}: the trainer is not available ({e}); install it with: pip install 'eddy-rnn[train]'",
              file=sys.stderr)
        return 2
    return int(getattr(trainer_cli, _TRAINER[command][0])(argv) or 0)


def _serve(args: argparse.Namespace) -> int:
    from eddy.runtime.grpc.server import serve  # grpc import only when serving

    try:
        config = ServeConfig(session_ttl=args.session_ttl, max_sessions=args.max_sessions,
                             batching=args.batching == "on", max_batch=args.max_batch,
                             max_delay_us=args.max_delay_us, max_message_bytes=args.max_message_bytes,
                             max_samples_per_message=args.max_samples_per_message, grace=args.grace,
                             metrics_port=args.metrics_port, session_store=args.session_store,
                             lease_s=args.lease_s, store_timeout=args.store_timeout, poll_models=args.poll_models,
                             precision=args.precision)
    except ValueError as e:
        raise _UsageError(str(e)) from None
    if args.workers > 1:
        return _workers(args)
    if args.workers < 1:
        raise _UsageError(f"--workers must be >= 1, got {args.workers}")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(args.models, args.host, args.port, config=config)


def _workers(args: argparse.Namespace) -> int:
    """``--workers N``: N ``eddy serve`` processes on one port (SO_REUSEPORT); signals are passed on."""
    import signal
    import subprocess

    if not args.session_store:
        raise _UsageError("--workers > 1 needs --session-store: with the memory store each worker has its own "
                          "sessions, and a client's next connection may land on another worker")
    if args.port == 0:
        raise _UsageError("--workers > 1 needs a fixed --port (with 0 every worker would pick its own)")
    argv, skip = [], False
    for arg in args.argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            argv.append(arg)
    procs = []
    for i in range(args.workers):
        extra = [] if args.metrics_port in (None, 0) else ["--metrics-port", str(args.metrics_port + i)]
        procs.append(subprocess.Popen([sys.executable, "-m", "eddy.cli", *argv, *extra]))
    print(f"eddy: {args.workers} workers (pids {', '.join(str(p.pid) for p in procs)}) on "
          f"{args.host}:{args.port}", file=sys.stderr, flush=True)

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    codes = [p.wait() for p in procs]
    return max(codes, key=abs)


def _stream(args: argparse.Namespace) -> int:
    if args.server and not args.model:
        raise _UsageError("--model is required with --server")
    if str(args.csv) == "-":
        f = open(sys.stdin.fileno(), newline="", encoding="utf-8", closefd=False)  # rows as they arrive
    else:
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
            from eddy.runtime.core.model import load

            model = load(args.local)
            return _run(args, header, reader, model.stream(), model.features, model.targets)
        from eddy.runtime.client import Client

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
