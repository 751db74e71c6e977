"""A second virtualenv, ``.venv-compat/``: eddy (editable) next to ``tritonclient[grpc]`` on protobuf 6.

tritonclient 2.73 needs protobuf < 7, eddy's dev venv has protobuf 7, so the
tritonclient tests (and ``bench/bench_triton.py``) run the client in this
venv. Building it also proves the runtime resolves and installs beside
tritonclient. It is built with pip on first use and reused while
``pyproject.toml`` and :data:`REQUIREMENTS` are unchanged (a stamp file holds
their hash); delete the folder to rebuild. Stdlib only, so the benchmark can
use it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import venv
from pathlib import Path

__all__ = ["COMPAT_VENV", "REQUIREMENTS", "CompatVenvUnavailable", "compat_python", "locked"]

ROOT = Path(__file__).resolve().parent.parent
COMPAT_VENV = Path(os.environ.get("EDDY_COMPAT_VENV", ROOT / ".venv-compat"))
REQUIREMENTS = ("tritonclient[grpc]==2.73.0",)  # the client Triton users have; it pins protobuf >=6.30,<7


class CompatVenvUnavailable(RuntimeError):
    """pip could not reach the package index, so the venv cannot be built here."""


def _stamp_text() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return f"{digest}\n" + "\n".join(REQUIREMENTS)


def compat_python(venv_dir: Path = COMPAT_VENV) -> Path:
    """The compat venv's interpreter, building the venv first if it is missing or out of date.

    Raises :class:`CompatVenvUnavailable` if pip cannot reach the package
    index, and ``RuntimeError`` (with pip's output) if the install fails
    for another reason (e.g. the requirements do not resolve together).
    Processes that ask at once (parallel test workers, a benchmark) wait on a
    lock file beside the venv: one builds, the others reuse it.
    """
    with locked(venv_dir.with_name(venv_dir.name + ".lock")):
        return _compat_python(venv_dir)


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _compat_python(venv_dir: Path) -> Path:
    python, stamp = venv_dir / "bin" / "python", venv_dir / ".eddy-compat"
    if python.exists() and stamp.exists() and stamp.read_text() == _stamp_text():
        return python
    shutil.rmtree(venv_dir, ignore_errors=True)
    venv.EnvBuilder(with_pip=True).create(venv_dir)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    r = subprocess.run([*pip, "install", "--quiet", "-e", str(ROOT), *REQUIREMENTS],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        reachable = subprocess.run([*pip, "download", "--quiet", "--no-deps", "--dest", str(venv_dir / "probe"),
                                    REQUIREMENTS[0].replace("[grpc]", "")], capture_output=True, text=True)
        shutil.rmtree(venv_dir, ignore_errors=True)
        if reachable.returncode != 0:
            raise CompatVenvUnavailable(f"pip cannot reach the package index: {reachable.stderr.strip()[-300:]}")
        raise RuntimeError(f"pip could not install eddy next to {' '.join(REQUIREMENTS)}:\n{r.stderr[-3000:]}")
    stamp.write_text(_stamp_text())
    return python
