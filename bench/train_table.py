"""Streamed vs window test RMSE on every bundled series, for each --training mode (docs/benchmarks.md's accuracy table).

For each bundled series and mode, runs ``eddy train --preset seed --seed S --out DIR <flags> --training MODE``
(one network; other flags at their defaults) for every seed and prints the test RMSE in raw units: streamed (what a served
stream returns), window (each test window from zero state), persistence and seasonal naive, with the
median over seeds; a markdown table at the end. Not part of ``make test`` (~1 min per series, mode and
seed on 2 cores). Run: ``.venv/bin/python bench/train_table.py [--seeds 0 1 2] [--modes windows tbptt]
[--series sunspots ...]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from eddy.cli.train import main as train_main
from eddy.runtime.core.manifest import read_manifest
from eddy.trainer.config import TRAININGS

SERIES: dict[str, list[str]] = {  # name -> eddy train flags (docs/benchmarks.md's accuracy table)
    "sunspots": ["--season", "11"],
    "co2_weekly": ["--data", "trainer/data/co2_weekly.csv", "--fill", "ffill", "--season", "52"],
    "elec_equip": ["--data", "trainer/data/elec_equip.csv", "--season", "12"],
    "us_macro": ["--data", "trainer/data/us_macro.csv", "--features", "realgdp", "realcons", "realinv", "cpi",
                 "unemp", "tbilrate", "--target", "realgdp", "--season", "4"],
}


def run(flags: list[str], seed: int, mode: str) -> dict[str, Any]:
    """One ``eddy train`` run through the CLI (so the flags mean what they mean there)."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        code = train_main([*flags, "--preset", "seed", "--seed", str(seed), "--training", mode, "--quiet",
                           "--out", f"{tmp}/m"])
        if code != 0:
            raise SystemExit(f"eddy train {' '.join(flags)} --seed {seed} --training {mode}: exit status {code}")
        m = read_manifest(Path(tmp) / "m" / "1").metrics
        base = m["baselines"]
        return {"streamed": m["streamed"]["rmse"], "window": m["rmse"], "persistence": base["persistence"]["rmse"],
                "seasonal": (base.get("seasonal_naive") or {}).get("rmse"), "kind": m["target_transform"]["kind"],
                "seconds": time.perf_counter() - started}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--modes", nargs="+", choices=TRAININGS, default=list(TRAININGS))
    p.add_argument("--series", nargs="+", choices=list(SERIES), default=list(SERIES))
    args = p.parse_args()
    rows = []
    for name in args.series:
        for mode in args.modes:
            runs = [run(SERIES[name], s, mode) for s in args.seeds]
            for s, r in zip(args.seeds, runs):
                print(f"{name:11} {mode:8} seed {s}: streamed {r['streamed']:.4g} window {r['window']:.4g} "
                      f"persistence {r['persistence']:.4g} seasonal {r['seasonal']:.4g} ({r['kind']}, "
                      f"{r['seconds']:.0f} s)", flush=True)
            med = {k: statistics.median(r[k] for r in runs) for k in ("streamed", "window")}
            rows.append((name, mode, runs[0], med, [r["kind"] for r in runs]))
    print("\n| series | training | transform (per seed) | streamed | window | persistence | seasonal naive |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, mode, r, med, kinds in rows:
        print(f"| {name} | {mode} | {', '.join(kinds)} | {med['streamed']:.4g} | {med['window']:.4g} | "
              f"{r['persistence']:.4g} | {r['seasonal']:.4g} |")
    print(f"\nmedians over seeds {' '.join(map(str, args.seeds))}")


if __name__ == "__main__":
    main()
