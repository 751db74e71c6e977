"""Shared fixtures: the committed model repository, the bundled series, a live server."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pytest
from _schedule import pytest_collection_modifyitems, pytest_runtest_logreport, pytest_sessionfinish  # noqa: F401

if TYPE_CHECKING:
    import eddy.runtime as runtime

# The suite keeps the bytecode it compiles (__pycache__, ignored by git) even where PYTHONDONTWRITEBYTECODE is set, as
# in many container images: pytest's assertion rewriting of ~80 test modules and eddy's own modules then compile once
# instead of in every worker (~2.5 s of CPU each) and every `eddy` subprocess of every run.
sys.dont_write_bytecode = False
ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("EDDY_TEST_MODELS", ROOT / "models"))  # repository the server tests use
MODEL = "sunspots"  # the committed default model
SERIES_CSV = ROOT / "trainer" / "data" / "sunspots.csv"  # year,sunspots; 309 rows
LEGACY = Path(__file__).resolve().parent / "data" / "legacy_sunspots" / "1"  # an older default model:
# io normalised (the runtime normalises around its tf2onnx core graphs), level, state h0 only, fixed-1e-5 parity

T = TypeVar("T")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    if not (MODELS / MODEL).is_dir():
        pytest.fail(f"no {MODEL} model under {MODELS} (the default model is committed under models/)")
    return MODELS


@pytest.fixture(scope="session")
def legacy_dir() -> Path:
    """A version directory in the pre-self-contained format (``io: normalised``): its graphs are the core, model-space
    graphs, and the runtime must keep serving such directories."""
    return LEGACY


@pytest.fixture(scope="session")
def series() -> np.ndarray:
    """The bundled sunspots series, raw units, float32 ``[309, 1]``."""
    with open(SERIES_CSV, newline="") as f:
        return np.array([[float(r["sunspots"])] for r in csv.DictReader(f)], np.float32)


@pytest.fixture(scope="session")
def model(models_dir: Path) -> runtime.Model:
    """The default model's highest version (modules serving a copy override this)."""
    import eddy.runtime as runtime
    return runtime.load(models_dir / MODEL)


@pytest.fixture(scope="session")
def local(model: runtime.Model, series: np.ndarray) -> np.ndarray:
    """Reference: the default model's local stream fed the series sample by sample, ``[N, O]``."""
    s = model.stream()
    return np.concatenate([s.push(x) for x in series])


class ThreadedServer:
    """An eddy server on 127.0.0.1:<free port>, running its own event loop in a thread.

    Lets synchronous code (the client, subprocesses) talk to an in-process server.
    """

    def __init__(self, models: Path, config: object = None, security: object = None) -> None:
        from eddy.runtime.grpc.server import start_server

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="eddy-test-server", daemon=True)
        self._thread.start()
        self.server, self.port = asyncio.run_coroutine_threadsafe(
            start_server(models, "127.0.0.1", 0, config=config, security=security), self.loop).result(timeout=30)
        self.address = f"127.0.0.1:{self.port}"
        self._stopped = False

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the server's event loop thread (the session store is single-loop)."""
        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait, on the server loop, until ``predicate()`` holds (e.g. the server saw a cancel)."""
        async def wait() -> None:
            while not predicate():
                await asyncio.sleep(0.001)

        asyncio.run_coroutine_threadsafe(asyncio.wait_for(wait(), timeout), self.loop).result(timeout=timeout + 5)

    def until_idle(self, session_id: str, timeout: float = 10.0) -> None:
        """Wait until session ``session_id`` exists and no stream holds it (e.g. the server saw a cancel)."""
        def idle() -> bool:
            s = self.server.plane.sessions.get(session_id)
            return s is not None and not s.busy

        self.until(idle, timeout)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        asyncio.run_coroutine_threadsafe(self.server.stop(grace=None), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="session")
def server(models_dir: Path) -> Iterator[ThreadedServer]:
    s = ThreadedServer(models_dir)
    yield s
    s.stop()
