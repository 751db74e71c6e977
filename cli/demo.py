"""``make demo``: the whole path on the bundled data set, end to end.

1. ``eddy train`` fits the default model (five seed-architecture networks, averaged) on the sunspot series
   and exports it (into ``.demo/models``, so the committed default model is left alone);
2. ``eddy serve`` starts on 127.0.0.1 with a free port;
3. ``eddy stream --interval 0.8`` sends the series to it one row per message;
4. the served predictions and their 80 % intervals are printed next to the
   actual values and checked against the in-process runtime (bit for bit)
   and the export's own parity figures; ``eddy info --live`` shows the
   server's live accuracy (the model against persistence on the actuals the
   stream delivered, the intervals' coverage, the drift alarm);
5. the server is stopped.

Run it as ``python -m eddy.cli.demo [--out DIR] [--keep]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from eddy.trainer.series import BUNDLED_CSV, bundled_series

__all__ = ["main"]

EDDY = [sys.executable, "-m", "eddy.cli"]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print(f"$ eddy {' '.join(cmd[len(EDDY):])}", flush=True)
    return subprocess.run(cmd, check=True, **kw)


def _start_server(models: Path) -> tuple[subprocess.Popen, str]:
    cmd = [*EDDY, "serve", "--models", str(models), "--host", "127.0.0.1", "--port", "0"]
    print(f"$ eddy {' '.join(cmd[len(EDDY):])} &", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while proc.stdout is not None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        print(f"  {line.rstrip()}", flush=True)
        if " on " in line and ":" in line.rsplit(" on ", 1)[1]:
            return proc, line.rsplit(" on ", 1)[1].strip()
    proc.kill()
    raise SystemExit("eddy serve did not report its address")


def _table(years: list[str], actual: np.ndarray, served: np.ndarray, lower: np.ndarray, upper: np.ndarray,
           last: int) -> None:
    print(f"\n{'year':>6} {'actual':>9} {'predicted next':>15} {'80% interval':>18} {'next actual':>12}")
    for i in range(len(years) - last, len(years)):
        nxt = f"{actual[i + 1]:12.1f}" if i + 1 < len(actual) else f"{'—':>12}"
        band = f"[{lower[i]:6.1f}, {upper[i]:6.1f}]"
        mark = "" if i + 1 >= len(actual) or lower[i] <= actual[i + 1] <= upper[i] else "  outside"
        print(f"{years[i]:>6} {actual[i]:9.1f} {served[i]:15.1f} {band:>18} {nxt}{mark}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eddy.cli.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=".demo", help="working directory for the demo's model (default: .demo)")
    p.add_argument("--keep", action="store_true", help="keep earlier demo models instead of starting afresh")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    models = Path(args.out) / "models"
    if models.exists() and not args.keep:
        shutil.rmtree(models)
    _run([*EDDY, "train", "--out", str(models / "sunspots"), "--seed", "0"])

    import eddy.runtime as runtime  # the light half: onnxruntime + numpy only

    model = runtime.load(models / "sunspots")
    series = bundled_series()
    years = series.labels or []  # the year column
    actual = series.outputs[:, 0].astype(np.float32)  # [N]

    server, address = _start_server(models)
    try:
        out = _run([*EDDY, "stream", "--server", address, "--model", "sunspots", "--csv", str(BUNDLED_CSV),
                    "--interval", "0.8"], stdout=subprocess.PIPE, text=True).stdout
        live = _run([*EDDY, "info", "--live", "--server", address, "sunspots"], stdout=subprocess.PIPE,
                    text=True).stdout
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    served_rows = list(csv.DictReader(io.StringIO(out)))
    served = np.array([float(r["pred_sunspots"]) for r in served_rows], np.float32)  # [N]
    lower = np.array([float(r["lower_sunspots"]) for r in served_rows], np.float32)  # [N] the 80 % interval
    upper = np.array([float(r["upper_sunspots"]) for r in served_rows], np.float32)
    if len(served) != len(actual):
        raise SystemExit(f"expected {len(actual)} predictions, got {len(served)}")

    stream = model.stream()
    forecasts = [stream.push(v, intervals=0.8) for v in actual]  # one sample at a time, as served
    local = np.concatenate([f.y for f in forecasts])[:, 0]  # [N]
    local_bounds = np.concatenate([np.concatenate([f.lower[0.8], f.upper[0.8]], axis=1) for f in forecasts])
    _table(years, actual, served, lower, upper, last=12)
    print("\nthe server's live accuracy after this one stream (eddy info --live):")
    print("\n".join("  " + line for line in live.splitlines()))

    # Test part = the last rows the trainer held back; score next-year predictions there.
    test_start = int(model.manifest.training["split_rows"]["test"][0])  # first row whose label is test data
    idx = np.arange(test_start - 1, len(actual) - 1)  # rows whose next-year prediction is scored
    n_test = len(idx)
    rmse = math.sqrt(float(np.mean((served[idx] - actual[idx + 1]) ** 2)))
    naive = math.sqrt(float(np.mean((actual[idx] - actual[idx + 1]) ** 2)))
    par = model.manifest.parity
    rel = float(np.abs(served - local).max() / max(1e-12, float(np.abs(local).max())))
    print(f"\nnext-year RMSE over the last {n_test} years: eddy {rmse:.2f} vs persistence {naive:.2f} (sunspot number)")
    metrics = model.manifest.metrics
    if "streamed" in metrics:
        print(f"eddy train's figures for the same years: streamed {metrics['streamed']['rmse']:.2f} (the graph over the "
              f"whole series with carried state, as served), window {metrics['rmse']:.2f} (each "
              f"{model.manifest.window}-year window from zero state); target transform {model.manifest.target_transform}")
    same_bounds = bool(np.array_equal(np.stack([lower, upper], axis=1), local_bounds.astype(np.float32)))
    inside = (lower[idx] <= actual[idx + 1]) & (actual[idx + 1] <= upper[idx])
    print(f"80 % intervals (recalibrated online as the actuals arrived) covered {inside.mean():.0%} of those "
          f"{n_test} years; served == in-process bit for bit: {same_bounds}")
    print(f"served over gRPC vs in-process runtime: max relative difference {rel:.2e}")
    print("export parity vs Keras float64, max abs error (Keras float32's own; limit), model units: "
          + ", ".join(f"{k.replace('_', ' ')} {c['error']:.2e} ({c['keras_float32_error']:.2e}; limit {c['limit']:.2g})"
                      for k, c in par["checks"].items()))
    print(f"demo finished in {time.monotonic() - t0:.0f} s; model in {model.path}")
    if os.environ.get("EDDY_DEMO_STRICT", "1") == "1" and (rel > 1e-5 or not same_bounds):
        print("served predictions or intervals differ from the in-process runtime", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
