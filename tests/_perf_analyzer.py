"""perf_analyzer, Triton's C++ load generator, in a virtualenv of its own: ``.venv-perf-analyzer/``.

The ``perf-analyzer`` wheels that carry it need glibc 2.38 (on older systems
the index serves an empty 0.1.0 placeholder); the ``tritonclient[all]==2.51.0``
wheel bundles a binary that runs on glibc 2.36. It also needs the system's
``libb64-0d`` (``apt-get install libb64-0d``) and ``libcudart.so.12``, which
the ``nvidia-cuda-runtime-cu12`` wheel provides (its ``lib/`` goes on
``LD_LIBRARY_PATH``; no GPU is used). ``bench/bench_triton.py`` builds the
venv (:func:`build`); the tests only use it if it is there (:func:`find`).
Stdlib only, so the benchmark can use it too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import venv
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PERF_ANALYZER_VENV", "REQUIREMENTS", "PerfAnalyzer", "PerfAnalyzerUnavailable", "build", "errors", "find",
           "server_side"]

ROOT = Path(__file__).resolve().parent.parent
PERF_ANALYZER_VENV = Path(os.environ.get("EDDY_PERF_ANALYZER_VENV", ROOT / ".venv-perf-analyzer"))
# tritonclient 2.51's wheel bundles a perf_analyzer built for glibc < 2.38; libcudart.so.12 comes from the CUDA runtime
REQUIREMENTS = ("tritonclient[all]==2.51.0", "nvidia-cuda-runtime-cu12==12.9.79")


class PerfAnalyzerUnavailable(RuntimeError):
    """perf_analyzer is not installed here, or does not start (the message says why)."""


@dataclass(frozen=True)
class PerfAnalyzer:
    """The binary and the environment it runs in."""

    binary: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``perf_analyzer ARGS``: its exit status and output (it exits 0 even when requests failed:
        check :func:`errors`)."""
        return subprocess.run([str(self.binary), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)


def find(venv_dir: Path = PERF_ANALYZER_VENV) -> PerfAnalyzer:
    """The venv's perf_analyzer, checked to start; :class:`PerfAnalyzerUnavailable` with the reason if not."""
    binary = venv_dir / "bin" / "perf_analyzer"
    if not binary.exists():
        raise PerfAnalyzerUnavailable(f"{binary} does not exist (`make bench-triton` builds it)")
    cudart = sorted(venv_dir.glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib"))
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join([*map(str, cudart), *filter(None, [env.get("LD_LIBRARY_PATH")])])
    pa = PerfAnalyzer(binary, env)
    r = pa.run("--version", timeout=60)
    if r.returncode != 0:
        hint = " (apt-get install libb64-0d)" if "libb64" in r.stderr else ""
        raise PerfAnalyzerUnavailable(f"{binary} does not start{hint}: {r.stderr.strip()[-300:]}")
    return pa


def build(venv_dir: Path = PERF_ANALYZER_VENV) -> PerfAnalyzer:
    """:func:`find`, building the venv first if perf_analyzer is missing (pip; a few minutes)."""
    if not (venv_dir / "bin" / "perf_analyzer").exists():
        shutil.rmtree(venv_dir, ignore_errors=True)
        venv.EnvBuilder(with_pip=True).create(venv_dir)
        r = subprocess.run([str(venv_dir / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "install",
                            "--quiet", *REQUIREMENTS], capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(venv_dir, ignore_errors=True)
            raise PerfAnalyzerUnavailable(f"pip could not install {' '.join(REQUIREMENTS)}:\n{r.stderr[-2000:]}")
    return find(venv_dir)


def errors(output: str) -> list[str]:
    """The error lines of a perf_analyzer run (``Thread [k] had error: ...``, ``error: ...``)."""
    return [line.strip() for line in output.splitlines() if re.search(r"\berror\b", line, re.IGNORECASE)]


_SERVER = re.compile(r"Avg request latency: (\d+) usec \(overhead (\d+) usec \+ queue (\d+) usec \+ compute input "
                     r"(\d+) usec \+ compute infer (\d+) usec \+ compute output (\d+) usec\)")


def server_side(output: str) -> dict[str, int] | None:
    """The server-side table of a perf_analyzer report (from the server's ModelStatistics), None if absent:
    counts, and the average request's latency split, in µs."""
    if "  Server: " not in output:
        return None
    table = output.split("  Server: ", 1)[1]
    out = {}
    for key, label in (("inference_count", "Inference count"), ("execution_count", "Execution count"),
                       ("success_count", "Successful request count")):
        m = re.search(rf"{label}: (\d+)", table)
        if m:
            out[key] = int(m.group(1))
    m = _SERVER.search(table)
    if m:
        keys = ("request_us", "overhead_us", "queue_us", "compute_input_us", "compute_infer_us", "compute_output_us")
        out.update(zip(keys, map(int, m.groups())))
    return out
