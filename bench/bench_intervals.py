"""Prediction intervals, online recalibration and the drift alarm on the bundled series; the monitor's cost per step.

Not a test (pytest does not collect it). Run from the repository root::

    .venv/bin/python bench/bench_intervals.py                      # 4-15 min: trains the four series, then measures
    .venv/bin/python bench/bench_intervals.py --workdir /tmp/iv    # keep (and reuse) the trained models there
    .venv/bin/python bench/bench_intervals.py --series sunspots --parts coverage changes

Parts (``--parts``):

- ``coverage``: every bundled series trained with ``eddy train --seed S`` and the data flags of
  ``bench/train_table.py`` (other flags at their defaults); the manifest's test figures: coverage of the
  split-conformal intervals (calibrated widths), coverage as served (online recalibration from the series' first
  row), mean width, and the width of persistence-residual intervals of the same coverage.
- ``changes``: each model streamed (a local ``Stream``: the code the server runs) over its series with a change
  injected on the target's column from the first validation row on: a level shift (+2 standard deviations of the
  training part), a variance jump (Gaussian noise of 2 x the test RMSE added) and a frozen sensor (the last
  value repeated). Reported over the forecasts issued after the change: coverage of the calibrated
  (split-conformal) intervals around the same predictions, of the served ones, and of adaptive conformal
  inference (Gibbs and Candès 2021, step 0.005, on the same calibration scores; its infinite intervals counted);
  and the drift alarm's delay (samples from the change to the session's alarm; "up before the change" when the
  session's alarm was already raised by the unchanged rows), also with the same change injected from the test
  part's first row on instead.
- ``steps``: the online recalibration's step (``gamma``) and an aggregation of steps, compared: on synthetic
  Gaussian errors whose standard deviation grows sqrt(5)-fold (coverage over the 80 forecasts after the jump, and
  the in-control width over the oracle's), and on each bundled series (coverage and mean width, as a multiple of
  the calibrated one, on the unchanged test part and after the injected changes). The same quantile tracking as
  the monitor's, on the conformity scores of the model's streamed forecasts (horizon 1).
- ``alarms``: false alarms of the drift test: alarms raised while streaming each unchanged series, and the
  in-control rate from a circular block bootstrap (blocks of 20) of the test part's standardised errors: 200 runs of
  10,000 actuals each.
- ``cost``: the monitor's time per step next to the step graph's (``Model._run_step``) at batch 1, 32 and 256, and
  per sample of a 4,096-sample chunk next to the sequence graph; medians of interleaved repeats, this process.

The machine's load (``os.getloadavg``) is printed before and after each part.
"""

from __future__ import annotations

import argparse
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
from eddy.runtime.core.calibration import level_name, scores  # noqa: E402
from eddy.runtime.core.monitor import CUSUM_LIMIT, SHEWHART, cusum_path  # noqa: E402
from eddy.trainer.series import load_csv  # noqa: E402

