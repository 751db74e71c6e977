"""``eddy train`` and ``eddy export``: command-line front ends of
:func:`eddy.trainer.train.train` and :func:`eddy.trainer.from_keras.export_keras_file`.

This module imports neither tensorflow nor the training modules at import
time, so ``--help`` is instant and works without the training extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eddy.runtime.core.errors import EddyError
from eddy.trainer.config import CELLS, FILLS, PRECISIONS, TARGET_TRANSFORMS, TrainConfig
from eddy.trainer.evaluate import persistence_warning

from .errors import report

__all__ = ["EXPORT_EXTRA_MESSAGE", "TRAIN_EXTRA_MESSAGE", "build_export_parser", "build_parser", "export_main", "main"]

TRAIN_EXTRA_MESSAGE = "eddy train needs the training extra: pip install 'eddy-rnn[train]'"
EXPORT_EXTRA_MESSAGE = "eddy export needs the training extra: pip install 'eddy-rnn[train]'"
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
            "OUT/<next version>/ with manifest.json, step.onnx, sequence.onnx, model.keras, "
            "report.json and report.png."
        ),
        epilog=(
            "CSV files: a header row; a time column (named date, time, datetime, timestamp, year or "
            "ending in _date/_time, else the first column of ISO 8601 dates) labels the report's plots "
            "and is never a default feature. Exit status: 0 written; 2 bad flags or data (one line on "
            "stderr naming the file and line; nothing written); 1 training diverged or export failed "
            "(nothing written)."
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
    data.add_argument("--target", "--targets", nargs="+", dest="targets", metavar="COL",
                      help="columns to predict (default: the feature column, when there is one)")
    data.add_argument("--window", type=_at_least(1), default=d.window, metavar="N",
                      help=f"samples per input window (default: {d.window})")
    data.add_argument("--horizon", type=_at_least(1), default=d.horizon, metavar="N",
                      help="predict the target N steps after the window's last sample; a stream's output for "
                           f"sample t is then its prediction for t+N (default: {d.horizon})")
    data.add_argument("--split", type=_split, default=d.split, metavar="TRAIN,VAL,TEST",
                      help="time-ordered split fractions, summing to 1; normalisation uses the training part only "
                           f"(default: {','.join(f'{f:g}' for f in d.split)})")
    data.add_argument("--fill", choices=FILLS, default=None,
                      help="handle missing values (empty, NA, NaN, null) in the used columns: ffill = last value, "
                           "interpolate = linear, drop = drop the row (default: a missing value is an error)")
    data.add_argument("--season", type=_at_least(1), default=None, metavar="N",
                      help="also score the seasonal-naive baseline: the target N steps before the predicted one "
                           "(default: off)")
    data.add_argument("--target-transform", choices=TARGET_TRANSFORMS, default=d.target_transform,
                      help="what the network predicts: level = the value; delta = the change from the last observed "
                           "value (inputs become changes too), for trending series; log_delta = the same on a log "
                           "scale (positive data); auto = train each that applies and keep the best validation RMSE. "
                           "The transform is inside the exported graphs, which take and return raw units "
                           f"(default: {d.target_transform})")

    model = p.add_argument_group("model")
    model.add_argument("--cell", choices=CELLS, default=d.cell, help=f"recurrent cell (default: {d.cell})")
    model.add_argument("--layers", type=_at_least(1), default=d.layers, metavar="N",
                       help=f"stacked recurrent layers (default: {d.layers})")
    model.add_argument("--units", type=_at_least(1), default=d.units, metavar="N",
                       help=f"units per recurrent layer (default: {d.units})")
    model.add_argument("--dropout", type=_rate, default=d.dropout, metavar="RATE",
                       help=f"dropout on each recurrent layer's inputs, training only (default: {d.dropout:g})")
    model.add_argument("--recurrent-dropout", type=_rate, default=d.recurrent_dropout, metavar="RATE",
                       help=f"dropout on each recurrent layer's state, training only (default: {d.recurrent_dropout:g})")
    model.add_argument("--l2", type=_non_negative_float, default=d.l2, metavar="FACTOR",
                       help=f"L2 weight penalty on every kernel, input, recurrent and Dense (default: {d.l2:g}, off)")

    fit = p.add_argument_group("training")
    fit.add_argument("--epochs", type=_at_least(1), default=d.epochs, metavar="N",
                     help=f"maximum epochs (default: {d.epochs})")
    fit.add_argument("--batch-size", type=_at_least(1), default=d.batch_size, metavar="N",
                     help=f"windows per gradient step (default: {d.batch_size})")
    fit.add_argument("--lr", type=_positive_float, default=d.lr, metavar="RATE",
                     help=f"Adam learning rate (default: {d.lr:g})")
    fit.add_argument("--clipnorm", type=_non_negative_float, default=None, metavar="NORM",
                     help=f"clip each gradient to this norm, a guard against exploding gradients; 0 turns it off "
                          f"(default: {d.clipnorm}, or off with --clipvalue)")
    fit.add_argument("--clipvalue", type=_non_negative_float, default=None, metavar="V",
                     help="clip every gradient element to [-V, V] instead of clipping the norm (default: off)")
    fit.add_argument("--patience", type=_at_least(0), default=d.patience, metavar="N",
                     help=f"stop after N epochs without validation-loss improvement; the best epoch's weights "
                          f"are kept (default: {d.patience})")
    fit.add_argument("--reduce-lr-patience", type=_at_least(0), default=d.reduce_lr_patience, metavar="N",
                     help=f"halve the learning rate after N epochs without validation-loss improvement "
                          f"(default: {d.reduce_lr_patience}, off)")
    fit.add_argument("--seed", type=_seed, default=None, metavar="N",
                     help="random seed; the same seed reproduces a run exactly "
                          "(default: a random seed, recorded in the manifest)")

    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, metavar="DIR",
                     help="model directory; the run writes DIR/<next integer version>/ (default: models/NAME)")
    out.add_argument("--name", help="model name recorded in the manifest (default: the last part of --out, "
                                    "else the data set's name, e.g. sunspots)")
    out.add_argument("--quantize", choices=PRECISIONS, default=None,
                     help="also write dynamically quantised graphs (step_int8.onnx, sequence_int8.onnx) and "
                          "measure their size and accuracy change (default: off)")
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
    if args.clipnorm and args.clipvalue:
        parser.error("give either --clipnorm or --clipvalue, not both (Keras applies one kind of clipping)")
    clipnorm = _DEFAULTS.clipnorm if args.clipnorm is None and not args.clipvalue else args.clipnorm
    config = TrainConfig(
        data=args.data,
        synthetic=args.synthetic,
        features=args.features,
        targets=args.targets,
        window=args.window,
        horizon=args.horizon,
        split=args.split,
        fill=args.fill,
        season=args.season,
        target_transform=args.target_transform,
        cell=args.cell,
        layers=args.layers,
        units=args.units,
        dropout=args.dropout,
        recurrent_dropout=args.recurrent_dropout,
        l2=args.l2,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        clipnorm=clipnorm or None,
        clipvalue=args.clipvalue or None,
        patience=args.patience,
        reduce_lr_patience=args.reduce_lr_patience,
        seed=args.seed,
        out=args.out,
        name=args.name,
        quantize=args.quantize,
    )
    try:
        config.validate()
    except ValueError as e:
        parser.error(str(e))
    if not all(_importable(m) for m in _TRAIN_MODULES):
        print(TRAIN_EXTRA_MESSAGE, file=sys.stderr)
        return 2

    from eddy.trainer.train import train  # cheap; tensorflow is imported inside, after the data checks

    log: Callable[[str], None] | None = None if args.quiet else _print_flush
    try:
        result = train(config, log=log)
    except (EddyError, OSError, KeyboardInterrupt) as e:
        return _failed("train", e)

    health = result.gradient_health
    if args.quiet:
        if health.exploded or health.vanished:
            print(f"eddy train: warning: gradients {health.verdict}: {'; '.join(health.notes)}", file=sys.stderr)
        warning = persistence_warning(result.manifest.metrics)
        if warning:
            print(f"eddy train: {warning}", file=sys.stderr)
        print(result.version_dir)
        return 0
    m, t = result.manifest, result.manifest.training
    print(
        f"wrote {result.version_dir}  ({m.name} v{m.version}: {m.cell} {m.layers}x{m.units}, "
        f"{t['epochs_run']} epochs, best {t['best_epoch']}; train {result.train_seconds:.1f} s, "
        f"export+verify {result.export_seconds:.1f} s)"
    )
    print(score_line(m.metrics, m.horizon, m.target_transform))
    print(_parity_line(m.parity))
    print(f"gradients {health.verdict}: {'; '.join(health.notes)}")
    warning = persistence_warning(m.metrics)
    if warning:
        print(warning)
    return 0


def score_line(metrics: dict[str, Any], horizon: int, transform: str | None = None) -> str:
    """One line: streamed and window test RMSE next to the baselines, raw units."""
    seasonal = metrics["baselines"].get("seasonal_naive")
    streamed = metrics.get("streamed")
    lead = (f"test RMSE streamed {streamed['rmse']:.4g} (what a served stream returns), window {metrics['rmse']:.4g}"
            if streamed else f"test RMSE {metrics['rmse']:.4g} (windows)")
    return (
        lead + f" vs persistence {metrics['persistence_rmse']:.4g}"
        + (f" and seasonal naive {seasonal['rmse']:.4g} (season {seasonal['season']})" if seasonal else "")
        + f" ({metrics['windows']} test rows, raw units, {horizon} step{'s' if horizon != 1 else ''} ahead"
        + (f", target transform {transform}" if transform else "") + ")"
    )


def build_export_parser() -> argparse.ArgumentParser:
    """The ``eddy export`` argument parser; every flag's help states its default."""
    p = argparse.ArgumentParser(
        prog="eddy export",
        description=(
            "Export an existing Keras model (a stack of SimpleRNN, LSTM or GRU layers with a Dense head; "
            "Dropout layers in between are fine) to ONNX with explicit state, verify it with the same three "
            "parity checks as eddy train, and write OUT/<next version>/ with manifest.json, step.onnx, "
            "sequence.onnx and model.keras."
        ),
        epilog=(
            "The model is used as it was trained: by default the graphs take and return what the Keras model "
            "takes and returns (raw in, raw out, no normalisation added). A model trained on scaled data needs its "
            "scaling given with --input-mean/--input-std/--target-mean/--target-std; it goes inside the graphs. "
            "--data only scores the exported graphs (window and streamed test RMSE next to persistence) and feeds "
            "the parity checks; it never changes the graphs. Exit status: 0 written; 2 bad flags, data or an "
            "unsupported model (one line on stderr; nothing written); 1 export or parity check failed "
            "(nothing written)."
        ),
    )
    p.add_argument("model", type=Path, metavar="FILE.keras", help="the Keras model file (required)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="model directory; writes DIR/<next integer version>/ (required)")
    p.add_argument("--name", help="model name in the manifest (default: the last part of --out)")
    p.add_argument("--data", type=Path, metavar="FILE.csv",
                   help="CSV to score the exported graphs on (its test part, window and streamed) and to draw the "
                        "parity inputs from; never changes the graphs (default: none, parity on seeded random inputs)")
    p.add_argument("--norm-identity", action="store_true",
                   help="state explicitly that the model takes and returns raw values (this is the default)")
    for flag, what, default in (("--input-mean", "subtracted from each input column", 0),
                                ("--input-std", "each input column is divided by", 1),
                                ("--target-mean", "added to each output after scaling", 0),
                                ("--target-std", "each output is multiplied by", 1)):
        p.add_argument(flag, type=float, nargs="+", metavar="V",
                       help=f"the model's own scaling, {what}: one value per column or one for all; put inside "
                            f"the graphs (default: {default}, nothing added)")
    p.add_argument("--format", choices=("onnx", "ort"), nargs="+", default=["onnx"], dest="formats",
                   help="graph files to write: onnx (step.onnx, sequence.onnx; always) and ort (also step.ort, "
                        "sequence.ort: onnxruntime's format for its mobile and minimal builds) (default: onnx)")
    p.add_argument("--features", nargs="+", metavar="COL",
                   help="input column names (default: with --data as in eddy train, else x0, x1, ...)")
    p.add_argument("--target", "--targets", nargs="+", dest="targets", metavar="COL",
                   help="output column names (default: with --data as in eddy train, else y0, y1, ...)")
    p.add_argument("--window", type=_at_least(1), default=None, metavar="N",
                   help="window length recorded in the manifest (default: the model's input length, else 10)")
    p.add_argument("--horizon", type=_at_least(1), default=1, metavar="N",
                   help="steps ahead the model predicts, recorded in the manifest (default: 1)")
    p.add_argument("--split", type=_split, default=_DEFAULTS.split, metavar="TRAIN,VAL,TEST",
                   help="with --data: time-ordered split; statistics come from the training part "
                        f"(default: {','.join(f'{f:g}' for f in _DEFAULTS.split)})")
    p.add_argument("--fill", choices=FILLS, default=None,
                   help="with --data: handle missing values as in eddy train (default: an error)")
    p.add_argument("--seed", type=_seed, default=0, metavar="N",
                   help="seed of the parity checks' random chunks and inputs (default: 0)")
    return p


def export_main(argv: list[str] | None = None) -> int:
    """Run ``eddy export`` with ``argv``; returns the exit status (see the parser's epilog)."""
    parser = build_export_parser()
    args = parser.parse_args(argv)
    if not all(_importable(m) for m in _TRAIN_MODULES):
        print(EXPORT_EXTRA_MESSAGE, file=sys.stderr)
        return 2
    from eddy.trainer.from_keras import export_keras_file  # tensorflow is imported inside

    try:
        result = export_keras_file(
            args.model, args.out, features=args.features, targets=args.targets, window=args.window,
            horizon=args.horizon, data=args.data, fill=args.fill, split=args.split,
            norm_identity=args.norm_identity, input_mean=args.input_mean, input_std=args.input_std,
            target_mean=args.target_mean, target_std=args.target_std, formats=tuple(args.formats),
            name=args.name, seed=args.seed,
        )
    except (EddyError, OSError, KeyboardInterrupt) as e:
        return _failed("export", e)
    m = result.manifest
    print(f"wrote {result.version_dir}  ({m.name} v{m.version}: {m.cell} {m.layers}x{m.units}, "
          f"{len(m.features)} feature(s) -> {len(m.targets)} target(s), window {m.window}; "
          f"{m.training.get('normalization')})")
    if m.metrics:
        print(score_line(m.metrics, m.horizon))
    print(_parity_line(m.parity))
    warning = persistence_warning(m.metrics, "if the model was trained on scaled data, give its scaling "
                                                  "(--input-mean/--input-std/--target-mean/--target-std)")
    if warning:
        print(warning)
    return 0


def _failed(command: str, e: BaseException) -> int:
    """``eddy COMMAND: MESSAGE`` on stderr through the one exit-status table (nothing was written)."""
    if isinstance(e, KeyboardInterrupt):
        return report(command, KeyboardInterrupt("interrupted; nothing was written"))
    return report(command, e)


def _parity_line(parity: dict[str, Any]) -> str:
    checks = ", ".join(f"{k} {v:.2g}" for k, v in parity.items() if k != "tolerance" and isinstance(v, (int, float)))
    line = f"parity max abs error (tolerance {parity['tolerance']:g}): {checks}"
    raw = parity.get("self_contained")
    if isinstance(raw, dict):
        line += (f"; raw-unit graphs vs float64 transform, error/allowance: chained step {raw['chained_step']:.2g}, "
                 f"chunked sequence {raw['chunked_sequence']:.2g}")
    return line


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


def _rate(text: str) -> float:
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
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
