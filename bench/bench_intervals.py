"""Prediction intervals, online recalibration and the drift alarm on the bundled series; the monitor's cost per step.

Not a test (pytest does not collect it). Run from the repository root::

    .venv/bin/python bench/bench_intervals.py                      # 2-5 min: trains the four series, then measures
    .venv/bin/python bench/bench_intervals.py --workdir /tmp/iv    # keep (and reuse) the trained models there
    .venv/bin/python bench/bench_intervals.py --series sunspots --parts coverage changes

Parts (``--parts``):

- ``coverage``: every bundled series trained with ``eddy train --seed S`` and the data flags of
  ``bench/train_table.py`` (other flags at their defaults); the manifest's test figures: coverage of the
  split-conformal intervals (calibrated widths), coverage as served (online recalibration from the series' first
  row), mean width, and the width of persistence-residual intervals of the same coverage; next to them the
  binomial standard error of a coverage at the nominal level over that many test rows.
- ``changes``: each model streamed (a fresh ``Stream``, the series as one chunk: the code the server runs, whose
  intervals are bit for bit those of one-sample pushes) over its series with a change injected on the target's
  column, ``--draws`` times each (default 30): a variance jump (Gaussian noise of 2 x the test RMSE added from the
  first validation row on, a new noise seed per draw), a level shift (+2 standard deviations of the training part)
  and a frozen sensor (the last value repeated), both at ``--draws`` rows spread evenly over the validation and
  test parts (the calibration, made at training, is untouched). Reported per series and change, over the
  forecasts issued after the change (to the end for the variance jump; as many as the test part has for the
  others): the mean over draws, with its standard error, of the coverage of the calibrated (split-conformal)
  intervals around the same predictions and of the served ones (online recalibration); the drift alarm's
  detection rate within those forecasts and its delay (samples from the change's first sample to the session's
  alarm: median and 90th percentile over the draws that detect it). Then the level shift's effect on the model's
  errors (MAE over the forecasts after it over the same forecasts' MAE on the unchanged series; the shift's own
  error in reference MAEs), the detection rate of level shifts of 0.5-8 standard deviations, and online
  recalibration methods compared on the same draws (quantile tracking on normalised scores, the monitor's; on the
  half-width itself with steps 0.1, the monitor's for calibrations without normalised scores, 0.2 and 0.3; with a
  scale-relative additive step, conformal PID control's; and an aggregation of steps; horizon-1 single-target
  series): coverage after the change, and in control
  (the unchanged validation and test parts) the coverage, mean width and mean interval score. Last, why the online
  coverage misses after a variance jump when the half-width itself is tracked (log width, step 0.1: the monitor's
  before normalised scores, and still for calibrations without them): the miss rate over the T forecasts
  after the change exceed its nominal by exactly log(w_end / w_start) / (gamma T); the width growth r the change
  demanded, that deficit next to the measured one, and the step that would keep r within 5 points.
- ``steps``: the online recalibration's step (``gamma``) on synthetic Gaussian errors whose standard deviation
  grows sqrt(5)-fold: coverage over the 80 forecasts after the jump, and the in-control width over the oracle's.
- ``alarms``: false alarms of the drift test: alarms raised while streaming each unchanged series, and the
  in-control rate from a circular block bootstrap (blocks of 20) of the test part's standardised errors: 200 runs of
  10,000 actuals each.
- ``cost``: the monitor's time per step next to the step graph's (``Model._run_step``) at batch 1, 32 and 256, and
  per sample of a 4,096-sample chunk next to the sequence graph; medians of interleaved repeats, this process; of
  the committed model or ``--cost-model DIR`` (e.g. one calibrated without normalised scores); wall time, or with
  ``--clock cpu`` this process's CPU time.

The machine's load (``os.getloadavg``) is printed before and after each part.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_table import SERIES  # noqa: E402  the data flags of each bundled series

import eddy.runtime as runtime  # noqa: E402
from eddy.cli.train import main as train_main  # noqa: E402
from eddy.runtime.core.calibration import level_name, scale_path, scores  # noqa: E402
from eddy.runtime.core.monitor import CUSUM_LIMIT, cusum_path  # noqa: E402
from eddy.trainer.series import load_csv  # noqa: E402

PARTS = ("coverage", "changes", "steps", "alarms", "cost")
CHANGES = ("level shift", "variance jump", "frozen sensor")


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def trained(name: str, workdir: Path, seed: int) -> runtime.Model:
    out = workdir / name
    if not (out / "1" / "manifest.json").is_file():
        flags = [*SERIES[name], "--seed", str(seed), "--quiet", "--out", str(out)]
        started = time.perf_counter()
        if train_main(flags) != 0:
            raise SystemExit(f"eddy train {' '.join(flags)} failed")
        print(f"  trained {name} in {time.perf_counter() - started:.0f} s", flush=True)
    return runtime.load(out / "1")


def raw_series(model: runtime.Model, name: str) -> np.ndarray:
    """The series' raw inputs ``[N, F]`` (float32), read as eddy train read them."""
    flags = SERIES[name]
    path = Path(flags[flags.index("--data") + 1]) if "--data" in flags else Path("trainer/data/sunspots.csv")
    fill = flags[flags.index("--fill") + 1] if "--fill" in flags else None
    s = load_csv(path, model.features, model.targets, fill=fill)
    return s.inputs.astype(np.float32)


