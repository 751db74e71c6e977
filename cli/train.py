"""``eddy train``: the command-line front end of :func:`eddy.trainer.train.train`.

This module imports neither tensorflow nor the training modules at import
time, so ``--help`` is instant and works without the training extra.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from eddy.runtime.core.errors import EddyError
from eddy.trainer.config import BASELINES, BLENDS, CELLS, FILLS, PRECISIONS, PRESETS, TARGET_TRANSFORMS, TRAININGS, TrainConfig
from eddy.trainer.evaluate import baseline_warnings

from . import trainer_common as c

__all__ = ["TRAIN_EXTRA_MESSAGE", "build_parser", "main"]

TRAIN_EXTRA_MESSAGE = "eddy train needs the training extra: pip install 'eddy-rnn[train]'"
_DEFAULTS = TrainConfig()
_SEED = TrainConfig.for_preset("seed")


def build_parser() -> argparse.ArgumentParser:
    """The ``eddy train`` argument parser; every flag's help states its default."""
    d = _DEFAULTS
    p = argparse.ArgumentParser(
        prog="eddy train",
        description=(
            "Train a recurrent model on a time series, export it to ONNX (step and sequence "
            "graphs with explicit state), verify the export against Keras, and write "
            "OUT/<next version>/ with manifest.json, step.onnx, sequence.onnx (and .ort twins with --format onnx ort), "
            "model.keras, report.json and report.png."
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
                      help="input columns (default: the target columns if --target is given, else the single "
                           "numeric column: the one whose cells are mostly numbers)")
    data.add_argument("--target", "--targets", nargs="+", dest="targets", metavar="COL",
                      help="columns to predict (default: the feature column, when there is one)")
    data.add_argument("--window", type=c.at_least(1), default=d.window, metavar="N",
                      help="samples per input window; with --training tbptt the truncation length, the steps fed "
                           f"per gradient step with the state carried on (default: {d.window})")
    data.add_argument("--horizon", type=c.at_least(1), default=d.horizon, metavar="N",
                      help="predict the target N steps after the window's last sample; a stream's output for "
                           f"sample t is then its prediction for t+N (default: {d.horizon})")
    data.add_argument("--split", type=c.split, default=d.split, metavar="TRAIN,VAL,TEST",
                      help="time-ordered split fractions, summing to 1; normalisation uses the training part only "
                           f"(default: {','.join(f'{f:g}' for f in d.split)})")
    data.add_argument("--fill", choices=FILLS, default=None,
                      help="handle missing values (empty, NA, NaN, null) in the used columns: ffill = last value, "
                           "interpolate = linear, drop = drop the row (default: a missing value is an error)")
    data.add_argument("--season", type=c.at_least(1), default=None, metavar="N",
                      help="the season in samples: also score the seasonal-naive baseline (the target N steps before the "
                           "predicted one), with a warning line when it beats the model's streamed test score, and "
                           "let --target-transform auto try seasonal_delta (default: off)")
    data.add_argument("--target-transform", choices=TARGET_TRANSFORMS, default=d.target_transform,
                      help="what the network predicts: level = the value; delta = the change from the last observed "
                           "value (inputs become changes too), for trending series; log_delta = the same on a log "
                           "scale (positive data); seasonal_delta (with --season N) = the change from the value one "
                           "season before the predicted one (inputs become changes over a season), for seasonal series; "
                           "double_delta (with --season N) = both differences of the airline model: the change from "
                           "the last value plus last season's change over the same steps (never tried by auto); "
                           "auto = train one network of --auto-units units for each that applies (seasonal_delta "
                           "when --season is given) and keep the best validation RMSE. "
                           "The transform is inside the exported graphs, which take and return raw units "
                           f"(default: {d.target_transform})")
    data.add_argument("--baselines", choices=BASELINES, default=d.baselines,
                      help="what the test score is compared with: naive = persistence (and seasonal naive with "
                           "--season); classical = also statsforecast's AutoETS, AutoARIMA and AutoTheta (season "
                           "length --season), each fitted once on the rows before the test part and run over each "
                           "test row's past with fixed parameters, like the streamed score; AutoARIMA takes seconds "
                           f"to minutes on long seasonal series (default: {d.baselines})")
    data.add_argument("--blend", choices=BLENDS, default=d.blend,
                      help="arima = with one target that is also a feature and --horizon 1, fit statsforecast's "
                           "AutoARIMA (season --season) on the training rows, weight it against the networks by "
                           "their errors on the validation rows (w = MSE_networks / (MSE_networks + MSE_ARIMA)), refit "
                           "its orders on the training and validation rows and serve (1 - w) x networks + w x ARIMA, "
                           "the ARIMA's one-step recursion running inside the exported graphs as state; "
                           f"none = the networks alone (default: {d.blend})")

    model = p.add_argument_group("model")
    model.add_argument("--cell", choices=CELLS, default=d.cell, help=f"recurrent cell (default: {d.cell})")
    model.add_argument("--layers", type=c.at_least(1), default=d.layers, metavar="N",
                       help=f"stacked recurrent layers (default: {d.layers})")
    model.add_argument("--units", type=c.at_least(1), default=None, metavar="N",
                       help=f"units per recurrent layer of each network (default: {d.units}; --preset seed: "
                            f"{_SEED.units})")
    model.add_argument("--auto-units", type=c.at_least(1), default=d.auto_units, metavar="N",
                       help="units of the one network per candidate that --target-transform auto compares (capped "
                            "at --units; when equal, the winner is the first network kept, else the networks are "
                            f"trained after the choice) (default: {d.auto_units})")
    model.add_argument("--preset", choices=list(PRESETS), default=d.preset,
                       help="the recipe the other flags' defaults come from (flags given win): default = "
                            f"{d.members} networks of {d.units} units averaged (--members), up to {d.epochs} epochs; "
                            "seed = the seed article's "
                            f"network as it was, SimpleRNN({_SEED.units}), window 10, Dense(1), MSE, Adam, 10 epochs "
                            "(--patience 5), batch 32, one network "
                            f"(default: {d.preset})")
    model.add_argument("--members", type=c.at_least(1), default=None, metavar="N",
                       help="train N networks from seeds S, S+1, ... (with the target transform chosen before them) and "
                            "average them inside one exported graph: one recurrent stack of N x --units units with "
                            "block-diagonal weights, state the members' states side by side "
                            f"(default: {d.members}; --preset seed: {_SEED.members})")
    model.add_argument("--dropout", type=c.rate, default=d.dropout, metavar="RATE",
                       help=f"dropout on each recurrent layer's inputs, training only (default: {d.dropout:g})")
    model.add_argument("--recurrent-dropout", type=c.rate, default=d.recurrent_dropout, metavar="RATE",
                       help=f"dropout on each recurrent layer's state, training only (default: {d.recurrent_dropout:g})")
    model.add_argument("--l2", type=c.non_negative_float, default=d.l2, metavar="FACTOR",
                       help=f"L2 weight penalty on every kernel, input, recurrent and Dense (default: {d.l2:g}, off)")

    fit = p.add_argument_group("training")
    fit.add_argument("--epochs", type=c.at_least(1), default=None, metavar="N",
                     help=f"maximum epochs; early stopping (--patience) keeps the best validation epoch "
                          f"(default: {d.epochs}; --preset seed: {_SEED.epochs})")
    fit.add_argument("--training", choices=TRAININGS, default=d.training,
                     help="windows = the seed's many-to-one training on shuffled windows, each from zero state; "
                          "tbptt = truncated backpropagation through time: the training rows cut into parallel "
                          "streams fed --window steps at a time with the state carried between batches (reset each "
                          "epoch), every step's target in the loss, validation streamed from the first row; "
                          f"trains what a served stream does (default: {d.training})")
    fit.add_argument("--batch-size", type=c.at_least(1), default=d.batch_size, metavar="N",
                     help="windows per gradient step; with --training tbptt the most parallel streams (fewer when "
                          "each would span under 10 windows: min(N, training rows // (10 x window)), at least 1) "
                          f"(default: {d.batch_size})")
    fit.add_argument("--lr", type=c.positive_float, default=d.lr, metavar="RATE",
                     help=f"Adam learning rate (default: {d.lr:g})")
    fit.add_argument("--clipnorm", type=c.non_negative_float, default=None, metavar="NORM",
                     help=f"clip each gradient to this norm, a guard against exploding gradients; 0 turns it off "
                          f"(default: {d.clipnorm}, or off with --clipvalue)")
    fit.add_argument("--clipvalue", type=c.non_negative_float, default=None, metavar="V",
                     help="clip every gradient element to [-V, V] instead of clipping the norm (default: off)")
    fit.add_argument("--patience", type=c.at_least(0), default=None, metavar="N",
                     help=f"stop after N epochs without validation-loss improvement; the best epoch's weights "
                          f"are kept (default: {d.patience}; --preset seed: {_SEED.patience})")
    fit.add_argument("--reduce-lr-patience", type=c.at_least(0), default=d.reduce_lr_patience, metavar="N",
                     help=f"halve the learning rate after N epochs without validation-loss improvement "
                          f"(default: {d.reduce_lr_patience}, off)")
    fit.add_argument("--seed", type=c.seed, default=None, metavar="N",
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
    c.add_format_flag(out, quantize=True)
    c.add_intervals_flag(out, d.intervals)
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
    preset = TrainConfig.for_preset(args.preset)
    config = TrainConfig(
        preset=args.preset,
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
        baselines=args.baselines,
        blend=args.blend,
        cell=args.cell,
        layers=args.layers,
        units=preset.units if args.units is None else args.units,
        auto_units=args.auto_units,
        members=preset.members if args.members is None else args.members,
        dropout=args.dropout,
        recurrent_dropout=args.recurrent_dropout,
        l2=args.l2,
        epochs=preset.epochs if args.epochs is None else args.epochs,
        training=args.training,
        batch_size=args.batch_size,
        lr=args.lr,
        clipnorm=clipnorm or None,
        clipvalue=args.clipvalue or None,
        patience=preset.patience if args.patience is None else args.patience,
        reduce_lr_patience=args.reduce_lr_patience,
        seed=args.seed,
        out=args.out,
        name=args.name,
        quantize=args.quantize,
        formats=c.formats(args.formats),
        intervals=tuple(sorted(set(args.intervals))),
    )
    try:
        config.validate()
    except ValueError as e:
        parser.error(str(e))
    if not c.has_training_extra():
        print(TRAIN_EXTRA_MESSAGE, file=sys.stderr)
        return 2

    from eddy.trainer.train import train  # cheap; tensorflow is imported inside, after the data checks

    log: Callable[[str], None] | None = None if args.quiet else c.print_flush
    try:
        result = train(config, log=log)
    except (EddyError, OSError, KeyboardInterrupt) as e:
        return c.failed("train", e)

    health = result.gradient_health
    if args.quiet:
        if health.exploded or health.vanished:
            print(f"eddy train: warning: gradients {health.verdict}: {'; '.join(health.notes)}", file=sys.stderr)
        for warning in baseline_warnings(result.manifest.metrics, window=result.manifest.window,
                                         training=config.training):
            print(f"eddy train: {warning}", file=sys.stderr)
        for line in c.interval_lines(result.manifest.metrics, {}):  # without a calibration: the warnings only
            print(f"eddy train: {line}", file=sys.stderr)
        print(result.version_dir)
        return 0
    m, t = result.manifest, result.manifest.training
    print(
        f"wrote {result.version_dir}  ({m.name} v{m.version}: {m.cell} {m.layers}x{m.units}, "
        f"{t['epochs_run']} epochs, best {t['best_epoch']}; train {result.train_seconds:.1f} s, "
        f"export+verify {result.export_seconds:.1f} s)"
    )
    print(c.score_line(m.metrics, m.horizon, m.target_transform))
    for line in c.interval_lines(m.metrics, m.calibration):
        print(line)
    print(c.parity_line(m.parity))
    print(f"gradients {health.verdict}: {'; '.join(health.notes)}")
    for warning in baseline_warnings(m.metrics, window=m.window, training=config.training):
        print(warning)
    return 0
