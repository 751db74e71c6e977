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
- this file (how a directory is made and what is kept with it);
- the versions of Python and of the libraries that train, export, check and
  plot (tensorflow, keras, tf2onnx, onnx, onnxruntime, numpy, ...).

So a reused directory is the one this checkout would write now, and a fresh
clone (CI) trains every one: a test that reads what a run wrote or printed (the
manifest and its scores, the graphs, model.keras, the report, the summary and
warnings printed at its end) proves the same from a kept run as from a new one
while none of its inputs changed. Tests of the act of training (progress lines
as they are printed, early stopping and the callbacks, two runs giving the same
weights, errors raised while training, the README tour) train in the test,
every run. A directory is checked
against the file digests recorded when it was written before each reuse (a test
that wrote into it would make the next run train again). It is trained in
place (the manifest records the CSV's path and the output directory, so they
stay true) and counts as written only once its digest record is renamed into
place, the last step, under the lock: a run killed half-way leaves no record,
and the next run wipes the directory and trains again. ``EDDY_TEST_CACHE=0``
turns the cross-run cache off: each run then trains in its own temporary
directory, as a fresh clone does the first time.

What ``eddy train`` printed is kept with the directory (``stdout.txt``,
``stderr.txt``, under the same digest record); :func:`fit` returns it with the
directory.

The shared series live here too, so the modules that use a model and the
modules that train their own see the same bytes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import io
import json
import os
import platform
import shutil
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

__all__ = ["AUTO_SEASONAL_FLAGS", "CACHE", "DELTA_FLAGS", "SEASON", "TINY", "Fit", "contents", "fit", "fitted",
           "kept", "seasonal_csv", "seasonal_flags", "shared_dir", "trend_csv"]

CACHE = Path(__file__).resolve().parent.parent / "build" / "test-models"  # kept across runs; `make clean` removes it
PACKAGES = ("eddy.trainer", "eddy.runtime", "eddy.cli")  # the code a training run and its export execute
LIBRARIES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy", "pandas", "statsforecast",
             "matplotlib", "protobuf")  # what trains, converts, checks, scores and plots
SEASON = 12  # the seasonal series' period
TINY = ["--units", "3", "--members", "1", "--epochs", "1", "--seed", "0", "--quiet", "--baselines", "naive"]  # the mechanics
# (--baselines naive: the statsforecast fits are tested in test_classical.py and test_trainer.py)
# The default --target-transform auto with a season, on seasonal_csv(): one fit per transform it tries.
AUTO_SEASONAL_FLAGS = ["--season", str(SEASON), *TINY, "--window", "6"]
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
    """sha256 over the files of :data:`PACKAGES` (paths and bytes), this file, and the versions of Python and
    :data:`LIBRARIES`."""
    h = hashlib.sha256()
    for name in PACKAGES:
        for location in importlib.util.find_spec(name).submodule_search_locations:
            for path in _files(Path(location)):
                h.update(f"{name}/{path.relative_to(location)}\0".encode())
                h.update(path.read_bytes())
    h.update(Path(__file__).read_bytes())  # how a directory is made and what it keeps
    versions = {lib: importlib.metadata.version(lib) for lib in LIBRARIES}
    h.update(json.dumps([sys.version, platform.machine(), versions]).encode())
    return h.hexdigest()


@cache
def _source(path: str) -> str:
    """The text of a module that defines a :func:`kept` directory's ``make``."""
    return Path(path).read_text()


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(root)}


def contents(path: Path) -> str:
    """The sha256 of a file, or of every file of a directory (JSON): what a :func:`kept` key holds of an input path."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else json.dumps(_digests(path))


@dataclass(frozen=True)
class Fit:
    """A kept ``eddy train`` run: its version directory, its CSV, and what it printed."""

    version_dir: Path  # DIR/1
    csv: Path  # the CSV it trained on
    out: str  # its standard output
    err: str  # its standard error


def fitted(factory: pytest.TempPathFactory, csv_text: str, flags: list[str]) -> tuple[Path, Path]:
    """``eddy train --data <csv> FLAGS --out DIR`` once (see the module docstring); returns (``DIR/1``, the CSV)."""
    f = fit(factory, csv_text, flags)
    return f.version_dir, f.csv


def fit(factory: pytest.TempPathFactory, csv_text: str, flags: list[str]) -> Fit:
    """``eddy train --data <csv> FLAGS --out DIR`` once (see the module docstring), exit status 0, and what it printed.

    ``flags`` must not name ``--data`` or ``--out``. The caller must not write into the returned directories.
    """
    def train(root: Path) -> None:
        from eddy.cli.train import main as train_main

        (root / "s.csv").write_text(csv_text)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = train_main(["--data", str(root / "s.csv"), *flags, "--out", str(root / "m")])
        assert code == 0, err.getvalue()
        (root / "stdout.txt").write_text(out.getvalue())
        (root / "stderr.txt").write_text(err.getvalue())

    root = kept(factory, "\0".join([csv_text, *flags]), train)
    return Fit(root / "m" / "1", root / "s.csv", (root / "stdout.txt").read_text(), (root / "stderr.txt").read_text())


def kept(factory: pytest.TempPathFactory, inputs: str, make: Callable[[Path], None]) -> Path:
    """The directory ``make(root)`` writes into the empty directory ``root``, made once and kept (see the module
    docstring) under a key of the code, ``inputs`` and the whole text of the module that defines ``make`` (so an
    edit of ``make``, or of a helper or constant of its module, makes the directory again).

    ``make`` must read nothing but ``inputs``, the code, the libraries and its module (what the key holds); it writes
    in place, so the paths it records stay true. The caller must not write into the returned directory.
    """
    inputs = f"{_source(inspect.getsourcefile(make))}\0{inputs}"
    if _cached():
        key = hashlib.sha256(f"{_code_digest()}\0{inputs}".encode()).hexdigest()[:24]
        CACHE.mkdir(parents=True, exist_ok=True)
        root = CACHE / key
    else:
        root = shared_dir(factory) / f"kept-{hashlib.sha256(inputs.encode()).hexdigest()[:16]}"
    with FileLock(str(root) + ".lock"):
        record = root.parent / f"{root.name}.json"  # the files' digests, written last: the directory is complete
        if not (root.is_dir() and record.is_file() and json.loads(record.read_text()) == _digests(root)):
            record.unlink(missing_ok=True)
            shutil.rmtree(root, ignore_errors=True)  # changed since written, or left half-way
            root.mkdir(parents=True)
            make(root)
            partial = record.with_suffix(".tmp")
            partial.write_text(json.dumps(_digests(root)))
            partial.rename(record)
    return root
