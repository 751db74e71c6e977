"""The runtime imports, loads, streams and serves with tensorflow unavailable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCKER = ROOT / "tests" / "block_tensorflow"  # sitecustomize that makes tensorflow/keras/tf2onnx unimportable

SCRIPT = textwrap.dedent("""
    import asyncio, sys
    import numpy as np
    try:
        import tensorflow  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("tensorflow is importable: the blocker did not work")

    import eddy.runtime as runtime
    from eddy.runtime.client import Client
    from eddy.runtime.grpc.server import start_server

    model = runtime.load("models/sunspots")
    x = np.array([[5.0], [11.0], [16.0], [23.0], [36.0], [58.0], [29.0], [20.0], [10.0], [8.0]], np.float32)
    local = model.stream().push(x)

    async def serve_and_call():
        server, port = await start_server("models", "127.0.0.1", 0)
        try:
            def call():
                with Client(f"127.0.0.1:{port}") as client, client.stream("sunspots") as s:
                    return np.concatenate([s.push(v) for v in x])
            return await asyncio.to_thread(call)
        finally:
            await server.stop(grace=None)

    remote = asyncio.run(serve_and_call())
    if np.abs(local - remote).max() > 1e-5 * np.abs(local).max():
        raise SystemExit(f"served {remote.ravel()} != local {local.ravel()}")
    heavy = sorted(m for m in sys.modules
                   if m.split(".")[0] in {"tensorflow", "keras", "tf2onnx", "statsforecast"}
                   or m.startswith("eddy.trainer"))
    if heavy:
        raise SystemExit(f"runtime imported {heavy}")
    print("ok", local.shape)
""")


def test_runtime_serves_without_tensorflow():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BLOCKER), str(ROOT)])}
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "ok (10, 1)"


def test_cli_serve_help_without_tensorflow():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BLOCKER), str(ROOT)])}
    r = subprocess.run([sys.executable, "-m", "eddy.cli", "serve", "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "--models" in r.stdout
