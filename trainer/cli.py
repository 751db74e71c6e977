"""``eddy train``: command-line front end of :func:`trainer.train.train`.

This module imports neither tensorflow nor the training modules at import
time, so ``eddy train --help`` is instant and works without the training extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from runtime.errors import EddyError, InvalidInput

from .config import CELLS, TrainConfig

__all__ = ["TRAIN_EXTRA_MESSAGE", "build_parser", "main"]

TRAIN_EXTRA_MESSAGE = "eddy train needs the training extra: pip install 'eddy[train]'"
_TRAIN_MODULES = ("tensorflow", "keras", "tf2onnx", "onnx")  # what the training extra provides
_DEFAULTS = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    """The ``eddy train`` argument parser; every flag's help states its default."""
    d = _DEFAULTS
    p = argparse.ArgumentParser(
        prog="eddy train",
        description=(
            "Train a recurrent model on a time series, export it to ONNX (step and sequence "
            "graphs with explicit state), verify the export against Keras, and write "
            "OUT/<next version>/ with manifest.json, step.onnx, sequence.onnx and model.keras."
        ),
    )
    data = p.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, metavar="FILE.csv",
                        help="CSV file with a header row (default: the bundled yearly sunspot numbers, 1700-2008)")
    source.add_argument("--synthetic", action="store_true",
                        help="train on a generated noisy sine instead of a CSV file (default: off)")
    data.add_argument("--features", nargs="+", metavar="COL",
                      help="input columns (default: the target columns if --target is given, else the single numeric column)")
    data.add_argument("--target", nargs="+", dest="targets", metavar="COL",
                      help="columns to predict (default: the feature column, when there is one)")
    data.add_argument("--window", type=_at_least(1), default=d.window, metavar="N",
                      help=f"samples per input window (default: {d.window})")
    data.add_argument("--split", type=_split, default=d.split, metavar="TRAIN,VAL,TEST",
                      help=f"time-ordered split fractions, summing to 1 (default: {','.join(f'{f:g}' for f in d.split)})")

    model = p.add_argument_group("model")
    model.add_argument("--cell", choices=CELLS, default=d.cell, help=f"recurrent cell (default: {d.cell})")
    model.add_argument("--layers", type=_at_least(1), default=d.layers, metavar="N",
                       help=f"stacked recurrent layers (default: {d.layers})")
    model.add_argument("--units", type=_at_least(1), default=d.units, metavar="N",
                       help=f"units per recurrent layer (default: {d.units})")

    fit = p.add_argument_group("training")
    fit.add_argument("--epochs", type=_at_least(1), default=d.epochs, metavar="N",
                     help=f"maximum epochs (default: {d.epochs})")
    fit.add_argument("--batch-size", type=_at_least(1), default=d.batch_size, metavar="N",
                     help=f"windows per gradient step (default: {d.batch_size})")
    fit.add_argument("--lr", type=_positive_float, default=d.lr, metavar="RATE",
                     help=f"Adam learning rate (default: {d.lr:g})")
    fit.add_argument("--clipnorm", type=_non_negative_float, default=d.clipnorm, metavar="NORM",
                     help=f"clip each gradient to this norm, a guard against exploding gradients; 0 turns it off "
                          f"(default: {d.clipnorm})")
    fit.add_argument("--patience", type=_at_least(0), default=d.patience, metavar="N",
                     help=f"stop after N epochs without validation-loss improvement; the best epoch's weights "
                          f"are kept (default: {d.patience})")
    fit.add_argument("--seed", type=_seed, default=None, metavar="N",
                     help="random seed; the same seed reproduces a run exactly "
                          "(default: a random seed, recorded in the manifest)")

    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, metavar="DIR",
                     help="model directory; the run writes DIR/<next integer version>/ (default: models/NAME)")
    out.add_argument("--name", help="model name recorded in the manifest (default: the last part of --out, "
                                    "else the data set's name, e.g. sunspots)")
    out.add_argument("--quiet", action="store_true",
                     help="print only the version directory written, no per-epoch lines (default: off)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``eddy train`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    0: a new version was written; 2: bad flags or bad data (nothing written);
    1: training or export failed (nothing written); 130: interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    config = TrainConfig(
        data=args.data,
        synthetic=args.synthetic,
        features=args.features,
        targets=args.targets,
        window=args.window,
        split=args.split,
        cell=args.cell,
        layers=args.layers,
        units=args.units,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        clipnorm=args.clipnorm or None,
        patience=args.patience,
        seed=args.seed,
        out=args.out,
        name=args.name,
    )
    try:
        config.validate()
    except ValueError as e:
        parser.error(str(e))
    if not all(_importable(m) for m in _TRAIN_MODULES):
        print(TRAIN_EXTRA_MESSAGE, file=sys.stderr)
        return 2

    from .train import train  # cheap; tensorflow is imported inside, after the data checks

    log: Callable[[str], None] | None = None if args.quiet else _print_flush
    try:
        result = train(config, log=log)
    except InvalidInput as e:
        return _fail(e.message, 2)
    except EddyError as e:
        return _fail(e.message, 1)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return _fail(f"{where}{e.strerror or e}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted; nothing was written", 130)

    if args.quiet:
        print(result.version_dir)
        return 0
    m, t = result.manifest, result.manifest.training
    print(
        f"wrote {result.version_dir}  ({m.name} v{m.version}: {m.cell} {m.layers}x{m.units}, "
        f"{t['epochs_run']} epochs, best {t['best_epoch']}; train {result.train_seconds:.1f} s, "
        f"export+verify {result.export_seconds:.1f} s)"
    )
    print(
        f"test RMSE {m.metrics['rmse']:.4g} vs persistence {m.metrics['persistence_rmse']:.4g}, "
        f"MAE {m.metrics['mae']:.4g} vs {m.metrics['persistence_mae']:.4g} "
        f"({m.metrics['windows']} test windows, raw units)"
    )
    checks = ", ".join(f"{k} {v:.2g}" for k, v in m.parity.items() if k != "tolerance")
    print(f"parity max abs error (tolerance {m.parity['tolerance']:g}): {checks}")
    return 0


def _fail(message: str, status: int) -> int:
    print(f"eddy train: error: {message}", file=sys.stderr)
    return status


def _print_flush(line: str) -> None:
    print(line, flush=True)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _seed(text: str) -> int:
    value = _at_least(0)(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be below 2**32, got {value}")
    return value


def _split(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions TRAIN,VAL,TEST, got {text!r}")
    fractions = tuple(_float(p.strip()) for p in parts)
    if any(f <= 0 for f in fractions):
        raise argparse.ArgumentTypeError(f"every fraction must be positive, got {text!r}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(f"fractions must sum to 1, got {text!r} (sum {sum(fractions):g})")
    return fractions  # type: ignore[return-value]
