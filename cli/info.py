"""``eddy info``: what a model version is, how it was made and how good it is.

Reads ``manifest.json`` (checked, hashes verified) and, when present,
``report.json`` from a model version directory and prints one aligned table:
architecture, I/O, state tensors, graphs (ops, sizes, int8 twins),
normalisation, parity (vs Keras float64, or vs a fixed tolerance in older manifests), test error vs the naive and
classical baselines,
training run, gradient health, creation time and library versions.
``--json`` prints the same figures as one JSON object.

Runtime side: no tensorflow, no matplotlib.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eddy.runtime.core.errors import EddyError, NotFound
from eddy.runtime.core.layout import REPORT_FILE, resolve_version_dir
from eddy.runtime.core.manifest import Manifest, read_manifest
from eddy.runtime.core.monitor import CUSUM_LIMIT
from eddy.trainer.classical import LABELS as CLASSICAL_LABELS  # numpy only (no statsforecast)
from eddy.trainer.evaluate import baseline_warnings, blend_summary  # numpy only (no tensorflow)

from . import connect
from .errors import UsageError, report

__all__ = ["build_parser", "collect", "format_table", "main"]

_KEY_WIDTH = 14  # width of the left column
_WRAP = 100  # total line width for wrapped values
_VERSIONS = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "eddy")


def collect(path: str | Path) -> dict[str, Any]:
    """The merged figures of the model version at ``path`` (``models/NAME`` or ``models/NAME/V``).

    Raises :class:`~eddy.runtime.core.errors.NotFound` or
    :class:`~eddy.runtime.core.errors.ModelLoadError` for a missing or broken directory.
    A missing ``report.json`` is not an error; an unreadable one is noted.
    """
    version_dir = resolve_version_dir(path)
    m = read_manifest(version_dir)
    report, report_error = _read_report(version_dir)
    training = m.training or {}
    history = report.get("history") or {}
    test = _test_figures(m, report)
    return {
        "path": str(version_dir),
        "name": m.name,
        "version": m.version,
        "cell": m.cell,
        "layers": m.layers,
        "units": m.units,
        "features": m.features,
        "targets": m.targets,
        "window": m.window,
        "horizon": m.horizon,
        "state": [{"name": s.name, "shape": s.shape} for s in m.state],
        "graphs": {key: {"file": g.file, "bytes": _size(version_dir / g.file), "ops": g.ops, "sha256": g.sha256}
                   for key, g in m.graphs.items()},
        "opset": m.opset,
        "normalization": {
            "inputs": {c: {"mean": mu, "std": sd} for c, mu, sd in zip(
                m.features, m.normalization.input_mean, m.normalization.input_std)},
            "targets": {c: {"mean": mu, "std": sd} for c, mu, sd in zip(
                m.targets, m.normalization.target_mean, m.normalization.target_std)},
        },
        "io": m.io,
        "target_transform": m.target_transform,
        "ensemble": m.metrics.get("ensemble"),  # --members N > 1: the averaged networks
        "blend": m.metrics.get("blend"),  # --blend arima: the ARIMA in the graph and its weight
        "parity": m.parity,
        "test": test,
        "intervals": {"calibration": m.calibration or None, "test": m.metrics.get("intervals")},
        "warnings": baseline_warnings(m.metrics, window=m.window, training=training.get("training")),
        "training": {
            "training": training.get("training"),  # windows or tbptt (absent before --training existed)
            "streams": training.get("streams"),  # tbptt's stream layout
            "epochs_run": training.get("epochs_run", len(history.get("epoch") or []) or None),
            "epochs": training.get("epochs"),
            "best_epoch": training.get("best_epoch"),
            "seed": training.get("seed"),
            "train_seconds": training.get("train_seconds"),
            "data": training.get("data") or report.get("data"),
        },
        "gradient_health": report.get("gradient_health"),
        "int8": m.metrics.get("int8") or report.get("quantization"),
        "created": m.created,
        "versions": m.versions,
        "report": None if report_error else (REPORT_FILE if report else None),
        "report_error": report_error,
    }


def format_table(info: dict[str, Any]) -> str:
    """``info`` (from :func:`collect`) as an aligned, human-readable table."""
    rows: list[tuple[str, str]] = []

    def row(key: str, value: str) -> None:
        rows.append((key, value))

    row("model", f"{info['name']} v{info['version']}  ({info['path']})")
    row("architecture", f"{info['cell']} x{info['layers']} ({info['units']} units) -> Dense({len(info['targets'])})"
                        + _ensemble(info.get("ensemble")))
    row("io", f"{', '.join(info['features'])} -> {', '.join(info['targets'])}  "
              f"(F={len(info['features'])}, O={len(info['targets'])})")
    row("window", f"{info['window']} samples, predicts {info['horizon']} step{'s' if info['horizon'] != 1 else ''} "
                  f"ahead")
    row("state", ", ".join(f"{s['name']} [B, {', '.join(map(str, s['shape']))}]" for s in info["state"]))
    for key, g in info["graphs"].items():
        row("graph" if key == next(iter(info["graphs"])) else "", f"{key:<14} {g['file']:<19} {_kib(g['bytes']):>9}")
        row("", "  ops: " + " ".join(g["ops"]))
    row("opset", str(info["opset"]))
    norm = info["normalization"]
    inside = info.get("io") == "raw"
    row("io units", "raw in, raw out: normalisation and target transform "
                    f"({info.get('target_transform', 'level')}) inside the graphs" if inside else
                    "normalised: the runtime applies the normalisation below around the graphs")
    changes = " (of the changes)" if info.get("target_transform", "level") != "level" else ""
    row("normalisation", "; ".join(f"in {c}: mean {v['mean']:.4g}, std {v['std']:.4g}" for c, v in norm["inputs"].items())
        + changes)
    if norm["targets"] != norm["inputs"]:
        row("", "; ".join(f"out {c}: mean {v['mean']:.4g}, std {v['std']:.4g}" for c, v in norm["targets"].items()))
    row("parity", _parity(info["parity"]))
    _test_rows(row, info["test"])
    if (blend := blend_summary(info.get("blend"))) is not None:
        row("blend", blend)
    _interval_rows(row, info.get("intervals") or {}, info["targets"])
    for warning in info.get("warnings") or []:
        row("", warning)
    row("training", _training(info["training"]))
    row("gradients", _gradients(info["gradient_health"]))
    if info["int8"]:
        _int8_rows(row, info["int8"], [v["std"] for v in norm["targets"].values()])
    else:
        row("int8", "none (train with --quantize int8)")
    row("created", info["created"] or "unknown")
    versions = info["versions"]
    row("versions", "  ".join(f"{k} {versions[k]}" for k in _VERSIONS if k in versions) or "unknown")
    if info.get("report_error"):
        row("report", f"unreadable: {info['report_error']}")
    elif not info.get("report"):
        row("report", f"no {REPORT_FILE} (gradient health and baselines beyond persistence unavailable)")
    return "\n".join(_render(rows))


def build_parser() -> argparse.ArgumentParser:
    """The ``eddy info`` argument parser."""
    p = argparse.ArgumentParser(prog="eddy info", description="Show a model version's manifest and report figures.",
                                epilog="exit status: 0 ok; 2 the directory is missing, holds no version, or its "
                                       "manifest is broken or does not match its files.")
    p.add_argument("path", type=Path, help="models/NAME (highest version) or models/NAME/VERSION; with --live, the "
                                           "model's name on the server")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object (default: a table)")
    live = p.add_argument_group("live accuracy, from a running server")
    live.add_argument("--live", action="store_true",
                      help="show the model's live accuracy on --server instead: RMSE and MAE of the model and of the "
                           "naive baselines on the actuals its streams delivered, interval coverage and the drift "
                           "alarm, next to the test part's figures (default: off)")
    live.add_argument("--server", metavar="HOST:PORT", help="the eddy server, with --live (default: none)")
    live.add_argument("--version", default=None, help="with --live: the model version (default: the latest)")
    live.add_argument("--session", default="", metavar="ID",
                      help="with --live: one session's figures instead of the model's pooled ones (default: none)")
    connect.add_client_flags(live)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``eddy info PATH [--json]``; returns the exit status (2 for a missing or broken model, as everywhere)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.live or args.server:
        return _live(args)
    try:
        info = collect(args.path)
    except NotFound as e:  # the directory the user named
        return report("info", UsageError(e.message))
    except (EddyError, OSError, KeyboardInterrupt) as e:
        return report("info", e)
    print(json.dumps(info, indent=2, allow_nan=False, default=str) if args.json else format_table(info))
    return 0


def _live(args: argparse.Namespace) -> int:
    """``eddy info --live --server HOST:PORT MODEL``: the server's live accuracy of MODEL (or of one session)."""
    if not (args.live and args.server):
        return report("info", UsageError("--live and --server go together: eddy info --live --server HOST:PORT MODEL"))
    try:
        with connect.connected(args) as client:
            live = client.live_accuracy(str(args.path), args.version, args.session)
    except (EddyError, OSError, KeyboardInterrupt) as e:
        return report("info", e)
    figures = live_figures(live)
    print(json.dumps(figures, indent=2, allow_nan=False) if args.json else format_live(figures, args.server))
    return 0