def part_coverage(models: dict[str, runtime.Model]) -> None:
    print("\n| series | transform | test rows | level | binomial s.e. of a nominal coverage | coverage, split conformal | "
          "served (online) | mean width | served width | persistence width, same coverage | width / persistence |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, m in models.items():
        iv = m.manifest.metrics.get("intervals") or {}
        for key, f in (iv.get("levels") or {}).items():
            se = math.sqrt(float(key) / 100 * (1 - float(key) / 100) / iv["rows"])
            print(f"| {name} | {m.manifest.target_transform} | {iv['rows']} | {key} % | {se:.1%} | {f['coverage']:.1%} | "
                  f"{f['served_coverage']:.1%} | {f['width']:.4g} | {f['served_width']:.4g} | {f['persistence_width']:.4g} | "
                  f"{f['width'] / f['persistence_width']:.2f} |")
        for note in iv.get("notes") or []:
            print(f"| {name} | | | note: {note} | | | | | | | |")


DRAWS = 30  # independent draws of each injected change (--draws)
SHIFTS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)  # level shifts swept, in standard deviations of the training part


def changed(x: np.ndarray, model: runtime.Model, t0: int, kind: str, seed: int, size: float = 2.0) -> np.ndarray:
    """``x`` with ``kind`` injected on the target columns from row ``t0`` on (a level shift of ``size`` standard
    deviations of the training part; Gaussian noise of 2 x the test RMSE drawn with ``seed``; the last value
    repeated)."""
    x = x.copy()
    cols = [model.features.index(t) for t in model.targets if t in model.features]
    train_end = model.manifest.training["split_rows"]["train"][1]
    if kind == "level shift":
        x[t0:, cols] += size * x[:train_end, cols].std(axis=0)
    elif kind == "variance jump":
        rmse = float((model.manifest.metrics.get("streamed") or model.manifest.metrics)["rmse"])
        x[t0:, cols] += np.random.default_rng(seed).normal(0.0, 2.0 * rmse, (len(x) - t0, len(cols)))
        if model.manifest.target_transform == "log_delta":
            x[t0:, cols] = np.maximum(x[t0:, cols], x[:train_end, cols].min(axis=0) * 0.5)
    else:
        x[t0:, cols] = x[t0 - 1, cols]
    return x.astype(np.float32)


