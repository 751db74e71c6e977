"""What ``eddy train`` and ``eddy export`` share: the training-extra check, result lines, argument types.

No tensorflow here (``--help`` must work without the training extra).
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from typing import Any

from eddy.runtime.core.layout import GRAPH_FORMATS
from eddy.trainer.classical import LABELS as CLASSICAL_LABELS  # numpy only (statsforecast is imported when fitting)
from eddy.trainer.evaluate import blend_summary  # numpy only

from .errors import report

__all__ = ["TRAIN_MODULES", "add_format_flag", "add_intervals_flag", "at_least", "failed", "finite_float", "formats",
           "has_training_extra", "interval_lines", "level",
           "non_negative_float", "parity_line", "positive_float", "print_flush", "rate", "score_line", "seed", "split"]

TRAIN_MODULES = ("tensorflow", "keras", "tf2onnx", "onnx", "statsforecast")  # what the training extra provides


def has_training_extra() -> bool:
    """True when every module of the training extra can be imported."""
    return all(_importable(m) for m in TRAIN_MODULES)


def score_line(metrics: dict[str, Any], horizon: int, transform: str | None = None) -> str:
    """One line: streamed and window test RMSE next to the baselines, raw units."""
    seasonal = metrics["baselines"].get("seasonal_naive")
    streamed = metrics.get("streamed")
    lead = (f"test RMSE streamed {streamed['rmse']:.4g} (what a served stream returns), window {metrics['rmse']:.4g}"
            if streamed else f"test RMSE {metrics['rmse']:.4g} (windows)")
    classical = [f"{label} {b['rmse']:.4g}" if "rmse" in b else f"{label} failed"
                 for key, label in CLASSICAL_LABELS.items() if isinstance(b := metrics["baselines"].get(key), dict)]
    return (
        lead + f" vs persistence {metrics['persistence_rmse']:.4g}"
        + (f", seasonal naive {seasonal['rmse']:.4g} (season {seasonal['season']})" if seasonal else "")
        + (", " + ", ".join(classical) if classical else "")
        + f" ({metrics['windows']} test rows, raw units, {horizon} step{'s' if horizon != 1 else ''} ahead"
        + (f", target transform {transform}" if transform else "") + ")"
        + (f"\nblend: {blend}" if (blend := blend_summary(metrics.get("blend"))) else "")
    )


def add_intervals_flag(parser: argparse.ArgumentParser | Any, default: tuple[float, ...]) -> None:
    """``--intervals L [L ...]``: the levels ``eddy train`` and ``eddy export --data`` calibrate (one help text)."""
    parser.add_argument("--intervals", type=level, nargs="+", default=list(default), metavar="LEVEL",
                        help="prediction-interval levels to calibrate, each in (0, 1): split conformal on the streamed "
                             "validation residuals, recorded in the manifest with the test part's coverage; a served "
                             "or local stream returns them on request, recalibrated online "
                             f"(default: {' '.join(f'{v:g}' for v in default)})")


def interval_lines(metrics: dict[str, Any], calibration: dict[str, Any]) -> list[str]:
    """Each level's calibrated interval and its coverage of the test part, and a warning per level left out."""
    intervals = metrics.get("intervals") or {}
    figures = intervals.get("levels") or {}
    notes = [f"warning: {note}" for note in intervals.get("notes") or []]
    if not calibration or not figures:
        return notes
    parts = [f"{name}% covers {f['coverage']:.1%} (served {f['served_coverage']:.1%}), width {f['width']:.4g} vs "
             f"persistence's {f['persistence_width']:.4g}" for name, f in figures.items()]
    return [f"intervals (split conformal, {calibration.get('rows')} validation residuals, {calibration.get('space')}) "
            f"on the {intervals['rows']} test rows: " + "; ".join(parts), *notes]


def add_format_flag(parser: argparse.ArgumentParser | Any, quantize: bool = False) -> None:
    """``--format onnx ort``: the graph files ``eddy train`` and ``eddy export`` write (one flag, one help text);
    ``quantize``: the command also has ``--quantize``."""
    int8 = ", and the int8 graphs' twins with --quantize" if quantize else ""
    parser.add_argument("--format", choices=GRAPH_FORMATS, nargs="+", default=["onnx"], dest="formats",
                        help="graph files to write: onnx (step.onnx, sequence.onnx; always) and ort (also step.ort, "
                             f"sequence.ort{int8}: onnxruntime's format for its mobile and minimal builds; "
                             "eddy.runtime.load(..., graph_format='ort') runs them) (default: onnx)")


def formats(given: list[str]) -> tuple[str, ...]:
    """``--format``'s values as the trainer takes them: onnx first (always written), no repeats."""
    return tuple(dict.fromkeys(["onnx", *given]))


def failed(command: str, e: BaseException) -> int:
    """``eddy COMMAND: MESSAGE`` on stderr through the one exit-status table (nothing was written)."""
    if isinstance(e, KeyboardInterrupt):
        return report(command, KeyboardInterrupt("interrupted; nothing was written"))
    return report(command, e)


def parity_line(parity: dict[str, Any]) -> str:
    checks = ", ".join(f"{k} {c['error']:.2g} ({c['keras_float32_error']:.2g})" for k, c in parity["checks"].items())
    line = f"parity vs Keras float64, max abs error (Keras float32's own), passed {parity['rule']}: {checks}"
    raw = parity.get("self_contained")
    if isinstance(raw, dict):
        line += (f"; raw-unit graphs vs float64 transform, error/allowance: chained step {raw['chained_step']:.2g}, "
                 f"chunked sequence {raw['chunked_sequence']:.2g}")
    blend = parity.get("blend")
    if isinstance(blend, dict):
        line += (f"; blended graphs vs float64 blend, error/allowance: chained step {blend['chained_step']:.2g}, "
                 f"chunked sequence {blend['chunked_sequence']:.2g}")
    return line


def print_flush(line: str) -> None:
    print(line, flush=True)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def level(text: str) -> float:
    value = finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"an interval level is a coverage in (0, 1), e.g. 0.8, got {text}")
    return value


def rate(text: str) -> float:
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def seed(text: str) -> int:
    value = at_least(0)(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be below 2**32, got {value}")
    return value


def split(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions TRAIN,VAL,TEST, got {text!r}")
    fractions = tuple(finite_float(p.strip()) for p in parts)
    if any(f <= 0 for f in fractions):
        raise argparse.ArgumentTypeError(f"every fraction must be positive, got {text!r}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(f"fractions must sum to 1, got {text!r} (sum {sum(fractions):g})")
    return fractions  # type: ignore[return-value]
