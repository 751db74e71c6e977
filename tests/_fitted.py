"""Fitted models shared by the test modules of one run, trained once however many workers ask.

``pytest -n 2`` (pytest-xdist) runs test modules in separate worker processes;
a session-scoped fixture would train once per worker. :func:`fitted` keeps
each model in a directory every worker of the run shares (the run's base temp
directory), keyed by the hash of what the training reads (the CSV's bytes and
the flags), under a file lock: the first worker trains, the others wait and
reuse the directory. Each run trains afresh (nothing is reused across runs),
so a trainer change is always tested.

The shared series live here too, so the modules that use a model and the
modules that train their own see the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

__all__ = ["DELTA_FLAGS", "SEASON", "fitted", "seasonal_csv", "seasonal_flags", "shared_dir", "trend_csv"]

SEASON = 12  # the seasonal series' period
TINY = ["--units", "3", "--members", "1", "--epochs", "1", "--seed", "0", "--quiet", "--baselines", "naive"]  # the mechanics
# (--baselines naive: the statsforecast fits are tested in test_classical.py and test_trainer.py)
# A delta model (state h0, x_last, x_seen) with int8 twins and .ort graphs of every graph, on trend_csv().
DELTA_FLAGS = [*TINY, "--window", "5", "--target-transform", "delta", "--quantize", "int8", "--format", "onnx", "ort"]


def seasonal_flags(horizon: int) -> list[str]:
    """A seasonal_delta model (state h0, x_season [SEASON, 1], x_seen) with .ort graphs, on seasonal_csv()."""
    return [*TINY, "--window", "6", "--target-transform", "seasonal_delta", "--season", str(SEASON),
            "--horizon", str(horizon), "--format", "onnx", "ort"]


def trend_csv() -> str:
    """90 rows of a trend with a wiggle, one column ``v``: a delta model adds ``x_last``/``x_seen`` state."""
    t = np.arange(90)
    return "v\n" + "".join(f"{v:.4f}\n" for v in 20 + 0.1 * t + np.sin(t / 3))


def seasonal_csv() -> str:
    """144 rows of a trend plus a strong season of :data:`SEASON` steps and a little noise, one column ``v``."""
    t = np.arange(144)
    v = 50 + 0.2 * t + 10 * np.sin(2 * np.pi * t / SEASON) + np.random.default_rng(0).normal(0, 0.3, t.size)  # [T]
    return "v\n" + "".join(f"{x:.4f}\n" for x in v)


def shared_dir(factory: pytest.TempPathFactory) -> Path:
    """A directory every worker of this run shares: the parent of the workers' own base temp directories."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def fitted(factory: pytest.TempPathFactory, csv_text: str, flags: list[str]) -> tuple[Path, Path]:
    """``eddy train --data <csv> FLAGS --out DIR`` once per run; returns (version dir ``DIR/1``, the CSV).

    ``flags`` must not name ``--data`` or ``--out``. The caller must not write into the returned directories.
    """
    from eddy.cli.train import main as train_main

    key = hashlib.sha256("\0".join([csv_text, *flags]).encode()).hexdigest()[:16]
    root = shared_dir(factory) / f"fitted-{key}"
    with FileLock(str(root) + ".lock"):
        done = root / "done"
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # a worker that failed half-way
            root.mkdir(parents=True)
            (root / "s.csv").write_text(csv_text)
            assert train_main(["--data", str(root / "s.csv"), *flags, "--out", str(root / "m")]) == 0
            done.touch()
    return root / "m" / "1", root / "s.csv"
