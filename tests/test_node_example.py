"""examples/node streams a model with onnxruntime-node and matches the Python runtime.

The first run installs onnxruntime-node from npm into examples/node/node_modules
(kept as a cache for later runs, rebuilt when package.json or package-lock.json
change: a stamp file holds their hash); the test skips, saying why, only when node
or npm is missing or the npm registry cannot be reached.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _compat_venv import locked
from conftest import MODEL, ROOT

EXAMPLE = ROOT / "examples" / "node"


@pytest.fixture(scope="module")
def raw_model_dir(models_dir: Path) -> Path:
    """The committed default model: self-contained (io raw), the graph alone streams it."""
    from eddy.runtime.core.layout import resolve_version_dir
    from eddy.runtime.core.manifest import read_manifest

    latest = resolve_version_dir(models_dir / MODEL)
    assert read_manifest(latest).io == "raw"
    return latest


@pytest.fixture(scope="module")
def node_example() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the Node example (apt-get install nodejs npm)")
    inputs = hashlib.sha256(b"".join((EXAMPLE / f).read_bytes() for f in ("package.json", "package-lock.json")))
    stamp = EXAMPLE / "node_modules" / ".eddy-inputs"
    with locked(EXAMPLE / "node_modules.lock"):  # parallel test workers: one installs, the others wait
        if stamp.is_file() and stamp.read_text() == inputs.hexdigest():
            return EXAMPLE
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True,
                              text=True, timeout=600, check=False)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            if any(s in done.stderr for s in ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ENETUNREACH")):
                pytest.skip(f"npm registry unreachable, cannot install onnxruntime-node: {tail}")
            pytest.fail(f"npm install failed in {EXAMPLE}: {tail}")
        stamp.write_text(inputs.hexdigest())
    return EXAMPLE


def _node_stream(example: Path, version_dir: Path, samples: np.ndarray, graph: str = "step.onnx") -> np.ndarray:
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in samples) + "\n"
    done = subprocess.run(["node", "stream.mjs", str(version_dir), graph], cwd=example, input=text,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return np.array([[float(v) for v in line.split(",")] for line in done.stdout.splitlines()])


def test_node_stream_matches_the_python_runtime(node_example: Path, raw_model_dir: Path, series: np.ndarray) -> None:
    import eddy.runtime as runtime

    want = runtime.load(raw_model_dir).stream().push(series)  # [T, O]
    got = _node_stream(node_example, raw_model_dir, series)
    assert got.shape == want.shape
    assert float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0))) < 1e-5


def test_node_rejects_a_bad_sample_by_line(node_example: Path, raw_model_dir: Path) -> None:
    done = subprocess.run(["node", "stream.mjs", str(raw_model_dir)], cwd=node_example, input="1\nabc\n",
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and 'line 2: expected 1 finite number(s), got "abc"' in done.stderr