def live_figures(live: Any) -> dict[str, Any]:
    """A ``LiveAccuracy`` message as plain figures (what ``--json`` prints)."""
    return {"model": live.model, "version": live.version, "session": live.session_id, "actuals": live.actuals,
            "window": live.window, "rmse": dict(live.rmse), "mae": dict(live.mae),
            "error_ratio": live.error_ratio or None, "coverage": dict(live.coverage), "drift": live.drift,
            "cusum": list(live.cusum), "test_rmse": dict(live.test_rmse), "test_coverage": dict(live.test_coverage)}


def format_live(f: dict[str, Any], server: str) -> str:
    """The live figures as an aligned table, next to the test part's."""
    rows: list[tuple[str, str]] = []
    who = f"session {f['session']}" if f["session"] else "pooled over its sessions on this server"
    rows.append(("model", f"{f['model']} v{f['version']} on {server} ({who})"))
    rows.append(("actuals", f"{f['actuals']} scored, exponentially weighted over the last {f['window']}"))
    if not f["actuals"]:
        rows.append(("", "nothing scored yet: live figures come from the actuals streams send (the targets among "
                         "their features), one horizon after each forecast"))
    rows.append(("", f"{'live RMSE':>10}  {'live MAE':>10}  {'test RMSE':>10}"))
    for predictor in ("model", "persistence", "seasonal_naive"):
        if predictor in f["rmse"] or predictor in f["test_rmse"]:
            rows.append((predictor.replace("_", " "), f"{_num(f['rmse'].get(predictor)):>10}  "
                                                      f"{_num(f['mae'].get(predictor)):>10}  "
                                                      f"{_num(f['test_rmse'].get(predictor)):>10}"))
    test_ratio = None
    base = [v for k, v in f["test_rmse"].items() if k != "model"]
    if base and _finite(f["test_rmse"].get("model")):
        test_ratio = f["test_rmse"]["model"] / min(base)
    rows.append(("error ratio", f"{_num(f['error_ratio'], '.3g')} (model / best baseline; test part "
                                f"{_num(test_ratio, '.3g')})"))
    for level in sorted(set(f["coverage"]) | set(f["test_coverage"]), key=float):
        rows.append((f"coverage {float(level):.0%}", f"{_pct(f['coverage'].get(level))} of the actuals inside their "
                                                     f"interval (test part, as served: "
                                                     f"{_pct(f['test_coverage'].get(level))})"))
    cusum = ", ".join(_num(v, ".1f") for v in f["cusum"])
    rows.append(("drift", f"{'RAISED' if f['drift'] else 'no'} (CUSUM statistics {cusum}; the alarm rises above "
                          f"{CUSUM_LIMIT:g})"))
    return "\n".join(_render(rows))


