"""Parity sweep: does the float32-aware rule accept every correct export and refuse every broken one?

1. ``eddy train --data trainer/data/co2_weekly.csv --fill interpolate --epochs 1 --window 10 --units 8
   --target-transform level``
   (weekly CO2, 2,284 rows, a trend and 59 gaps)
   over seeds 0..N-1 (the run a fixed 1e-5 tolerance refused at random); each trained model is also
   exported broken on purpose in five ways (tests/_broken.py) and checked again;
2. every cell type, one and two layers, on the bundled sunspots with the default flags (``--seed 0``).

Prints, per run and check, the graph's max abs error against Keras in float64, Keras-float32's own
error, their ratio, and error / limit (a check passes when that is <= 1); then the maxima. Not part of
``make test`` (~5 min). Run: ``.venv/bin/python bench/parity_sweep.py [--seeds 20]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the deliberately broken exports

import _broken  # noqa: E402

from eddy.trainer.config import TrainConfig  # noqa: E402
from eddy.trainer.errors import ParityError  # noqa: E402
from eddy.trainer.parity import FACTOR, FLOOR, PARITY_STEPS  # noqa: E402
from eddy.trainer.series import BUNDLED_CSV, load_csv  # noqa: E402
from eddy.trainer.train import train  # noqa: E402
from eddy.trainer.windows import make_dataset  # noqa: E402

OLD_TOLERANCE = 1e-5  # the fixed tolerance this rule replaced, for comparison


def _row(label: str, checks: dict[str, Any]) -> tuple[float, float, float]:
    """Print one run's checks; returns (max error/keras ratio, max error/limit, max error)."""
    ratios = [c["error"] / c["keras_float32_error"] if c["keras_float32_error"] else float("inf") for c in checks.values()]
    over = [c["error"] / c["limit"] for c in checks.values()]
    cells = "  ".join(f"{k[:7]} {c['error']:.2e}/{c['keras_float32_error']:.2e} ({c['rule']})" for k, c in checks.items())
    print(f"{label:<22} {cells}  ratio {max(ratios):5.2f}  err/limit {max(over):.3f}", flush=True)
    return max(ratios), max(over), max(c["error"] for c in checks.values())


def _broken_runs(version_dir: Path, csv_path: Path, work: Path) -> dict[str, ParityError | None]:
    """Each deliberate break of the core graphs (model space, what the parity checks judge) exported again
    from ``version_dir``'s model.keras, checked against that model."""
    import keras

    from eddy.trainer.onnx_export import export_model
    from eddy.trainer.parity import verify_parity

    model = keras.saving.load_model(version_dir / "model.keras", compile=False)
    ds = make_dataset(load_csv(csv_path, fill="interpolate"), window=10)
    windows, series = ds.x_test, ds.normalised_inputs()[:PARITY_STEPS]
    n = ds.normalization
    breaks = {
        "wrong weights": lambda p: export_model(_broken.transposed_recurrent_kernel(model), p, windows, series),
        "state not carried": lambda p: _broken.state_not_carried(p, "h0"),
        "relu for tanh": lambda p: _broken.activation(p, "Tanh", "Relu"),
        "normalised twice": lambda p: _broken.normalised_twice(p, n.input_mean, n.input_std),
    }
    good = work / "core"
    shutil.rmtree(good, ignore_errors=True)
    good.mkdir(parents=True)
    export_model(model, good, windows, series)  # a correct core export (its parity passes)
    out: dict[str, ParityError | None] = {}
    for name, brk in breaks.items():
        path = work / name.replace(" ", "_")
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(good, path)
        brk(path)
        try:
            verify_parity(model, path, windows, series)
            out[name] = None
        except ParityError as e:
            out[name] = e
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="training seeds for the weekly run (default: 20)")
    ap.add_argument("--no-cells", action="store_true", help="skip the bundled-data run over every cell type")
    ap.add_argument("--target-transform", default="level",
                    help="the weekly runs' --target-transform (default: level, a model a fixed tolerance refused)")
    args = ap.parse_args()
    started = time.monotonic()
    print(f"rule: error <= {FACTOR:g} x keras_float32_error + {FLOOR:g} x max(1, max|truth|); "
          "figures: graph error / Keras float32 error (rule that passed)\n")
    refused, worst_ratio, worst_over, old_refusals = [], 0.0, 0.0, 0
    broken_min_over: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="eddy-sweep-") as tmp:
        work = Path(tmp)
        csv_path = BUNDLED_CSV.parent / "co2_weekly.csv"
        print(f"weekly series: {csv_path} (2284 rows, 59 gaps interpolated)")
        for seed in range(args.seeds):
            config = TrainConfig(data=csv_path, fill="interpolate", epochs=1, window=10, units=8, seed=seed,
                                 target_transform=args.target_transform, out=work / "models" / f"weekly{seed}")
            try:
                result = train(config, log=None)
            except ParityError as e:
                refused.append(f"seed {seed}: {e}")
                print(f"seed {seed:<17} REFUSED: {e}", flush=True)
                continue
            ratio, over, err = _row(f"seed {seed}", result.manifest.parity["checks"])
            worst_ratio, worst_over = max(worst_ratio, ratio), max(worst_over, over)
            old_refusals += err > OLD_TOLERANCE
            for name, e in _broken_runs(result.version_dir, csv_path, work / "broken").items():
                over_b = float("nan") if e is None else e.error / e.limit
                broken_min_over[name] = min(broken_min_over.get(name, float("inf")), over_b)
                print(f"  broken: {name:<17} " + ("ACCEPTED" if e is None else
                      f"refused by {e.check}: error {e.error:.2e}, Keras float32 {e.keras_error:.2e}, "
                      f"error/limit {over_b:.3g}, error/keras {e.error / e.keras_error:.3g}"), flush=True)
        if not args.no_cells:
            print("\nbundled sunspots, default flags, --seed 0:")
            for cell in ("simple_rnn", "lstm", "gru"):
                for layers in (1, 2):
                    config = TrainConfig(cell=cell, layers=layers, seed=0, target_transform="level",
                                         out=work / "models" / f"{cell}{layers}")
                    try:
                        result = train(config, log=None)
                    except ParityError as e:
                        refused.append(f"{cell} x{layers}: {e}")
                        print(f"{cell} x{layers}: REFUSED: {e}", flush=True)
                        continue
                    ratio, over, err = _row(f"{cell} x{layers} rmse {result.manifest.metrics['rmse']:.1f}",
                                            result.manifest.parity["checks"])
                    worst_ratio, worst_over = max(worst_ratio, ratio), max(worst_over, over)
    print(f"\ncorrect exports refused: {len(refused)}" + "".join(f"\n  {r}" for r in refused))
    print(f"max graph/Keras-float32 error ratio {worst_ratio:.2f} (allowed {FACTOR:g}); max error/limit {worst_over:.3f}")
    print(f"weekly runs whose max error exceeds the old fixed tolerance {OLD_TOLERANCE:g}: {old_refusals}")
    for name, v in broken_min_over.items():
        print(f"broken '{name}': smallest error/limit over the seeds {v:.3g} (refused when > 1)")
    print(f"{time.monotonic() - started:.0f} s")
    return 1 if refused or any(not v > 1 for v in broken_min_over.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
