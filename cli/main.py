"""The ``eddy`` command: dispatch to serve, stream, info (runtime) and train, export (trainer).

The one place that composes the two halves. ``train`` and ``export`` are
imported only when asked for, so serve/stream/info never load the trainer or
tensorflow. Every command ends through :func:`eddy.cli.errors.report`: one
message format, one error -> exit-status table.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from eddy.runtime.core.errors import EddyError

from . import serve, stream, token
from .errors import USAGE, UsageError, report

__all__ = ["build_parser", "main"]

_TRAINER = {  # subcommand (= module eddy.cli.<subcommand>, run by its main()) -> one-line help
    "train": "train a model and export it to models/NAME/<next version> (needs eddy-rnn[train])",
    "export": "export a Keras model file to ONNX as models/NAME/<next version> (needs eddy-rnn[train])",
}
_EPILOG = """\
exit status (every command): 0 ok; 2 bad usage or input (flags, CSV, a
missing or broken file or model directory, data the trainer refuses, or a
server's INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, OUT_OF_RANGE,
UNAUTHENTICATED, PERMISSION_DENIED); 1 the server or the model failed (any
other status); 130 interrupted; 141 stdout closed by its reader (| head).
Errors are one line on stderr: eddy COMMAND: MESSAGE.
`eddy COMMAND --help` for each command's flags.
gRPC's own log lines are off unless GRPC_VERBOSITY is set (e.g. debug).
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``eddy`` parser (``train``, ``export`` and ``info`` parse their own arguments)."""
    p = argparse.ArgumentParser(prog="eddy", description="Stateful streaming inference for recurrent models.",
                                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.add_parser(sub)
    stream.add_parser(sub)
    token.add_parser(sub)
    for name, help_ in _TRAINER.items():
        sub.add_parser(name, help=help_, add_help=False)  # dispatched before parsing; see main()
    sub.add_parser("info", help="show a model version's manifest and training report", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eddy`` command line; returns the exit status."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # here, not at interpreter exit, so a reader gone (| head) is handled below
    except BrokenPipeError as e:  # e.g. `eddy info --json ... | head`: stop quietly (report: BROKEN_PIPE)
        return report("", e)


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in _TRAINER:
        return _trainer(args_list[0], args_list[1:])
    if args_list and args_list[0] == "info":
        from .info import main as info_main

        return info_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    args.argv = args_list  # as given, for --workers to pass on
    try:
        return {"serve": serve.run, "stream": stream.run, "token": token.run}[args.command](args)
    except (EddyError, UsageError, OSError, KeyboardInterrupt) as e:  # anything else is a bug: traceback
        return report(args.command, e)


def _trainer(command: str, argv: list[str]) -> int:
    try:  # lazy: serve/stream/info never load the trainer
        front_end = importlib.import_module(f"{__package__}.{command}")
    except ImportError as e:
        report(command, ImportError(f"the trainer is not available ({e}); install it with: "
                                    "pip install 'eddy-rnn[train]'"))
        return USAGE
    return int(front_end.main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