# -- collecting ------------------------------------------------------------------------------


def _read_report(version_dir: Path) -> tuple[dict[str, Any], str | None]:
    path = version_dir / REPORT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return {}, f"{path}: {e}"
    return (data, None) if isinstance(data, dict) else ({}, f"{path}: expected a JSON object")


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _test_figures(m: Manifest, report: dict[str, Any]) -> dict[str, Any]:
    """Test RMSE/MAE and baselines (raw units): the report's if present, else the manifest's."""
    metrics, test, baselines = m.metrics, report.get("test") or {}, report.get("baselines") or {}
    out: dict[str, Any] = {
        "rmse": test.get("rmse", metrics.get("rmse")),
        "mae": test.get("mae", metrics.get("mae")),
        "windows": metrics.get("windows"),
        "baselines": {},
    }
    streamed = metrics.get("streamed") or {}
    if streamed.get("rmse") is not None:
        out["streamed"] = {"rmse": streamed.get("rmse"), "mae": streamed.get("mae")}
    persistence = baselines.get("persistence") or {
        "rmse": metrics.get("persistence_rmse"), "mae": metrics.get("persistence_mae")}
    if persistence.get("rmse") is not None:
        out["baselines"]["persistence"] = {"rmse": persistence.get("rmse"), "mae": persistence.get("mae")}
    seasonal = baselines.get("seasonal_naive") or {}
    if seasonal.get("rmse") is not None:
        out["baselines"]["seasonal_naive"] = {k: seasonal.get(k) for k in ("season", "rmse", "mae")}
    for key in CLASSICAL_LABELS:  # AutoETS, AutoARIMA, AutoTheta: absent from manifests written before them
        b = baselines.get(key) or (metrics.get("baselines") or {}).get(key)
        if isinstance(b, dict):
            out["baselines"][key] = {k: b.get(k) for k in ("model", "rmse", "mae", "error") if k in b}
    per_target = test.get("per_target") or metrics.get("per_target")
    if per_target and len(per_target) > 1:
        out["per_target"] = {c: {"rmse": v.get("rmse"), "mae": v.get("mae")} for c, v in per_target.items()}
    return out