PARTS = ("coverage", "changes", "steps", "alarms", "cost")
CHANGES = ("level shift", "variance jump", "frozen sensor")
ACI_GAMMA = 0.005  # Gibbs and Candès' step for adaptive conformal inference


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
    print("\n| series | transform | test rows | level | coverage, split conformal | served (online) | mean width | "
          "served width | persistence width, same coverage | width / persistence |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, m in models.items():
        iv = m.manifest.metrics.get("intervals") or {}
        for key, f in (iv.get("levels") or {}).items():
            print(f"| {name} | {m.manifest.target_transform} | {iv['rows']} | {key} % | {f['coverage']:.1%} | "
                  f"{f['served_coverage']:.1%} | {f['width']:.4g} | {f['served_width']:.4g} | {f['persistence_width']:.4g} | "
                  f"{f['width'] / f['persistence_width']:.2f} |")
        for note in iv.get("notes") or []:
            print(f"| {name} | | | note: {note} | | | | | | |")


def changed(x: np.ndarray, model: runtime.Model, t0: int, kind: str, seed: int) -> np.ndarray:
    """``x`` with ``kind`` injected on the target columns from row ``t0`` on."""
    x = x.copy()
    cols = [model.features.index(t) for t in model.targets if t in model.features]
    train_end = model.manifest.training["split_rows"]["train"][1]
    if kind == "level shift":
        x[t0:, cols] += 2.0 * x[:train_end, cols].std(axis=0)
    elif kind == "variance jump":
        rmse = float((model.manifest.metrics.get("streamed") or model.manifest.metrics)["rmse"])
        x[t0:, cols] += np.random.default_rng(seed).normal(0.0, 2.0 * rmse, (len(x) - t0, len(cols)))
        if model.manifest.target_transform == "log_delta":
            x[t0:, cols] = np.maximum(x[t0:, cols], x[:train_end, cols].min(axis=0) * 0.5)
    else:
        x[t0:, cols] = x[t0 - 1, cols]
    return x.astype(np.float32)


def stream(model: runtime.Model, x: np.ndarray) -> tuple[np.ndarray, dict[float, np.ndarray], dict[float, np.ndarray],
                                                       list[bool]]:
    """One sample per push (as a served stream of single samples): predictions, bounds, drift flag after each."""
    s = model.stream()
    ys, lo, hi, drift = [], {lv: [] for lv in model.interval_levels}, {lv: [] for lv in model.interval_levels}, []
    for t in range(len(x)):
        f = s.push(x[t:t + 1], intervals=True)
        ys.append(f.y[0])
        for lv in model.interval_levels:
            lo[lv].append(f.lower[lv][0])
            hi[lv].append(f.upper[lv][0])
        drift.append(s.live.drift)
    return (np.array(ys), {k: np.array(v) for k, v in lo.items()}, {k: np.array(v) for k, v in hi.items()}, drift)


def aci(cal_scores: np.ndarray, test_scores: np.ndarray, level: float) -> tuple[float, float]:
    """Adaptive conformal inference over ``test_scores`` (in order): coverage and the fraction of infinite intervals."""
    alpha, target = 1.0 - level, 1.0 - level
    s = np.sort(cal_scores)
    n = len(s)
    hits, infinite = [], 0
    for score in test_scores:
        k = math.ceil((n + 1) * (1.0 - alpha))
        q = math.inf if alpha <= 0 or k > n else (s[max(k, 1) - 1] if alpha < 1 else -math.inf)
        infinite += q == math.inf
        covered = score <= q
        hits.append(covered)
        alpha += ACI_GAMMA * (target - (0.0 if covered else 1.0))
    return float(np.mean(hits)), infinite / max(len(test_scores), 1)


def part_changes(models: dict[str, runtime.Model], seed: int) -> None:
    print("\n| series | change at | change | post-change forecasts | level | split conformal | served (online) | "
          "ACI (infinite) | alarm delay | alarm delay, change at the test part |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    notes: list[str] = []
    for name, m in models.items():
        x = raw_series(m, name)
        h = m.manifest.horizon
        t0 = m.manifest.training["split_rows"]["val"][0]
        cal = m.manifest.intervals
        cols = [m.features.index(t) for t in m.targets]
        y_clean = m.stream().push(x)  # the calibration scores: the validation part of the unchanged stream
        v0, v1 = m.manifest.training["split_rows"]["val"]
        cal_scores = scores(cal.space, x[v0:v1, cols].astype(np.float64), y_clean[v0 - h:v1 - h])
        for kind in CHANGES:
            xc = changed(x, m, t0, kind, seed)
            y, lo, hi, drift = stream(m, xc)
            rows = np.arange(t0, len(xc) - h)  # forecasts issued after the change, scored h rows later
            actual = xc[rows + h][:, cols].astype(np.float64)
            delay = _delay(drift, t0)
            t1 = m.manifest.training["split_rows"]["test"][0]  # the same change where no alarm is up (the test part)
            late = _delay(stream(m, changed(x, m, t1, kind, seed))[3], t1)
            if kind == "level shift":  # what the Shewhart part sees: the error at the shift, in reference MAEs
                unit = m.monitor.reference.level if m.monitor.reference is not None else np.full(len(cols), np.nan)
                jump = np.abs(xc[t0, cols].astype(np.float64) - y[t0 - h]) / unit  # the forecast made before it
                notes.append(f"{name}: the level shift's first error is {float(jump.mean()):.1f} reference MAEs "
                             f"(the Shewhart limit: {SHEWHART:g}); the largest before the test part "
                             f"{_largest(m, x, t1):.1f}")
            for i, lv in enumerate(cal.levels):
                q = cal.quantile_matrix(m.targets)[i]
                static = scores(cal.space, actual, y[rows]) <= q
                served = (lo[lv][rows] <= actual) & (actual <= hi[lv][rows])
                a_cov, a_inf = aci(cal_scores[:, 0], scores(cal.space, actual[:, 0], y[rows, 0]), lv)
                print(f"| {name} | row {t0} | {kind} | {len(rows)} | {level_name(lv)} % | {static.mean():.1%} | "
                      f"{served.mean():.1%} | {a_cov:.1%} ({a_inf:.0%}) | "
                      f"{delay} | {late} |", flush=True)
    print("\n" + "\n".join(notes))


def _largest(model: runtime.Model, x: np.ndarray, end: int) -> float:
    """The largest error of the unchanged stream before row ``end``, in reference MAEs (mean over targets)."""
    observed = _observed(model, x)[:end, -2]  # the first drift statistic: |error| / MAE - 1
    return float(np.nanmax(observed)) + 1.0


STEPS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)  # online recalibration steps compared on synthetic errors
AGGREGATED = (0.05, 0.1, 0.2, 0.4, 0.8)  # the steps an aggregation weighs by their recent pinball loss


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


def part_steps(models: dict[str, runtime.Model], seed: int) -> None:
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
    methods = {f"step {g:g}": (lambda s, q, lv, g=g: _track(s, q, lv, g)) for g in (0.1, 0.3)}
    methods["aggregated"] = _aggregated
    print("\nbundled series: coverage / mean width over the calibrated width, per level (80 %, 95 %)\n")
    cases = (("none", "test"), ("variance jump", "val"), ("level shift", "val"), ("variance jump", "test"))
    print("| series | method | " + " | ".join("unchanged test part" if k == "none" else f"{k} at the {a} part"
                                          for k, a in cases) + " |")
    print("| --- | --- |" + " --- |" * len(cases))
    for name, m in models.items():
        x = raw_series(m, name)
        sp, cal, h = m.manifest.training["split_rows"], m.manifest.intervals, m.manifest.horizon
        if h != 1 or len(m.targets) != 1:
            continue
        c = m.features.index(m.targets[0])
        cells: dict[str, list[str]] = {k: [] for k in methods}
        for kind, at in cases:
            t0 = sp["test" if at == "test" else "val"][0]
            xc = x if kind == "none" else changed(x, m, t0, kind, seed)
            y = m.stream().push(xc)[:, 0].astype(np.float64)
            s = np.full(len(xc), np.nan)
            s[1:] = scores(cal.space, xc[1:, c].astype(np.float64), y[:-1])  # the score of each row's actual
            rows = np.arange(t0 + (kind != "none"), len(xc))
            for k, f in methods.items():
                parts = []
                for i, level in enumerate(cal.levels):
                    q0 = cal.quantiles[m.targets[0]][i]
                    w = f(s, q0, level)
                    parts.append(f"{(s[rows] <= w[rows]).mean():.0%} / {w[rows].mean() / q0:.2f}")
                cells[k].append(", ".join(parts))
        for k in methods:
            print(f"| {name} | {k} | " + " | ".join(cells[k]) + " |", flush=True)


def _delay(drift: list[bool], t0: int) -> str:
    """Samples from the change at ``t0`` to the alarm's first rise after it (an alarm already up says so)."""
    if t0 and drift[t0 - 1]:
        since = next(t for t in range(t0 - 1, -1, -1) if t == 0 or not drift[t - 1])
        return f"up before the change (since row {since})"
    return next((f"{t - t0} samples" for t in range(t0, len(drift)) if drift[t]), "none")


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


def part_cost(model: runtime.Model, repeats: int) -> None:
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
            t_graph.append(_time(lambda x=x, state=state: model._run_step(x[:, 0], state), 200))
            t_mon.append(_time(lambda block=block, pos=pos, x=x, y=y: mon.advance(block, pos, x, y), 200))
        rows.append((f"one step, batch {b}", statistics.median(t_graph), statistics.median(t_mon), b))
    n = 4096
    x = rng.uniform(0, 200, (1, n, model.n_features)).astype(np.float32)
    state = model.zero_state(1)
    y, _ = model._run_sequence(x, state)
    t_graph, t_mon = [], []
    for _ in range(repeats):
        t_graph.append(_time(lambda: model._run_sequence(x, state), 3))
        t_mon.append(_time(lambda: mon.advance(mon.fresh(1), 0, x, y), 3))
    rows.append((f"a chunk of {n}, batch 1", statistics.median(t_graph), statistics.median(t_mon), n))
    print(f"\nmonitor of {model.name}/{model.version} ({mon.width} float64 values per session), medians of {repeats} "
          "interleaved repeats")
    print("\n| call | graph, us | monitor, us | monitor / graph | monitor per session-sample, us |")
    print("| --- | --- | --- | --- | --- |")
    for label, g, mo, per in rows:
        print(f"| {label} | {g * 1e6:.1f} | {mo * 1e6:.1f} | {mo / g:.2f} | {mo * 1e6 / per:.2f} |")


def _time(fn: Any, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", nargs="+", choices=list(SERIES), default=list(SERIES))
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--workdir", type=Path, default=None, help="where the trained models go (default: a temporary "
                                                                 "directory)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=7)
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
                part_changes(models, args.seed)
            elif part == "steps":
                part_steps(models, args.seed)
            elif part == "alarms":
                part_alarms(models, args.seed)
            else:
                part_cost(runtime.load("models/sunspots"), args.repeats)
        print(f"\n{load()}")


if __name__ == "__main__":
    main()