def streamed(model: runtime.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The series as one chunk through a fresh stream and its monitor (a chunk's intervals are bit for bit those of
    the same samples pushed one by one): predictions ``[N, O]``, the answer with every level's bounds and the
    scored errors ``[N, E]``."""
    y = model.stream().push(x)
    adv = model.monitor.advance(model.monitor.fresh(1), 0, x[None], y[None])
    return y, adv.answer[0], adv.observed[0]


def drift_rows(observed: np.ndarray) -> np.ndarray:
    """``[N]`` bool: the session's alarm after each row (either statistic above the limit), from its scored errors
    (the monitor's own recursion, ``cusum_path``)."""
    sums = []
    for col, shewhart in ((-2, True), (-1, False)):
        v = observed[:, col]
        ok = ~np.isnan(v)
        c = np.zeros(len(v))
        if ok.any():
            c[ok] = cusum_path(0.0, v[ok], shewhart)
        last = np.maximum.accumulate(np.where(ok, np.arange(len(v)), -1))  # rows without a score keep the sum
        sums.append(np.where(last >= 0, c[np.maximum(last, 0)], 0.0))
    return np.maximum(sums[0], sums[1]) > CUSUM_LIMIT


def _points(lo: int, hi: int, draws: int) -> list[int]:
    """``draws`` injection rows spread evenly over ``[lo, hi]``."""
    return [int(round(v)) for v in np.linspace(lo, max(hi, lo), draws)]


def _mean_se(values: list[float]) -> str:
    v = np.asarray(values, np.float64)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
    return f"{v.mean():.1%} ± {se:.1%}"


def _delays(found: list[int | None]) -> str:
    got = [d for d in found if d is not None]
    if not got:
        return "none"
    return f"{statistics.median(got):g} / {float(np.percentile(got, 90)):.0f}"


def part_changes(models: dict[str, runtime.Model], seed: int, draws: int) -> None:
    """Each change injected ``draws`` times: coverage after it (mean over draws ± its standard error), the alarm's
    detection rate and delay; online recalibration methods compared on the same draws; the level shift's effect on
    the model's errors and the smallest shift the alarm catches."""
    logging.getLogger("eddy.drift").setLevel(logging.ERROR)  # the pooled alarm of thousands of draws: not measured here
    rows: dict[str, list[str]] = {k: [] for k in ("coverage", "alarm", "method", "shift", "sweep", "budget")}
    for name, m in models.items():
        _series_changes(name, m, seed, draws, rows)
        print(f"  {name} measured ({load()})", flush=True)
    cov_rows, alarm_rows, method_rows, shift_rows, sweep_rows = (rows[k] for k in ("coverage", "alarm", "method",
                                                                                    "shift", "sweep"))
    print(f"\n### Coverage after each change ({draws} draws; mean over draws ± its standard error)\n")
    print("| series | change | injected at | forecasts after it | level | split conformal | online (served) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(cov_rows))
    print(f"\n### The drift alarm ({draws} draws; delay in samples from the change's first sample, over the draws "
          "that detect it)\n")
    print("| series | change | injected at | detected within the forecasts after it | delay: median / 90th percentile |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(alarm_rows))
    print("\n### The level shift (+2 sd) and the model's errors\n")
    print("| series | transform | MAE after the shift / unchanged, same forecasts: mean (range) | the shift's own "
          "error, reference MAEs (median) | largest error before the test part, reference MAEs |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(shift_rows))
    print(f"\n### Level shifts of every size ({draws} injection points each)\n")
    print("| series | shift | detected | delay: median / 90th percentile |")
    print("| --- | --- | --- | --- |")
    print("\n".join(sweep_rows))
    print("\n### Online recalibration methods on the same draws\n\nHorizon-1 single-target series; after the change: "
          "mean coverage ± s.e.; in control, over the unchanged validation + test parts: coverage, mean width and mean "
          "interval score (Gneiting and Raftery 2007: width + 2 / (1 - level) x the miss's distance; lower is better), "
          "both over the calibrated width.\n")
    print("| series | change | method | " + " | ".join(f"{level_name(lv)} % after | {level_name(lv)} % in control"
                                                   for lv in (0.8, 0.95)) + " |")
    print("| --- | --- | --- |" + " --- | --- |" * 2)
    print("\n".join(method_rows))
    print(f"\n### Why tracking the half-width itself misses after a variance jump ({draws} draws)\n\nThe monitor "
          "before normalised scores (and still for calibrations without them) moves the log width "
          "by gamma x (miss - (1 - level)) per scored forecast, so over the T forecasts after the change "
          "the miss rate exceeds its nominal by exactly log(w_end / w_start) / (gamma T) while the width stays above "
          "its floor: a change that needs the width r times wider costs log(r) / (gamma T) of coverage, and keeping "
          "that within 5 points takes gamma >= log(r) / (0.05 T).\n")
    print("| series | level | forecasts after it (T) | width growth w_end / w_start (median) | coverage deficit: "
          "log(r) / (gamma T) / measured (means) | gamma that would keep r within 5 points |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows["budget"]))


def _series_changes(name: str, m: runtime.Model, seed: int, draws: int, out: dict[str, list[str]]) -> None:
    """One series' rows of :func:`part_changes`' tables, appended to ``out``."""
    methods = {f"step {g:g}": (lambda s, q, lv, g=g: _track(s, q, lv, g)) for g in STEPS_DRAWN}
    methods |= {f"scale-relative {lr:g}": (lambda s, q, lv, lr=lr: _scaled(s, q, lv, lr)) for lr in SCALED}
    methods["aggregated"] = _aggregated
    norm = m.manifest.intervals.normalised
    if norm is not None:  # the monitor's: quantile tracking on normalised scores, from the manifest's calibration
        t0_ = m.targets[0]
        methods["normalised scores (the monitor's)"] = lambda s, q, lv: _normalised(
            s, norm.quantiles[t0_][cal.levels.index(lv)], norm.scale[t0_], lv, cal.gamma, norm.rate, norm.clip)
    cov_rows, alarm_rows, method_rows, shift_rows, sweep_rows = (out[k] for k in ("coverage", "alarm", "method",
                                                                                   "shift", "sweep"))
    x = raw_series(m, name)
    sp, cal, h = m.manifest.training["split_rows"], m.manifest.intervals, m.manifest.horizon
    cols = [m.features.index(t) for t in m.targets]
    v0, t1, end = sp["val"][0], sp["test"][0], len(x) - h  # forecasts issued at rows < end are scored
    span = end - t1  # forecasts after a spread change: as many as the test part has
    q = cal.quantile_matrix(m.targets)  # [L, O]
    o = len(m.targets)
    y_clean, _, obs_clean = streamed(m, x)
    up_before = bool(drift_rows(obs_clean)[:end].any())
    single = h == 1 and len(m.targets) == 1 and m.targets[0] in m.features
    c = m.features.index(m.targets[0])

    def score_row(xc: np.ndarray, y: np.ndarray) -> np.ndarray:  # the score of each row's actual (h = 1)
        s = np.full(len(xc), np.nan)
        s[1:] = scores(cal.space, xc[1:, c].astype(np.float64), y[:-1, 0].astype(np.float64))
        return s

    def coverage(xc: np.ndarray, y: np.ndarray, answer: np.ndarray, rows: np.ndarray) -> tuple[list, list]:
        actual = xc[rows + h][:, cols].astype(np.float64)
        static, online = [], []
        for i in range(len(cal.levels)):
            static.append(float((scores(cal.space, actual, y[rows].astype(np.float64)) <= q[i]).mean()))
            lo, hi = answer[rows, o + 2 * i * o:o + (2 * i + 1) * o], answer[rows, o + (2 * i + 1) * o:o + (2 * i + 2) * o]
            online.append(float(((lo <= actual) & (actual <= hi)).mean()))
        return static, online

    in_control = {}  # method -> per level (coverage, mean width / calibrated) on the unchanged val+test parts
    if single:
        s = score_row(x, y_clean)
        for k, f in methods.items():
            in_control[k] = []
            for i, lv in enumerate(cal.levels):
                w = f(s, q[i, 0], lv)
                r = np.arange(v0 + 1, end + 1)
                score = 2.0 * w[r] + 2.0 / (1.0 - lv) * np.maximum(s[r] - w[r], 0.0)  # the interval score
                in_control[k].append(((s[r] <= w[r]).mean(), w[r].mean() / q[i, 0], score.mean() / q[i, 0]))
    for kind in CHANGES:
        at = [v0] * draws if kind == "variance jump" else _points(v0, end - span, draws)
        results = {"static": [], "online": [], "found": [], "mae": [], "methods": {k: [] for k in methods}}
        for r, t0 in enumerate(at):
            xc = changed(x, m, t0, kind, seed + r)
            y, answer, observed = streamed(m, xc)
            stop = end if kind == "variance jump" else t0 + span
            rows = np.arange(t0, stop)
            st, on = coverage(xc, y, answer, rows)
            results["static"].append(st)
            results["online"].append(on)
            drift = drift_rows(observed)
            hit = np.flatnonzero(drift[t0:stop + h])
            results["found"].append(int(hit[0]) if len(hit) else None)
            err = np.abs(xc[rows + h][:, cols] - y[rows]).mean()
            base = np.abs(x[rows + h][:, cols] - y_clean[rows]).mean()
            first = float(np.abs(xc[t0, cols].astype(np.float64) - y[t0 - h]).mean())
            results["mae"].append((err / base, first))
            if single:
                s = score_row(xc, y)
                for k, f in methods.items():
                    hits = []
                    for i, lv in enumerate(cal.levels):
                        w = f(s, q[i, 0], lv)
                        hits.append(float((s[rows + 1] <= w[rows + 1]).mean()))
                    results["methods"][k].append(hits)
                if kind == "variance jump":  # the tracking identity over the scores after the change
                    ids = rows[:-1] + 1  # T - 1 scores, each followed by an update whose result is issued next
                    for i, lv in enumerate(cal.levels):
                        w = _track(s, q[i, 0], lv, cal.gamma)
                        results.setdefault("budget", []).append(
                            (i, w[ids[-1] + 1] / w[ids[0]], float((s[ids] > w[ids]).mean()) - (1.0 - lv), len(ids)))
        where = "validation part's first row" if kind == "variance jump" else \
            f"rows {at[0]}-{at[-1]}, the next {span} forecasts"
        n_post = end - v0 if kind == "variance jump" else span
        if kind != "frozen sensor":
            for i, lv in enumerate(cal.levels):
                cov_rows.append(f"| {name} | {kind} | {where} | {n_post} | {level_name(lv)} % | "
                                f"{_mean_se([d[i] for d in results['static']])} | "
                                f"{_mean_se([d[i] for d in results['online']])} |")
        found = results["found"]
        alarm_rows.append(f"| {name} | {kind} | {where} | {sum(d is not None for d in found)}/{draws} | "
                          f"{_delays(found)} |")
        if kind == "level shift":
            ratio = [a for a, _ in results["mae"]]
            unit = float(np.mean(m.monitor.reference.level)) if m.monitor.reference is not None else math.nan
            shift_rows.append(f"| {name} | {m.manifest.target_transform} | {np.mean(ratio):.3f} "
                              f"({min(ratio):.3f}-{max(ratio):.3f}) | "
                              f"{np.median([b for _, b in results['mae']]) / unit:.1f} | "
                              f"{_largest(m, x, t1):.1f} |")
        if single and kind != "frozen sensor":
            for k in methods:
                cells = []
                for i in range(len(cal.levels)):
                    cov, width, score = in_control[k][i]
                    cells.append(f"{_mean_se([d[i] for d in results['methods'][k]])} | {cov:.1%}, {width:.2f}, "
                                 f"{score:.2f}")
                method_rows.append(f"| {name} | {kind} | {k} | " + " | ".join(cells) + " |")
        if single and kind == "variance jump":
            for i, lv in enumerate(cal.levels):
                got = [(r, d, n) for j, r, d, n in results["budget"] if j == i]
                n = got[0][2]
                implied = np.mean([math.log(r) / (cal.gamma * n) for r, _, _ in got])
                need = float(np.median([r for r, _, _ in got]))
                out["budget"].append(f"| {name} | {level_name(lv)} % | {n} | {need:.2f} | {implied:.1%} / "
                                     f"{np.mean([d for _, d, _ in got]):.1%} | {math.log(need) / (0.05 * n):.2f} |")
    for size in SHIFTS:  # the smallest level shift the alarm catches
        found = []
        for t0 in _points(v0, end - span, draws):
            drift = drift_rows(streamed(m, changed(x, m, t0, "level shift", seed, size))[2])
            hit = np.flatnonzero(drift[t0:t0 + span + h])
            found.append(int(hit[0]) if len(hit) else None)
        sweep_rows.append(f"| {name} | {size:g} sd | {sum(d is not None for d in found)}/{draws} | "
                          f"{_delays(found)} |")
    if up_before:
        alarm_rows.append(f"| {name} | (none) | the unchanged series raised an alarm: delays above are unreliable | | |")


def _largest(model: runtime.Model, x: np.ndarray, end: int) -> float:
    """The largest error of the unchanged stream before row ``end``, in reference MAEs (mean over targets)."""
    observed = _observed(model, x)[:end, -2]  # the first drift statistic: |error| / MAE - 1
    return float(np.nanmax(observed)) + 1.0


STEPS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)  # online recalibration steps compared on synthetic errors
AGGREGATED = (0.05, 0.1, 0.2, 0.4, 0.8)  # the steps an aggregation weighs by their recent pinball loss
STEPS_DRAWN = (0.1, 0.2, 0.3)  # steps compared on the injected changes' draws (0.1: the monitor's)
SCALED = (0.05, 0.1)  # scale-relative steps (conformal PID control's quantile tracking) compared on the same draws
SCALE_WINDOW = 50  # scores whose largest scales that step


def _track(s: np.ndarray, q0: float, level: float, gamma: float) -> np.ndarray:
    """The monitor's quantile tracking (log width, floor 1 %) over scores ``s`` (NaN: nothing scored): the width
    issued before each score."""
    up, down = math.exp(gamma * level), math.exp(-gamma * (1.0 - level))
    w, out = q0, np.empty(len(s))
    for t, v in enumerate(s):
        out[t] = w
        if not np.isnan(v):
            w = max(w * (down if v <= w else up), 0.01 * q0)
    return out


def _normalised(s: np.ndarray, q0: float, s0: float, level: float, gamma: float, rate: float,
                clip: float) -> np.ndarray:
    """The monitor's quantile tracking on normalised scores (floor 1 %): the half-width ``q x scale`` issued before
    each score, ``q`` tracked on its logarithm from ``q0``, the scale an exponentially weighted mean of the scores
    from ``s0`` (``scale_path``)."""
    up, down = math.exp(gamma * level), math.exp(-gamma * (1.0 - level))
    scale = np.concatenate([[s0], scale_path(s, s0, rate, clip)[:-1]])  # the scale before each score
    q, out = q0, np.empty(len(s))
    for t, v in enumerate(s):
        out[t] = q * scale[t]
        if not np.isnan(v):
            q = max(q * (down if v <= out[t] else up), 0.01 * q0)
    return out


def _scaled(s: np.ndarray, q0: float, level: float, lr: float, window: int = SCALE_WINDOW) -> np.ndarray:
    """Quantile tracking with a scale-relative step, the P part of conformal PID control (Angelopoulos, Candès and
    Tibshirani 2023): the width moves by ``lr * B * (miss - (1 - level))``, additively, with ``B`` the largest of the
    last ``window`` scores (floor 1 % of ``q0``): the width issued before each score."""
    w, out, recent = q0, np.empty(len(s)), []
    for t, v in enumerate(s):
        out[t] = w
        if not np.isnan(v):
            recent = [*recent[1 - window:], float(v)]
            w = max(w + lr * max(recent) * ((1.0 if v > w else 0.0) - (1.0 - level)), 0.01 * q0)
    return out


def _aggregated(s: np.ndarray, q0: float, level: float, eta: float = 1.0, forget: float = 0.97) -> np.ndarray:
    """Trackers of every step in AGGREGATED, mixed by exponential weights on their discounted pinball losses (in the
    spirit of aggregated adaptive conformal inference, Zaffran et al. 2022)."""
    g = np.array(AGGREGATED)
    up, down = np.exp(g * level), np.exp(-g * (1.0 - level))
    w, loss, out = np.full(len(g), q0), np.zeros(len(g)), np.empty(len(s))
    for t, v in enumerate(s):
        p = np.exp(-eta * (loss - loss.min()))
        out[t] = float(p @ w / p.sum())
        if not np.isnan(v):
            loss = forget * loss + np.where(v > w, level * (v - w), (1.0 - level) * (w - v)) / q0
            w = np.maximum(w * np.where(v <= w, down, up), 0.01 * q0)
    return out


def part_steps(seed: int) -> None:
    """The online recalibration's step on synthetic errors (the bundled series: ``part_changes``' last table)."""
    rng = np.random.default_rng(seed)
    runs, before, after = 4000, 300, 80
    print(f"\nsynthetic: Gaussian errors, standard deviation x sqrt(5) after {before} in control; {runs} runs")
    print("\n| step | level | in-control coverage | in-control width / oracle | coverage of the 80 after the jump |")
    print("| --- | --- | --- | --- | --- |")
    from statistics import NormalDist
    for level in (0.8, 0.95):
        q0 = NormalDist().inv_cdf(0.5 + level / 2)
        for gamma in STEPS:
            up, down = math.exp(gamma * level), math.exp(-gamma * (1.0 - level))
            e = np.abs(rng.standard_normal((runs, before + after)))
            e[:, before:] *= math.sqrt(5.0)
            w, hits, widths = np.full(runs, q0), np.empty(e.shape), np.empty(e.shape)
            for t in range(before + after):
                hit = e[:, t] <= w
                hits[:, t], widths[:, t] = hit, w
                w = np.maximum(w * np.where(hit, down, up), 0.01 * q0)
            print(f"| {gamma:g} | {level_name(level)} % | {hits[:, 100:before].mean():.1%} | "
                  f"{widths[:, 100:before].mean() / q0:.3f} | {hits[:, before:].mean():.1%} |", flush=True)


def part_alarms(models: dict[str, runtime.Model], seed: int) -> None:
    rng = np.random.default_rng(seed)
    print("\n| series | error level's unit (MAE, part) | alarms streaming the unchanged series (whole / test part) | "
          "in-control alarms per 10,000 actuals (bootstrap) | runs with an alarm |")
    print("| --- | --- | --- | --- | --- |")
    for name, m in models.items():
        x = raw_series(m, name)
        s = m.stream()
        t0 = m.manifest.training["split_rows"]["test"][0]
        raised, raised_test, before, scored = 0, 0, False, []
        for t in range(len(x)):
            s.push(x[t:t + 1])
            d = s.live.drift
            if d and not before:
                raised += 1
                raised_test += t >= t0
            before = d
        observed = _observed(m, x)  # [N, E]: the standardised errors of every actual
        test_rows = observed[t0:]
        scored = test_rows[~np.isnan(test_rows[:, -2])][:, -2:]  # [n, 2]
        alarms, runs = 0, 200
        for _ in range(runs):
            sample = _block_bootstrap(scored, 10_000, 20, rng)
            fired = _alarms(sample[:, 0], shewhart=True) + _alarms(sample[:, 1][~np.isnan(sample[:, 1])])
            alarms += fired
        ref = m.monitor.reference
        unit = ", ".join(f"{v:.4g}" for v in ref.level)
        print(f"| {name} | {unit} ({ref.part}) | {raised} / {raised_test} | {alarms / runs:.2f} | {alarms > 0} |",
              flush=True)


def _observed(model: runtime.Model, x: np.ndarray) -> np.ndarray:
    adv = model.monitor.advance(model.monitor.fresh(1), 0, x[None], model.stream().push(x)[None])
    return adv.observed[0]


def _block_bootstrap(rows: np.ndarray, n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    starts = rng.integers(0, len(rows), n // block + 1)
    index = (starts[:, None] + np.arange(block)[None, :]).ravel()[:n] % len(rows)
    return rows[index]


def _alarms(x: np.ndarray, shewhart: bool = False) -> int:
    """Times the drift statistic (the monitor's own) raises its alarm over ``x``, clearing when back at 0."""
    raised, count = False, 0
    for s in cusum_path(0.0, x, shewhart):
        if not raised and s > CUSUM_LIMIT:
            raised, count = True, count + 1
        elif raised and s <= 0.0:
            raised = False
    return count


def part_cost(model: runtime.Model, repeats: int, clock: str = "wall") -> None:
    mon = model.monitor
    rng = np.random.default_rng(0)
    rows = []
    for b in (1, 32, 256):
        x = rng.uniform(0, 200, (b, 1, model.n_features)).astype(np.float32)
        state = model.zero_state(b)
        y, _ = model._advance(x, state)
        block, pos = mon.fresh(b), np.arange(b) + 5
        t_graph, t_mon = [], []
        for _ in range(repeats):
            t_graph.append(_time(lambda x=x, state=state: model._run_step(x[:, 0], state), 200, CLOCK[clock]))
            t_mon.append(_time(lambda block=block, pos=pos, x=x, y=y: mon.advance(block, pos, x, y), 200,
                               CLOCK[clock]))
        rows.append((f"one step, batch {b}", statistics.median(t_graph), statistics.median(t_mon), b))
    n = 4096
    x = rng.uniform(0, 200, (1, n, model.n_features)).astype(np.float32)
    state = model.zero_state(1)
    y, _ = model._run_sequence(x, state)
    t_graph, t_mon = [], []
    for _ in range(repeats):
        t_graph.append(_time(lambda: model._run_sequence(x, state), 3, CLOCK[clock]))
        t_mon.append(_time(lambda: mon.advance(mon.fresh(1), 0, x, y), 3, CLOCK[clock]))
    rows.append((f"a chunk of {n}, batch 1", statistics.median(t_graph), statistics.median(t_mon), n))
    method = "normalised scores" if mon.normalised else "the half-width tracked itself"
    print(f"\nmonitor of {model.name}/{model.version} ({mon.width} float64 values per session; {method}), medians of "
          f"{repeats} interleaved repeats, {clock} clock")
    print("\n| call | graph, us | monitor, us | monitor / graph | monitor per session-sample, us |")
    print("| --- | --- | --- | --- | --- |")
    for label, g, mo, per in rows:
        print(f"| {label} | {g * 1e6:.1f} | {mo * 1e6:.1f} | {mo / g:.2f} | {mo * 1e6 / per:.2f} |")


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}  # --clock: cpu = this process's CPU time (steadier on
# a loaded machine; onnxruntime's own threads count too)


def _time(fn: Any, n: int, clock: Any = time.perf_counter) -> float:
    t = clock()
    for _ in range(n):
        fn()
    return (clock() - t) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", nargs="+", choices=list(SERIES), default=list(SERIES))
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--workdir", type=Path, default=None, help="where the trained models go (default: a temporary "
                                                                 "directory)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--draws", type=int, default=DRAWS, help="independent draws of each injected change")
    p.add_argument("--cost-model", type=Path, default=Path("models/sunspots"),
                   help="the model whose monitor --parts cost times (default: the committed one)")
    p.add_argument("--clock", choices=list(CLOCK), default="wall", help="--parts cost: wall time, or this process's "
                                                                        "CPU time (steadier on a loaded machine)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        print(f"{load()}; training into {workdir}", flush=True)
        models = {name: trained(name, workdir, args.seed) for name in args.series} \
            if set(args.parts) - {"cost"} else {}
        for part in args.parts:
            print(f"\n## {part} ({load()})", flush=True)
            if part == "coverage":
                part_coverage(models)
            elif part == "changes":
                part_changes(models, args.seed, args.draws)
            elif part == "steps":
                part_steps(args.seed)
            elif part == "alarms":
                part_alarms(models, args.seed)
            else:
                part_cost(runtime.load(args.cost_model), args.repeats, args.clock)
        print(f"\n{load()}")


if __name__ == "__main__":
    main()