# -- formatting -------------------------------------------------------------------------------


def _render(rows: list[tuple[str, str]]) -> list[str]:
    lines, indent = [], " " * (_KEY_WIDTH + 2)
    for key, value in rows:
        wrapped = textwrap.wrap(value, width=_WRAP - len(indent), subsequent_indent="    ",
                                break_on_hyphens=False) or [""]
        lines.append(f"{key:<{_KEY_WIDTH}}  {wrapped[0]}")
        lines.extend(indent + w for w in wrapped[1:])
    return lines


def _num(value: Any, fmt: str = ".4g") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _kib(n: int | None) -> str:
    return "missing" if n is None else f"{n / 1024:.1f} KiB"


def _ensemble(ensemble: Any) -> str:
    """'' or ': the average of 5 networks of 50 units (validation RMSE 18.4; members 18.7-19.9)'."""
    if not isinstance(ensemble, dict) or not _finite(ensemble.get("members")):
        return ""
    val = ensemble.get("validation_rmse") or {}
    members = [v for v in val.get("members") or [] if _finite(v)]
    spread = f"; members {_num(min(members))}-{_num(max(members))}" if members else ""
    return (f": the average of {ensemble['members']} networks of {ensemble.get('member_units')} units, block-diagonal "
            f"(validation RMSE {_num(val.get('average'))}{spread})")


def _parity(parity: dict[str, Any]) -> str:
    raw = parity.get("self_contained")
    suffix = ""
    if isinstance(raw, dict):
        suffix = (f"; raw-unit graphs vs float64 transform, error/allowance: chained step "
                  f"{_num(raw.get('chained_step'), '.2g')}, chunked sequence {_num(raw.get('chunked_sequence'), '.2g')}"
                  f" ({raw.get('rule', '')})")
    blend = parity.get("blend")
    if isinstance(blend, dict):
        suffix += (f"; blended graphs vs float64 blend, error/allowance: chained step "
                   f"{_num(blend.get('chained_step'), '.2g')}, chunked sequence "
                   f"{_num(blend.get('chunked_sequence'), '.2g')}")
    return _core_parity(parity) + suffix


