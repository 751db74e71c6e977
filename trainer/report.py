"""The training report: ``report.json`` and ``report.png`` in a model version directory.

:func:`write_report` takes the report dict that :func:`eddy.trainer.train.train`
builds (model, config, data, history, gradient health, test metrics, naive
baselines, test predictions, parity and, with ``--quantize int8``,
quantisation figures) and writes:

- ``report.json``: the dict as pretty JSON; NaN and infinities (a diverged
  run) become ``null`` so any JSON reader accepts the file;
- ``report.png``: three panels, readable at a glance: (a) train/val loss per
  epoch, (b) global and recurrent-kernel gradient norms per epoch with
  explosion/vanishing flagged, (c) predicted vs actual on the test part per
  target, with the 80 % interval a served stream returned as a band (or the
  lowest calibrated level when 0.8 is not one), titled with the test RMSE next
  to the persistence (and seasonal naive) baseline, with the best classical
  baseline's forecasts (AutoETS, AutoARIMA or AutoTheta, when the run scored
  them) drawn and every baseline's RMSE in the legend.

matplotlib is imported inside :func:`write_report` with the headless Agg
backend, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .classical import LABELS as _CLASSICAL  # baseline key -> legend name (numpy only)

__all__ = ["REPORT_JSON", "REPORT_PNG", "json_safe", "write_report"]

REPORT_JSON = "report.json"
REPORT_PNG = "report.png"
_FIGSIZE = (12.0, 8.0)  # inches; with _DPI a 1200x800 image
_DPI = 100
_MAX_TARGET_PANELS = 4  # predicted-vs-actual panels drawn; more targets are listed in the title


def json_safe(value: Any, *, keep_nonfinite: bool = False) -> Any:
    """``value`` with numpy scalars/arrays as Python types and non-finite floats as ``None``
    (kept as they are with ``keep_nonfinite``)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v, keep_nonfinite=keep_nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, keep_nonfinite=keep_nonfinite) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy array or scalar
        return json_safe(value.tolist(), keep_nonfinite=keep_nonfinite)
    if isinstance(value, float) and not math.isfinite(value) and not keep_nonfinite:
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_report(version_dir: Path, report: dict[str, Any]) -> None:
    """Write ``report.json`` and ``report.png`` for ``report`` into ``version_dir``.

    Optional parts (seasonal baseline, quantisation, recurrent gradient norms,
    test predictions) may be missing or ``None``; the plot leaves them out.
    """
    version_dir = Path(version_dir)
    safe = json_safe(report)
    (version_dir / REPORT_JSON).write_text(json.dumps(safe, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    _plot(json_safe(report, keep_nonfinite=True), version_dir / REPORT_PNG)  # the plot marks NaN/inf epochs


# -- the figure -------------------------------------------------------------------------------


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless; no display needed
    import matplotlib.pyplot as plt

    model = report.get("model") or {}
    predictions = report.get("test_predictions") or {}
    targets = list(predictions.get("targets") or model.get("targets") or [])
    shown = targets[:_MAX_TARGET_PANELS] or ["(no test predictions)"]

    fig = plt.figure(figsize=_FIGSIZE, dpi=_DPI)
    grid = fig.add_gridspec(2, len(shown), height_ratios=[1, 1.15])
    top = grid[0, :].subgridspec(1, 2, wspace=0.25)
    try:
        _loss_panel(fig.add_subplot(top[0, 0]), report.get("history") or {})
        _gradient_panel(fig.add_subplot(top[0, 1]), report.get("history") or {}, report.get("gradient_health") or {})
        for j, target in enumerate(shown):
            _prediction_panel(fig.add_subplot(grid[1, j]), report, j, target, len(shown))
        fig.suptitle(_headline(report), fontsize=13, fontweight="bold")
        fig.tight_layout()
        fig.savefig(path, dpi=_DPI)
    finally:
        plt.close(fig)


def _headline(report: dict[str, Any]) -> str:
    m = report.get("model") or {}
    name = f"{m.get('name', '?')} v{m.get('version', '?')}"
    arch = f"{m.get('cell', '?')} x{m.get('layers', '?')} ({m.get('units', '?')} units)"
    io = f"{', '.join(m.get('features') or [])} -> {', '.join(m.get('targets') or [])}"
    return f"{name}: {arch}, window {m.get('window', '?')}, horizon {m.get('horizon', '?')}, {io}"


def _series(history: dict[str, Any], key: str) -> list[float | None]:
    values = history.get(key) or []
    return [v if isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]


def _epochs(history: dict[str, Any], n: int) -> list[int]:
    epochs = history.get("epoch") or []
    return list(epochs) if len(epochs) == n else list(range(1, n + 1))


def _spans_decades(*columns: Sequence[float | None]) -> bool:
    values = [v for col in columns for v in col if v is not None and v > 0]
    return bool(values) and max(values) / min(values) >= 10.0


def _mark_nonfinite(ax: Any, history: dict[str, Any], keys: Sequence[str]) -> None:
    """A red dashed line at each epoch where one of ``keys`` was NaN or infinite."""
    bad = sorted({e for key in keys for e, v in zip(_epochs(history, len(history.get(key) or [])),
                                                    history.get(key) or [])
                  if isinstance(v, float) and not math.isfinite(v)})
    for i, e in enumerate(bad):
        ax.axvline(e, color="firebrick", linestyle="--", linewidth=1, label="non-finite (NaN/inf)" if i == 0 else None)


def _plot_line(ax: Any, epochs: list[int], values: list[float | None], **kw: Any) -> None:
    """Plot ``values`` against ``epochs``, skipping missing points (None)."""
    pts = [(e, v) for e, v in zip(epochs, values) if v is not None]
    if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o", markersize=3, **kw)


def _loss_panel(ax: Any, history: dict[str, Any]) -> None:
    loss, val = _series(history, "loss"), _series(history, "val_loss")
    epochs = _epochs(history, len(loss))
    _plot_line(ax, epochs, loss, label="train loss")
    _plot_line(ax, _epochs(history, len(val)), val, label="val loss")
    _mark_nonfinite(ax, history, ("loss", "val_loss"))
    finite_val = [(v, e) for e, v in zip(_epochs(history, len(val)), val) if v is not None]
    if finite_val:
        best, best_epoch = min(finite_val)
        ax.axvline(best_epoch, color="grey", linestyle=":", linewidth=1,
                   label=f"best val loss {best:.3g} (epoch {best_epoch})")
    if _spans_decades(loss, val):
        _log_y(ax)
    ax.set_title("(a) Loss per epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (normalised units)")
    _integer_ticks(ax)
    _legend_or_empty(ax, "no loss history")


def _gradient_panel(ax: Any, history: dict[str, Any], health: dict[str, Any]) -> None:
    glob, rec = _series(history, "grad_norm"), _series(history, "recurrent_grad_norm")
    _plot_line(ax, _epochs(history, len(glob)), glob, label="global gradient norm")
    _plot_line(ax, _epochs(history, len(rec)), rec, label="recurrent kernel gradient norm")
    _mark_nonfinite(ax, history, ("grad_norm", "recurrent_grad_norm"))
    if any(v is not None and v > 0 for v in glob + rec):
        _log_y(ax)
    exploded, vanished = bool(health.get("exploded")), bool(health.get("vanished"))
    status = [s for s, on in (("EXPLODED", exploded), ("VANISHED", vanished)) if on]
    ax.set_title("(b) Gradient norms per epoch" + (f": {' and '.join(status)}" if status else ": healthy"),
                 color="firebrick" if status else "black")
    for note in [str(n) for n in health.get("notes") or []][:3]:
        ax.plot([], [], " ", label=_shorten(note, 60))  # in the legend, which avoids the lines
    ax.set_xlabel("epoch")
    ax.set_ylabel("L2 norm (log)" if ax.get_yscale() == "log" else "L2 norm")
    _integer_ticks(ax)
    _legend_or_empty(ax, "no gradient norms recorded")


def _prediction_panel(ax: Any, report: dict[str, Any], j: int, target: str, n_panels: int) -> None:
    predictions = report.get("test_predictions") or {}
    actual = [_at(row, j) for row in predictions.get("actual") or []]
    predicted = [_at(row, j) for row in predictions.get("predicted") or []]
    labels = list(predictions.get("labels") or [])
    xs, x_label, categorical = _x_axis(labels, len(actual), (report.get("data") or {}).get("time_column"))
    if actual:
        ax.plot(xs, actual, color="black", linewidth=1.6, label="actual")
    if predicted:
        ax.plot(xs[: len(predicted)], predicted, color="tab:orange", linewidth=1.4, linestyle="--",
                label=_model_label(report, target))
    streamed = [_at(row, j) for row in predictions.get("streamed") or []]
    if streamed:  # what a served stream returned for the same rows
        s_rmse = (((report.get("test") or {}).get("streamed") or {}).get("per_target") or {}).get(target, {}).get("rmse")
        ax.plot(xs[: len(streamed)], streamed, color="tab:blue", linewidth=1.2, linestyle=":",
                label=f"streamed (served): RMSE {_num(s_rmse)}")
        mix = (report.get("test") or {}).get("blend") or {}
        if mix.get("kind") == "arima":  # the served line is the blend: name it, with the networks' own score
            own = (mix.get("network_streamed") or {}).get("rmse")
            ax.plot([], [], " ", label=f"  = {1 - mix['weight']:.2f} x networks (alone: RMSE {_num(own)}) + "
                                       f"{mix['weight']:.2f} x {(mix.get('arima') or {}).get('model', 'ARIMA')}")
    band, band_values = _band(report), []
    if band is not None:  # the interval a served stream returned for the same rows
        name, bounds, figures = band
        lower = [_at(row, j) for row in bounds.get("lower") or []]
        upper = [_at(row, j) for row in bounds.get("upper") or []]
        pts = [(x, lo, hi) for x, lo, hi in zip(xs, lower, upper) if lo is not None and hi is not None]
        if pts:
            bx, blo, bhi = zip(*pts)
            ax.fill_between(bx, blo, bhi, color="tab:blue", alpha=0.15, linewidth=0,
                            label=f"{name}% interval (served): covers {_pct(figures.get('served_coverage'))} "
                                  f"of the test part")
            band_values = list(blo + bhi)  # inside the y range below
    best = _best_classical(report, target)
    if best is not None:  # the classical baseline with the lowest test RMSE for this target
        key, rmse = best
        forecast = [_at(row, j) for row in (predictions.get("classical") or {}).get(key) or []]
        if forecast:
            ax.plot(xs[: len(forecast)], forecast, color="tab:green", linewidth=1.0, linestyle="-.", alpha=0.8,
                    label=f"{_CLASSICAL[key]} (best classical): RMSE {_num(rmse)}")
    persistence = _baseline_text(report, target)
    if persistence:
        ax.plot([], [], " ", label=persistence)  # baselines in the legend, no line
    values = [v for v in actual + predicted + streamed + band_values if v is not None]
    if values:  # headroom above the data for the legend
        low, high = min(values), max(values)
        ax.set_ylim(low - 0.05 * (high - low or 1.0), high + 0.45 * (high - low or 1.0))
    if categorical:
        step = max(1, len(xs) // max(3, 8 // n_panels))
        ax.set_xticks(xs[::step], [str(labels[i]) for i in range(0, len(xs), step)], rotation=30, ha="right")
    h = (report.get("model") or {}).get("horizon")
    ahead = f", {h} step{'s' if h != 1 else ''} ahead" if isinstance(h, int) else ""
    ax.set_title(f"(c) Test set: {target} predicted vs actual{ahead}\n{_verdict(report, target)}", fontsize=11)
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"{target} (raw units)")
    _legend_or_empty(ax, "no test predictions")


def _band(report: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """The interval band to draw: level 80 if calibrated, else the lowest; (name, bounds, test figures)."""
    bands = (report.get("test_predictions") or {}).get("intervals") or {}
    if not bands:
        return None
    name = "80" if "80" in bands else min(bands, key=float)
    figures = ((((report.get("test") or {}).get("intervals") or {}).get("levels") or {}).get(name)) or {}
    return name, bands[name], figures


def _pct(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _verdict(report: dict[str, Any], target: str) -> str:
    """'streamed RMSE 18.3 vs persistence 29.1: beats it; vs AutoARIMA 18.97: 0.96x' for the panel title
    (the streamed score when the report has it, what a served stream returns; else the window one)."""
    test = report.get("test") or {}
    streamed = test.get("streamed") or {}
    source = streamed if streamed else test
    rmse = ((source.get("per_target") or {}).get(target) or {}).get("rmse", source.get("rmse"))
    which = "streamed RMSE" if streamed else "test RMSE"
    base = (report.get("baselines") or {}).get("persistence")
    base_rmse = ((base.get("per_target") or {}).get(target) or base).get("rmse") if isinstance(base, dict) else None
    if not isinstance(rmse, (int, float)):
        return "test RMSE n/a"
    if not isinstance(base_rmse, (int, float)):
        return f"{which} {_num(rmse)}"
    verdict = "beats persistence" if rmse < base_rmse else "does NOT beat persistence"
    line = f"{which} {_num(rmse)} vs persistence {_num(base_rmse)}: {verdict}"
    best = _best_classical(report, target)
    if best is not None and best[1] > 0:
        line += f"; vs {_CLASSICAL[best[0]]} {_num(best[1])}: {rmse / best[1]:.2f}x"
    return line


def _model_label(report: dict[str, Any], target: str) -> str:
    test = report.get("test") or {}
    per = (test.get("per_target") or {}).get(target) or {}
    rmse, mae = per.get("rmse", test.get("rmse")), per.get("mae", test.get("mae"))
    return f"window predictions: RMSE {_num(rmse)}, MAE {_num(mae)}"


def _baseline_text(report: dict[str, Any], target: str) -> str:
    """Baseline figures for the legend; per-target when given, else overall."""
    lines = []
    baselines = report.get("baselines") or {}
    for key, label in (("persistence", "persistence (last value)"), ("seasonal_naive", "seasonal naive"),
                       *_CLASSICAL.items()):
        b = baselines.get(key)
        if not isinstance(b, dict):
            continue
        if b.get("error"):
            lines.append(f"{label}: not scored ({_shorten(str(b['error']), 40)})")
            continue
        per = (b.get("per_target") or {}).get(target) or b
        season = f", season {b['season']}" if key == "seasonal_naive" and b.get("season") else ""
        lines.append(f"{label}{season}: RMSE {_num(per.get('rmse'))}, MAE {_num(per.get('mae'))}")
    return "\n".join(lines)


def _best_classical(report: dict[str, Any], target: str) -> tuple[str, float] | None:
    """``(key, RMSE)`` of the classical baseline with the lowest test RMSE for ``target``, if any was scored."""
    baselines = report.get("baselines") or {}
    scored = []
    for key in _CLASSICAL:
        b = baselines.get(key)
        rmse = ((b.get("per_target") or {}).get(target) or b).get("rmse") if isinstance(b, dict) else None
        if isinstance(rmse, (int, float)) and math.isfinite(rmse):
            scored.append((rmse, key))
    return (min(scored)[1], min(scored)[0]) if scored else None


def _x_axis(labels: list[Any], n: int, time_column: str | None) -> tuple[list[Any], str, bool]:
    """x values for ``n`` points: numeric labels (years) as numbers, other labels (dates) as ticks."""
    if len(labels) != n or n == 0:
        return list(range(n)), "test sample index", False
    name = time_column or "label"
    numeric = [_as_number(v) for v in labels]
    if all(v is not None for v in numeric):
        return numeric, name, False
    return list(range(n)), name, True


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    try:
        return float(str(value))
    except ValueError:
        return None


def _at(row: Any, j: int) -> float | None:
    value = row[j] if isinstance(row, (list, tuple)) else (row if j == 0 else None)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _log_y(ax: Any) -> None:
    """Log y axis with plain tick labels (0.2, 1, 300) instead of 2x10^-1."""
    from matplotlib.ticker import FuncFormatter

    def minor(v: float, _: Any) -> str:
        # Label the 2s, 3s and 5s unless the axis spans three decades or more.
        low, high = ax.get_ylim()
        mantissa = round(v / 10 ** math.floor(math.log10(v)), 6) if v > 0 else 0
        return f"{v:.3g}" if low > 0 and high / low < 1000 and mantissa in (2, 3, 5) else ""

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))
    ax.tick_params(axis="y", which="minor", labelsize=8)


def _integer_ticks(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend_or_empty(ax: Any, empty: str) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.grid(True, alpha=0.3)


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
