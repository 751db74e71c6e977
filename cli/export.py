"""``eddy export``: the command-line front end of :func:`eddy.trainer.from_keras.export_keras_file`.

This module imports neither tensorflow nor the training modules at import
time, so ``--help`` is instant and works without the training extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eddy.runtime.core.errors import EddyError
from eddy.trainer.config import FILLS, TrainConfig
from eddy.trainer.evaluate import baseline_warnings, blend_summary

from . import trainer_common as c

__all__ = ["EXPORT_EXTRA_MESSAGE", "build_parser", "main"]

EXPORT_EXTRA_MESSAGE = "eddy export needs the training extra: pip install 'eddy-rnn[train]'"
_DEFAULTS = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
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
            "--data only scores the exported graphs (window and streamed test RMSE next to persistence), calibrates "
            "prediction intervals on its validation part (--intervals) and feeds the parity checks; it never changes "
            "the graphs; without --data the version has no intervals. A model.keras written by eddy train or eddy "
            "export carries what its served model puts around the network (normalisation, target transform, window, "
            "horizon; or the manifest.json next to it says so): exporting it rebuilds that served model, the same "
            "predictions bit for bit, and flags that would change it are refused. "
            "Exit status: 0 written; 2 bad flags, data or an unsupported model or a broken model file (one line "
            "on stderr, before tensorflow is imported where the file shows it; nothing written); 1 export or "
            "parity check failed (nothing written)."
        ),
    )
    p.add_argument("model", type=Path, metavar="FILE.keras",
                   help="the Keras model file: .keras (model.save('m.keras')) or legacy .h5; a TensorFlow SavedModel "
                        "directory is not supported (required)")
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
    p.add_argument("--semantics", choices=("stream", "window"), default=None,
                   help="stream: state carried over the whole stream (the recurrent state); window: every answer "
                        "depends only on the last --window samples, exactly model.predict on that window (the "
                        "state is the window buffer; zeros before a stream's first samples) (default: an eddy-written "
                        "file's record, else stream)")
    c.add_format_flag(p)
    p.add_argument("--features", nargs="+", metavar="COL",
                   help="input column names (default: with --data as in eddy train, else x0, x1, ...)")
    p.add_argument("--target", "--targets", nargs="+", dest="targets", metavar="COL",
                   help="output column names (default: with --data as in eddy train, else y0, y1, ...)")
    p.add_argument("--window", type=c.at_least(1), default=None, metavar="N",
                   help="window length recorded in the manifest (default: the model's input length, else 10)")
    p.add_argument("--horizon", type=c.at_least(1), default=None, metavar="N",
                   help="steps ahead the model predicts, recorded in the manifest (default: an eddy-written file's "
                        "record, else 1)")
    p.add_argument("--split", type=c.split, default=None, metavar="TRAIN,VAL,TEST",
                   help="with --data: the time-ordered split whose test part is scored (default: an eddy-written "
                        f"file's record, else {','.join(f'{f:g}' for f in _DEFAULTS.split)})")
    p.add_argument("--season", type=c.at_least(1), default=None, metavar="N",
                   help="with --data: also score the seasonal-naive baseline (the target N steps before the predicted "
                        "one), with a warning line when it beats the streamed test score (default: off)")
    p.add_argument("--fill", choices=FILLS, default=None,
                   help="with --data: handle missing values as in eddy train (default: an error)")
    c.add_intervals_flag(p, _DEFAULTS.intervals)
    p.add_argument("--seed", type=c.seed, default=0, metavar="N",
                   help="seed of the parity checks' random chunks and inputs (default: 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``eddy export`` with ``argv``; returns the exit status (see the parser's epilog)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not c.has_training_extra():
        print(EXPORT_EXTRA_MESSAGE, file=sys.stderr)
        return 2
    from eddy.trainer.from_keras import export_keras_file  # tensorflow is imported inside

    try:
        result = export_keras_file(
            args.model, args.out, features=args.features, targets=args.targets, window=args.window,
            horizon=args.horizon, data=args.data, fill=args.fill, split=args.split, season=args.season,
            norm_identity=args.norm_identity, input_mean=args.input_mean, input_std=args.input_std,
            target_mean=args.target_mean, target_std=args.target_std, formats=c.formats(args.formats),
            semantics=args.semantics, intervals=tuple(sorted(set(args.intervals))),
            name=args.name, seed=args.seed,
        )
    except (EddyError, OSError, KeyboardInterrupt) as e:
        return c.failed("export", e)
    m = result.manifest
    print(f"wrote {result.version_dir}  ({m.name} v{m.version}: {m.cell} {m.layers}x{m.units}, "
          f"{len(m.features)} feature(s) -> {len(m.targets)} target(s), window {m.window}; "
          f"{m.training.get('normalization')})")
    if "baselines" in m.metrics:  # scored on --data
        print(c.score_line(m.metrics, m.horizon))
    elif blend := blend_summary(m.metrics.get("blend")):  # not scored, but the record's blend is served
        print(f"blend: {blend}")
    for line in c.interval_lines(m.metrics, m.calibration):
        print(line)
    print(c.parity_line(m.parity))
    for warning in baseline_warnings(
            m.metrics, window=m.window, advice=_advice(result.unscaled, rebuilt=result.rebuilt_from is not None),
            seasonal_advice="retrain it with windows spanning at least one season, or with eddy train "
                            "--target-transform seasonal_delta --season N"):
        print(warning)
    return 0


def _advice(unscaled: tuple[str, ...], rebuilt: bool) -> str | None:
    """What to try when the export loses to persistence: the scaling flags still missing, if any (None: eddy
    train's advice, for a model eddy trained and rebuilt from its record)."""
    if rebuilt:
        return None
    if len(unscaled) == 4:
        return "if the model was trained on scaled data, give its scaling (" + "/".join(unscaled) + ")"
    if unscaled:
        return "if the model was trained on scaled data, give the rest of its scaling (" + "/".join(unscaled) + ")"
    return ("its scaling is inside the graphs as given: check that it is the scaling the model was trained with, "
            "or train the model longer")