def _core_parity(parity: dict[str, Any]) -> str:
    if isinstance(parity.get("checks"), dict):  # judged against Keras float32's own rounding (trainer.parity)
        checks = {k: c for k, c in parity["checks"].items() if isinstance(c, dict)}
        ok = all(_finite(c.get("error")) and _finite(c.get("limit")) and c["error"] <= c["limit"] for c in checks.values())
        return "; ".join(
            f"{k} {_num(c.get('error'), '.2e')} (Keras float32 {_num(c.get('keras_float32_error'), '.2e')}, "
            f"limit {_num(c.get('limit'), '.2e')}, {c.get('steps')} steps, passed by {c.get('rule')})"
            for k, c in checks.items()) + f"  ({'ok' if ok else 'EXCEEDED'}: {parity.get('rule')})  [model units]"
    tol = parity.get("tolerance")
    checks = {k: v for k, v in parity.items() if k != "tolerance" and isinstance(v, (int, float))}
    if not checks:
        return "not recorded"
    limits = parity.get("limits") if isinstance(parity.get("limits"), dict) else {}
    if limits:  # relative rule: each check against its own limit (tolerance scaled by the outputs' magnitude)
        ok = all(_finite(limits.get(k)) and v <= limits[k] for k, v in checks.items())
        verdict = f"  (limits {', '.join(_num(limits.get(k), '.2g') for k in checks)}: {'ok' if ok else 'EXCEEDED'})"
        return "  ".join(f"{k} {_num(v, '.2e')}" for k, v in checks.items()) + verdict + "  [model units]"
    worst = max(checks.values())
    verdict = "" if not isinstance(tol, (int, float)) else (
        f"  (tolerance {tol:g}: {'ok' if worst <= tol else 'EXCEEDED'})")
    return "  ".join(f"{k} {_num(v, '.2e')}" for k, v in checks.items()) + verdict + "  [normalised units]"


def _test_rows(row: Any, test: dict[str, Any]) -> None:
    rmse = test.get("rmse")
    windows = f"{test['windows']} windows, " if test.get("windows") else ""
    streamed = test.get("streamed")
    if streamed:
        row("test", f"streamed RMSE {_num(streamed.get('rmse'))}  MAE {_num(streamed.get('mae'))}  (the graph over "
                    "the whole series with carried state: what a served stream returns)")
        row("", f"window RMSE {_num(rmse)}  MAE {_num(test.get('mae'))}  ({windows}each from zero state, raw units)")
        rmse = streamed.get("rmse")
    elif rmse is not None:
        row("test", f"window RMSE {_num(rmse)}  MAE {_num(test.get('mae'))}  ({windows}raw units; "
                    "streamed score not recorded)")
    else:
        row("test", "not scored (export without --data)")
    for key, label in (("persistence", "persistence"), ("seasonal_naive", "seasonal naive"),
                       *CLASSICAL_LABELS.items()):
        b = test["baselines"].get(key)
        if not b:
            continue
        if b.get("error"):
            row(label, f"not scored: {b['error']}")
            continue
        season = f" (season {b['season']})" if b.get("season") else ""
        fitted = f" ({b['model']})" if b.get("model") else ""
        row(label, f"RMSE {_num(b.get('rmse'))}  MAE {_num(b.get('mae'))}{season}{fitted}  "
                   f"{_compare(rmse, b.get('rmse'))}")
    for col, v in (test.get("per_target") or {}).items():
        row("", f"{col}: RMSE {_num(v.get('rmse'))}  MAE {_num(v.get('mae'))}")


