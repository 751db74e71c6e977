"""The ``.ort`` twins of a model's graphs: onnxruntime's own format, what its mobile and minimal builds load.

Converted with onnxruntime's own tool (``python -m
onnxruntime.tools.convert_onnx_models_to_ort``, "Fixed" optimisation style:
optimisations applied before saving, so a minimal build needs no optimiser).
The manifest lists them as graphs ``step_ort`` / ``sequence_ort``; the
runtime loads them with ``eddy.runtime.load(path, graph_format="ort")``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from eddy.runtime.core.manifest import GraphSpec, sha256_file

from .errors import ExportError

__all__ = ["ORT_SUFFIX", "write_ort"]

ORT_SUFFIX = "_ort"  # manifest graph key suffix: "step" -> "step_ort"


def write_ort(version_dir: str | Path, graphs: dict[str, GraphSpec]) -> dict[str, GraphSpec]:
    """Convert ``graphs`` (key -> ``.onnx`` spec in ``version_dir``) to ``.ort`` files beside them.

    One run of the tool converts them all (a copy of each graph in a scratch folder: the tool converts every
    ``.onnx`` file of a folder; a Python start and onnxruntime's import per graph were most of the time). Returns
    the new specs keyed ``<key>_ort``. Raises :class:`~eddy.trainer.errors.ExportError` with the tool's last line
    if a conversion fails.
    """
    version_dir = Path(version_dir)
    out: dict[str, GraphSpec] = {}
    with tempfile.TemporaryDirectory(prefix="eddy-ort-") as tmp:
        sources, converted = Path(tmp) / "onnx", Path(tmp) / "ort"
        sources.mkdir()
        for spec in graphs.values():
            shutil.copyfile(version_dir / spec.file, sources / spec.file)
        cmd = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort",
               "--optimization_style", "Fixed", "--output_dir", str(converted), str(sources)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        for key, spec in graphs.items():
            src = version_dir / spec.file
            made = converted / (src.stem + ".ort")
            if done.returncode != 0 or not made.is_file():
                last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                raise ExportError(f"{src}: conversion to .ort failed: {last[0]}")
            target = version_dir / made.name
            target.write_bytes(made.read_bytes())
            out[key + ORT_SUFFIX] = GraphSpec(file=target.name, sha256=sha256_file(target), ops=list(spec.ops))
    return out
