"""The README's five-minute tour runs as written.

Every code block of the README's ``tour`` section (between its ``--8<-- [start:tour]`` and ``[end:tour]``
markers; the docs site's Getting started page includes the same section) runs in order, in a scratch directory
(``trainer/`` linked in, so the tour's paths hold):

- ``sh`` blocks run with bash (``set -e -o pipefail``), the ``eddy`` of this interpreter first on PATH; a line
  that starts ``eddy serve`` starts the server in the background instead, with ``--port 0`` (a free port) and
  the address it prints put in place of the tour's ``127.0.0.1:50051`` in every later block.
- ``python`` blocks run as scripts with this interpreter; one that imports ``tritonclient`` runs in the
  compat venv (tritonclient pins protobuf < 7; tests/_compat_venv.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _compat_venv import CompatVenvUnavailable, compat_python
from conftest import ROOT

pytest.importorskip("tensorflow")  # the tour trains

TOUR = re.compile(r"--8<-- \[start:tour\](.*?)--8<-- \[end:tour\]", re.DOTALL)
BLOCK = re.compile(r"^```(?P<lang>sh|python)\n(?P<code>.*?)^```$", re.DOTALL | re.MULTILINE)
ADDRESS = "127.0.0.1:50051"  # the tour's address (eddy serve's default)


def tour_blocks() -> list[tuple[str, str]]:
    """(language, code) of every block of the README's tour, in order."""
    (tour,) = TOUR.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    return [(m["lang"], m["code"]) for m in BLOCK.finditer(tour)]


def test_the_tour_has_every_step() -> None:
    blocks = tour_blocks()
    code = "\n".join(c for _, c in blocks)
    for needed in ("eddy train", "eddy serve", "eddy stream --server", "model.stream()", "Client(", "tritonclient"):
        assert needed in code, needed


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "trainer").symlink_to(ROOT / "trainer", target_is_directory=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    server: subprocess.Popen[str] | None = None
    address = ADDRESS
    try:
        for i, (lang, code) in enumerate(tour_blocks()):
            code = code.replace(ADDRESS, address)
            if lang == "sh" and code.lstrip().startswith("eddy serve"):
                (line,) = code.strip().splitlines()
                log = tmp_path / "serve.log"  # a file, not a pipe nobody reads: the server logs every stream
                with open(log, "w") as err:
                    server = subprocess.Popen([*line.split("#")[0].split(), "--port", "0"], cwd=tmp_path, env=env,
                                              stdout=subprocess.PIPE, stderr=err, text=True)
                assert server.stdout is not None
                started = server.stdout.readline()  # "eddy: serving N model(s) on HOST:PORT"
                assert started.startswith("eddy: serving"), (started, log.read_text())
                address = started.split()[-1]
                continue
            if lang == "sh":
                args = ["bash", "-c", "set -e -o pipefail\n" + code]
            elif "tritonclient" in code:
                try:
                    args = [str(compat_python()), "-c", code]
                except CompatVenvUnavailable as e:
                    pytest.skip(f"tritonclient's venv cannot be built here: {e}")
            else:
                args = [sys.executable, "-c", code]
            done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"tour block {i + 1} ({lang}) failed:\n{code}\n{done.stdout}\n{done.stderr}"
            assert done.stdout.strip(), f"tour block {i + 1} printed nothing"
        assert server is not None, "the tour starts no server"
    finally:
        if server is not None:
            server.terminate()
            server.communicate(timeout=30)
