"""Test helpers for the serving tests: a multi-version repository and servers with a config."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _models import copy_as
from conftest import MODEL, ThreadedServer

from runtime.config import ServeConfig

__all__ = ["OTHER", "make_repo", "reference", "served"]

OTHER = "other"  # a second model name in the repository made by make_repo


def make_repo(models_dir: Path, out: Path) -> Path:
    """``out`` holding ``MODEL`` at versions 1 and 2 (same weights) and ``OTHER`` at version 1."""
    src = max((p for p in (models_dir / MODEL).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    shutil.copytree(src, out / MODEL / "1")
    copy_as(src, out / MODEL / "2", version=2)
    copy_as(src, out / OTHER / "1", name=OTHER, version=1)
    return out


@contextlib.contextmanager
def served(models: Path, **config: object) -> Iterator[ThreadedServer]:
    """A server on 127.0.0.1:<free port> with ``ServeConfig(**config)``, stopped at exit."""
    server = ThreadedServer(models, ServeConfig(**config))  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def reference(model, chunks: list[np.ndarray]) -> list[np.ndarray]:
    """A local stream's outputs for the same chunks, in order (the bit-for-bit reference)."""
    s = model.stream()
    return [s.push(c) for c in chunks]