def _interval_rows(row: Any, intervals: dict[str, Any], targets: list[str]) -> None:
    """The calibration and what it covers on the test part (or how to get one)."""
    cal = intervals.get("calibration")
    if not cal:
        row("intervals", "none: made before eddy calibrated intervals (retrain with eddy train, or calibrate the Keras "
                         "model with eddy export model.keras --data FILE.csv --out DIR)")
        return
    levels = cal.get("levels") or []
    sign = "+-" if cal.get("space") == "absolute" else "x/ 1+"
    widths = "; ".join(f"{t}: " + ", ".join(f"{_pct(lv)} {sign}{_num(q)}" for lv, q in zip(levels, qs))
                       for t, qs in (cal.get("quantiles") or {}).items())
    online = cal.get("online") or {}
    row("intervals", f"split conformal on {cal.get('rows')} streamed validation residuals, {cal.get('space')} space: "
                     f"{widths}; recalibrated online per session (gamma {online.get('gamma')}, "
                     + ("on normalised scores" if cal.get("normalised") else "on the half-width itself: calibrated "
                        "before normalised scores") + f", live window {online.get('window')} samples)")
    test = intervals.get("test") or {}
    for name, f in (test.get("levels") or {}).items():
        row("", f"{name}%: covers {_pct(f.get('coverage'))} of the {test.get('rows')} test rows (served, recalibrated "
                f"online: {_pct(f.get('served_coverage'))}), width {_num(f.get('width'))} vs persistence "
                f"{_num(f.get('persistence_width'))} at the same coverage")


def _pct(value: Any) -> str:
    return f"{value:.1%}" if _finite(value) else "n/a"


def _compare(model: Any, baseline: Any) -> str:
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (model, baseline)) or baseline <= 0:
        return ""
    change = (model - baseline) / baseline
    return f"-> model RMSE {abs(change):.0%} {'lower' if change < 0 else 'HIGHER'}"


def _training(t: dict[str, Any]) -> str:
    parts = []
    streams = t.get("streams")
    if t.get("training") == "tbptt" and isinstance(streams, dict):  # --training tbptt: the stream layout
        parts.append(f"tbptt ({streams.get('streams')} streams x {streams.get('stream_rows')} rows, "
                     f"chunks of {streams.get('chunk')})")
    elif t.get("training") == "windows":
        parts.append("windows")
    if t.get("epochs_run") is not None:
        parts.append(f"{t['epochs_run']}" + (f"/{t['epochs']}" if t.get("epochs") else "") + " epochs run")
    if t.get("best_epoch") is not None:
        parts.append(f"best epoch {t['best_epoch']}")
    if t.get("seed") is not None:
        parts.append(f"seed {t['seed']}")
    if t.get("train_seconds") is not None:
        parts.append(f"{_num(t['train_seconds'], '.1f')} s")
    data = t.get("data") or {}
    if isinstance(data, str):  # eddy export --data records the CSV path
        data = {"source": "csv", "path": data}
    if data:
        parts.append(f"data {data.get('source', '?')} {data.get('path') or data.get('name') or ''}".rstrip()
                     + (f" ({data['rows']} rows)" if data.get("rows") else ""))
    return ", ".join(parts) or "not recorded"


def _gradients(health: dict[str, Any] | None) -> str:
    if not health:
        return "not recorded"
    status = [s for s, on in (("EXPLODED", health.get("exploded")), ("VANISHED", health.get("vanished"))) if on]
    notes = "; ".join(str(n) for n in health.get("notes") or [])
    return (" and ".join(status) if status else "healthy") + (f": {notes}" if notes else "")


def _int8_rows(row: Any, q: dict[str, Any], target_std: list[float]) -> None:
    graphs = q.get("graphs") or {}
    for i, (key, g) in enumerate(graphs.items()):
        quantized = ", ".join(f"{n} {op}" for op, n in (g.get("quantized_ops") or {}).items()) or "nothing"
        floats = sum((g.get("float_weight_ops_in_loops") or {}).values())
        diff = g.get("max_abs_diff")
        raw = f" = {_num(diff * target_std[0], '.3g')} raw" if len(target_std) == 1 and _finite(diff) else ""
        row("int8" if i == 0 else "",
            f"{key:<9} {_kib(g.get('float_bytes'))} -> {_kib(g.get('int8_bytes'))}, "
            f"max abs diff {_num(diff, '.2g')} normalised{raw}, quantised: {quantized}"
            + (f"; {floats} MatMul(s) in a Loop left float" if floats else ""))
    lat = q.get("latency_us") or {}
    if lat:
        row("", f"step latency (batch {lat.get('batch', 1)}, median): float {_num(lat.get('step_float'), '.1f')} us, "
                f"int8 {_num(lat.get('step_int8'), '.1f')} us")
    for note in q.get("notes") or []:
        row("", f"note: {note}")
