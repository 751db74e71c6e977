"""Test helpers for the serving tests: a multi-version repository, servers with a config, `eddy` subprocesses."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _models import copy_as
from conftest import MODEL, ROOT, ThreadedServer

from eddy.runtime.core.layout import resolve_version_dir
from eddy.runtime.serving.config import ServeConfig
from eddy.v1 import inference_pb2 as pb

__all__ = ["EDDY", "OTHER", "chunked", "eddy_process", "make_repo", "reference", "samples_request", "served"]

EDDY = [sys.executable, "-m", "eddy.cli"]  # the `eddy` command, run from the repository root
OTHER = "other"  # a second model name in the repository made by make_repo


def make_repo(models_dir: Path, out: Path) -> Path:
    """``out`` holding ``MODEL`` at versions 1 and 2 (same weights) and ``OTHER`` at version 1."""
    src = resolve_version_dir(models_dir / MODEL)
    shutil.copytree(src, out / MODEL / "1")
    copy_as(src, out / MODEL / "2", version=2)
    copy_as(src, out / OTHER / "1", name=OTHER, version=1)
    return out


@contextlib.contextmanager
def served(models: Path, security: object = None, **config: object) -> Iterator[ThreadedServer]:
    """A server on 127.0.0.1:<free port> with ``ServeConfig(**config)`` (and ``security``), stopped at exit."""
    server = ThreadedServer(models, ServeConfig(**config), security)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def reference(model, chunks: list[np.ndarray]) -> list[np.ndarray]:
    """A local stream's outputs for the same chunks, in order (the bit-for-bit reference)."""
    s = model.stream()
    return [s.push(c) for c in chunks]


@contextlib.contextmanager
def eddy_process(*args: str, **popen: object) -> Iterator[subprocess.Popen[str]]:
    """``eddy ARGS`` as a subprocess (text pipes for stdout and stderr); killed at exit if still running."""
    proc = subprocess.Popen([*EDDY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            **popen)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def samples_request(**tensor: object) -> pb.StreamRequest:
    """A ``samples`` message with a hand-built (possibly malformed) ``Tensor``."""
    return pb.StreamRequest(samples=pb.Tensor(**tensor))  # type: ignore[arg-type]


def chunked(series: np.ndarray, sizes: list[int], start: int = 0) -> list[np.ndarray]:
    """``series`` from row ``start`` cut into consecutive chunks of ``sizes`` rows (a stream's messages)."""
    out, i = [], start
    for n in sizes:
        out.append(series[i:i + n])
        i += n
    return out
