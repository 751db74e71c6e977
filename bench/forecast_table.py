"""eddy against the classical forecasters, one step ahead: the README's forecasting table.

For every series: ``eddy train`` with the default flags (plus the series' ``--season`` and columns) and with
``--preset seed`` (the seed architecture as it was: SimpleRNN(50), window 10, Dense(1), MSE, Adam, 10 epochs,
batch 32), both ``--seed 0`` (``--seed N`` for another); the streamed test RMSE of each (what a served stream
returns) next to the five baselines the default run scored on the same test rows with the same protocol
(persistence, seasonal naive, and statsforecast's AutoETS, AutoARIMA and AutoTheta, each fitted once on the rows
before the test part and run over each test row's past with fixed parameters; see trainer/classical.py). Then, per series and as
geometric means over the series: eddy / the best of AutoETS, AutoARIMA and AutoTheta for that series, and
eddy / AutoETS.

Series: the four bundled ones, and public series the ``pmdarima`` wheel ships (the ``bench`` extra, read at
bench time; nothing is bundled or downloaded): monthly AirPassengers (144 rows) and wineind (176), quarterly
austres (89) and woolyrnq (119), yearly lynx (114), half-hourly taylor (4,032, electricity demand) and the last
2,000 daily closes of msft (a stock price, a random walk). Held out (run only when named with ``--series``, to
check a choice made on the table above against series it was not made on): pmdarima's heartrate (150 rows, a
heart rate every half second) and statsmodels' monthly El Nino sea surface temperatures (732 rows) and yearly
Nile flow (100 rows). Not part of ``make test`` (tens of minutes on 2 cores). Run:
``.venv/bin/python bench/forecast_table.py [--series NAME ...] [--json FILE]`` after
``pip install -e '.[train,bench]'``; ``--tables A.json B.json`` prints one table from runs split over
processes. To measure a candidate default without changing it: ``--default-flags "--epochs 100"`` adds flags to
the default's runs only, and ``--skip-seed`` leaves out the seed preset's runs (its column shows –); ``--keep DIR``
keeps each run's model directory (``DIR/NAME-default``, ``DIR/NAME-seed``) and the series' CSV instead of deleting
them, to stream or commit later.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from eddy.cli.train import main as train_main
from eddy.runtime.core.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "trainer" / "data"
CLASSICAL = ("auto_ets", "auto_arima", "auto_theta")
NAMES = {"auto_ets": "AutoETS", "auto_arima": "AutoARIMA", "auto_theta": "AutoTheta"}


def _pmdarima(name: str, last: int | None = None) -> Callable[[Path], list[str]]:
    """A loader writing pmdarima's ``load_NAME`` series (its own wheel's data) as ``value`` CSV; msft: ``Close``."""

    def write(path: Path) -> list[str]:
        from pmdarima import datasets  # the bench extra

        if name == "msft":
            frame = datasets.load_msft()
            values, labels = frame["Close"].to_numpy(float), [str(d) for d in frame["Date"]]
        else:
            values = np.asarray(getattr(datasets, f"load_{name}")(as_series=False), float)
            labels = [str(i) for i in range(len(values))]
        values, labels = values[-last:] if last else values, labels[-last:] if last else labels
        if not np.isfinite(values).all():
            raise SystemExit(f"pmdarima's {name} has non-finite values")
        header = "date,value\n" if name == "msft" else "index,value\n"
        path.write_text(header + "".join(f"{lab},{float(v)!r}\n" for lab, v in zip(labels, values)))
        return ["--data", str(path), "--features", "value"]

    return write


def _statsmodels(name: str) -> Callable[[Path], list[str]]:
    """A loader writing a statsmodels dataset (its own wheel's data) as ``value`` CSV: elnino's monthly sea surface
    temperatures (one row per year, a column per month) in time order; nile's yearly flow volume."""

    def write(path: Path) -> list[str]:
        from statsmodels import datasets  # a dependency of the bench extra's statsforecast and pmdarima

        frame = getattr(datasets, name).load_pandas().data
        values = (frame.drop(columns="YEAR") if name == "elnino" else frame["volume"]).to_numpy(float).ravel()
        path.write_text("index,value\n" + "".join(f"{i},{float(v)!r}\n" for i, v in enumerate(values)))
        return ["--data", str(path), "--features", "value"]

    return write


# name -> (how often, season or None, flags or a loader that writes the CSV and returns its flags)
SERIES: dict[str, tuple[str, int | None, list[str] | Callable[[Path], list[str]]]] = {
    "sunspots": ("yearly", 11, []),
    "co2_weekly": ("weekly", 52, ["--data", str(DATA / "co2_weekly.csv"), "--fill", "ffill"]),
    "elec_equip": ("monthly", 12, ["--data", str(DATA / "elec_equip.csv")]),
    "us_macro": ("quarterly", 4, ["--data", str(DATA / "us_macro.csv"), "--features", "realgdp", "realcons", "realinv",
                                  "cpi", "unemp", "tbilrate", "--target", "realgdp"]),
    "airpassengers": ("monthly", 12, _pmdarima("airpassengers")),
    "wineind": ("monthly", 12, _pmdarima("wineind")),
    "austres": ("quarterly", 4, _pmdarima("austres")),
    "woolyrnq": ("quarterly", 4, _pmdarima("woolyrnq")),
    "lynx": ("yearly", None, _pmdarima("lynx")),
    "taylor": ("half-hourly", 48, _pmdarima("taylor")),
    "msft": ("daily", None, _pmdarima("msft", last=2000)),
    "heartrate": ("half-secondly", None, _pmdarima("heartrate")),
    "elnino": ("monthly", 12, _statsmodels("elnino")),
    "nile": ("yearly", None, _statsmodels("nile")),
}
HELD_OUT = ("heartrate", "elnino", "nile")  # not in the default --series: checks of choices made on the others


def run(flags: list[str], out: Path, seed: int) -> tuple[dict[str, Any], float]:
    """One ``eddy train`` through the CLI (so the flags mean what they mean there): (manifest metrics, seconds)."""
    started = time.perf_counter()
    code = train_main([*flags, "--seed", str(seed), "--quiet", "--out", str(out)])
    if code != 0:
        raise SystemExit(f"eddy train {' '.join(flags)}: exit status {code}")
    return read_manifest(out / "1").metrics, time.perf_counter() - started


def measure(name: str, tmp: Path, default_flags: list[str], skip_seed: bool, random_seed: int = 0) -> dict[str, Any]:
    freq, season, source = SERIES[name]
    flags = source(tmp / f"{name}.csv") if callable(source) else list(source)
    flags += ["--season", str(season)] if season else []
    default, t_default = run([*flags, *default_flags], tmp / f"{name}-default", random_seed)
    seed, t_seed = (None, None) if skip_seed else run([*flags, "--preset", "seed", "--baselines", "naive"],
                                                      tmp / f"{name}-seed", random_seed)
    base = default["baselines"]
    row = {"series": name, "freq": freq, "season": season, "test_rows": default["windows"],
           "eddy": default["streamed"]["rmse"], "eddy_seed": seed["streamed"]["rmse"] if seed else None,
           "persistence": base["persistence"]["rmse"], "seasonal_naive": (base.get("seasonal_naive") or {}).get("rmse"),
           **{k: base[k].get("rmse") for k in CLASSICAL}, "models": {k: base[k].get("model") for k in CLASSICAL},
           "transform": default["target_transform"]["kind"], "seconds": {"default": t_default, "seed": t_seed},
           "classical_seconds": {k: base[k].get("seconds") for k in CLASSICAL}}
    if (default.get("blend") or {}).get("kind") == "arima":  # --blend arima: the networks' own score beside it
        row["eddy_networks"] = default["blend"]["network_streamed"]["rmse"]
        row["blend_weight"] = default["blend"]["weight"]
    best = min(CLASSICAL, key=lambda k: row[k] if row[k] is not None else math.inf)
    row["best_classical"] = best
    row["ratio_best"] = row["eddy"] / row[best]
    row["ratio_ets"] = row["eddy"] / row["auto_ets"]
    row["ratio_seed_best"] = row["eddy_seed"] / row[best] if seed else None
    return row


def geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def table(rows: list[dict[str, Any]], header: str) -> None:
    """The per-series markdown table and the geometric means."""
    print(f"\n{header}\n")
    print("| series | season | eddy | eddy `--preset seed` | persistence | seasonal naive | AutoETS | AutoARIMA | "
          "AutoTheta | eddy / best classical | eddy / AutoETS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        cells = [f"{r[k]:.4g}" if r[k] is not None else "–" for k in
                 ("eddy", "eddy_seed", "persistence", "seasonal_naive", *CLASSICAL)]
        best = 4 + CLASSICAL.index(r["best_classical"])
        cells[best] = f"**{cells[best]}**"
        print(f"| {r['series']} ({r['freq']}) | {r['season'] or '–'} | " + " | ".join(cells)
              + f" | {r['ratio_best']:.3f} | {r['ratio_ets']:.3f} |")
    g_best, g_ets = geomean([r["ratio_best"] for r in rows]), geomean([r["ratio_ets"] for r in rows])
    seeds = [r["ratio_seed_best"] for r in rows if r["ratio_seed_best"] is not None]
    g_seed = f"{geomean(seeds):.3f}" + ("" if len(seeds) == len(rows) else f" over {len(seeds)}") if seeds else "–"
    print(f"\ngeometric mean over {len(rows)} series: eddy / best classical {g_best:.3f} (seed preset {g_seed}), "
          f"eddy / AutoETS {g_ets:.3f}; worst eddy / AutoETS {max(r['ratio_ets'] for r in rows):.3f} "
          f"({max(rows, key=lambda r: r['ratio_ets'])['series']}); eddy wins on "
          f"{sum(r['ratio_best'] < 1 for r in rows)} of {len(rows)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", nargs="+", choices=list(SERIES), default=[s for s in SERIES if s not in HELD_OUT],
                   help=f"series to run (default: all but the held-out {', '.join(HELD_OUT)})")
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    p.add_argument("--tables", type=Path, nargs="+", metavar="JSON",
                   help="print one table from earlier --json outputs (runs split over processes) and train nothing")
    p.add_argument("--default-flags", default="", metavar="FLAGS",
                   help='more eddy train flags for the default\'s runs only, one string: --default-flags="--epochs 100"')
    p.add_argument("--skip-seed", action="store_true", help="train only the default (the seed preset's column shows –)")
    p.add_argument("--seed", type=int, default=0, help="eddy train's --seed for every run (default: 0)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep each run's model directory (DIR/NAME-default, DIR/NAME-seed) and the series' CSV here")
    args = p.parse_args()
    if args.tables:
        runs = [json.loads(f.read_text()) for f in args.tables]
        rows = [r for run in runs for r in run["rows"]]
        table(rows, "from " + "; ".join(f"{run['command']} ({run['started'][:16]} UTC, load average "
                                        f"{run['load'][0]:.1f} -> {run['load'][1]:.1f})" for run in runs)
              + f": test RMSE in raw units, one step ahead, seed {runs[0].get('seed', 0)}:")
        return
    started = datetime.datetime.now(datetime.timezone.utc)
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) if args.keep is None else args.keep
        work.mkdir(parents=True, exist_ok=True)
        if taken := [n for n in args.series if (work / f"{n}-default").exists() or (work / f"{n}-seed").exists()]:
            raise SystemExit(f"--keep {work}: already holds the models of {', '.join(taken)}")
        for name in args.series:
            r = measure(name, work, shlex.split(args.default_flags), args.skip_seed, args.seed)
            rows.append(r)
            seed = "–" if r["eddy_seed"] is None else f"{r['eddy_seed']:.4g}"
            print(f"{name:13} eddy {r['eddy']:.4g} (seed preset {seed}, {r['transform']}) | persistence "
                  f"{r['persistence']:.4g} seasonal naive {r['seasonal_naive'] or float('nan'):.4g} AutoETS "
                  f"{r['auto_ets']:.4g} AutoARIMA {r['auto_arima']:.4g} AutoTheta {r['auto_theta']:.4g} | "
                  f"eddy/best {r['ratio_best']:.3f} eddy/ETS {r['ratio_ets']:.3f} | train {r['seconds']['default']:.0f} s, "
                  f"seed preset {r['seconds']['seed'] or 0:.0f} s", flush=True)
    command = " ".join(["bench/forecast_table.py", *sys.argv[1:]])
    end = os.getloadavg()[0]
    table(rows, f"`{command}`, {started:%Y-%m-%d %H:%M} UTC, load average {load:.1f} at the start, {end:.1f} at the "
                f"end: test RMSE in raw units, one step ahead, seed {args.seed}:")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "started": started.isoformat(), "load": [load, end],
                                         "seed": args.seed, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
