"""Fitted models shared by the test modules, trained once per run, and kept across runs while nothing they depend on changes.

``pytest -n 2`` (pytest-xdist) runs test modules in separate worker processes;
a session-scoped fixture would train once per worker. :func:`fitted` keeps
each model in a directory every worker shares, under a file lock: the first
worker trains, the others wait and reuse the directory.

Across runs: the directory is kept in ``build/test-models/`` (``make clean``
removes it) under a key that hashes everything the directory is a function of:

- the bytes of every file of the packages the training and export path runs:
  ``eddy.trainer``, ``eddy.runtime`` and ``eddy.cli`` (read from where Python
  imports them, so an edit anywhere in them retrains);
- the CSV text and the flags (a seed among them: a run is reproducible);
- the versions of Python and of the libraries that train, export, check and
  plot (tensorflow, keras, tf2onnx, onnx, onnxruntime, numpy, ...).

So a reused directory is the one this checkout would write now. This is sound
only for tests whose subject is not the training itself: they use a trained
model (stream it, serve it, export it, describe it) and what they assert holds
for any model the trainer writes. Tests of the trainer's behaviour (the loop,
early stopping, clipping, the cells, reports, manifest figures, parity of a
freshly exported graph) train in the test, every run. A directory is checked
against the file digests recorded when it was written before each reuse (a test
that wrote into it would make the next run train again). It is trained in
place (the manifest records the CSV's path and the output directory, so they
stay true) and counts as written only once its digest record is renamed into
place, the last step, under the lock: a run killed half-way leaves no record,
and the next run wipes the directory and trains again. ``EDDY_TEST_CACHE=0``
turns the cross-run cache off: each run then trains in its own temporary
directory, as a fresh clone does the first time.

The shared series live here too, so the modules that use a model and the
modules that train their own see the same bytes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

__all__ = ["CACHE", "DELTA_FLAGS", "SEASON", "TINY", "fitted", "seasonal_csv", "seasonal_flags", "shared_dir",
           "trend_csv"]

CACHE = Path(__file__).resolve().parent.parent / "build" / "test-models"  # kept across runs; `make clean` removes it
PACKAGES = ("eddy.trainer", "eddy.runtime", "eddy.cli")  # the code a training run and its export execute
LIBRARIES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy", "pandas", "statsforecast",
             "matplotlib", "protobuf")  # what trains, converts, checks, scores and plots
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


def _cached() -> bool:
    return os.environ.get("EDDY_TEST_CACHE", "1") != "0"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@cache
def _code_digest() -> str:
    """sha256 over the files of :data:`PACKAGES` (paths and bytes) and the versions of Python and :data:`LIBRARIES`."""
    h = hashlib.sha256()
    for name in PACKAGES:
        for location in importlib.util.find_spec(name).submodule_search_locations:
            for path in _files(Path(location)):
                h.update(f"{name}/{path.relative_to(location)}\0".encode())
                h.update(path.read_bytes())
    versions = {lib: importlib.metadata.version(lib) for lib in LIBRARIES}
    h.update(json.dumps([sys.version, platform.machine(), versions]).encode())
    return h.hexdigest()


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(root)}


def fitted(factory: pytest.TempPathFactory, csv_text: str, flags: list[str]) -> tuple[Path, Path]:
    """``eddy train --data <csv> FLAGS --out DIR`` once (see the module docstring); returns (``DIR/1``, the CSV).

    ``flags`` must not name ``--data`` or ``--out``. The caller must not write into the returned directories.
    """
    from eddy.cli.train import main as train_main

    inputs = "\0".join([csv_text, *flags])
    if _cached():
        key = hashlib.sha256(f"{_code_digest()}\0{inputs}".encode()).hexdigest()[:24]
        CACHE.mkdir(parents=True, exist_ok=True)
        root = CACHE / key
    else:
        root = shared_dir(factory) / f"fitted-{hashlib.sha256(inputs.encode()).hexdigest()[:16]}"
    with FileLock(str(root) + ".lock"):
        record = root.parent / f"{root.name}.json"  # the files' digests, written last: the directory is complete
        if root.is_dir() and record.is_file() and json.loads(record.read_text()) == _digests(root):
            return root / "m" / "1", root / "s.csv"
        record.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)  # changed since written, or left half-way
        root.mkdir(parents=True)
        (root / "s.csv").write_text(csv_text)
        assert train_main(["--data", str(root / "s.csv"), *flags, "--out", str(root / "m")]) == 0
        partial = record.with_suffix(".tmp")
        partial.write_text(json.dumps(_digests(root)))
        partial.rename(record)
    return root / "m" / "1", root / "s.csv"
