"""The model-directory format: where things are and what they are called.

A model repository is ``<root>/<name>/<version>/``; a version directory holds::

    manifest.json         the schema in :mod:`eddy.runtime.core.manifest` (shapes, state, normalisation, hashes)
    step.onnx             x[B, F], state [B, *shape]    -> y[B, O], new state
    sequence.onnx         x[B, T, F], state [B, *shape] -> y[B, T, O], new state
    step_int8.onnx ...    optional dynamically quantised twins (precision "int8")
    step.ort ...          optional onnxruntime-format twins (graph format "ort"; manifest keys ``step_ort``, ...)
    model.keras           the trained Keras model (trainer side; the runtime never reads it)
    report.json/.png      training report (read by ``eddy info`` when present)

Graph I/O names: input ``x``, output ``y``, one input per state tensor named
as in the manifest (``h<layer>``, and ``c<layer>`` for LSTM layers) and one
output per state tensor named ``<state>_out``.

THE version rule, used by loading, the repository, request parsing and
``eddy info`` alike: a version is a positive integer written in at most
:data:`MAX_VERSION_DIGITS` ASCII digits without leading zeros (``1``, ``12``;
not ``07``, ``0``, ``v1``, ``٣``, ``𝟏``, ``²``, nor a 19-digit number). Any
other directory name is not a version directory.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import InvalidInput, NotFound, shown

__all__ = [
    "CELLS",
    "GRAPH_FORMATS",
    "GRAPH_KINDS",
    "INPUT",
    "KERAS_FILE",
    "MANIFEST_FILE",
    "MAX_VERSION_DIGITS",
    "OUTPUT",
    "PRECISIONS",
    "QUANTIZED_PRECISIONS",
    "REPORT_FILE",
    "REPORT_PLOT",
    "STATE_OUT_SUFFIX",
    "graph_file",
    "graph_key",
    "is_version_name",
    "parse_version",
    "resolve_version_dir",
    "state_names",
    "state_output",
    "version_dirs",
]

MANIFEST_FILE = "manifest.json"
KERAS_FILE = "model.keras"
REPORT_FILE = "report.json"
REPORT_PLOT = "report.png"

CELLS = ("simple_rnn", "lstm", "gru")  # recurrent cell types a manifest may name
PRECISIONS = ("float32", "int8")  # graph precisions the runtime loads
QUANTIZED_PRECISIONS = PRECISIONS[1:]  # the ones exported as extra graphs next to float32
GRAPH_KINDS = ("step", "sequence")
GRAPH_FORMATS = ("onnx", "ort")  # ort: onnxruntime's own format (mobile and minimal builds)

INPUT = "x"  # graph input: samples (also the name the Open Inference Protocol serves)
OUTPUT = "y"  # graph output: predictions (likewise)
STATE_OUT_SUFFIX = "_out"  # state output name = state input name + this

MAX_VERSION_DIGITS = 18  # every such version fits an int64 (Triton's) and parses fast (Python refuses > 4,300 digits)
_VERSION = re.compile(rf"[1-9][0-9]{{0,{MAX_VERSION_DIGITS - 1}}}")  # re.ASCII is implied: [0-9] is a character range


def graph_key(kind: str, precision: str = "float32", graph_format: str = "onnx") -> str:
    """The manifest ``graphs`` key of a graph: ``step``, ``sequence``, ``step_int8``, ``step_ort``, ..."""
    key = kind if precision == "float32" else f"{kind}_{precision}"
    return key if graph_format == "onnx" else f"{key}_{graph_format}"


def graph_file(kind: str, precision: str = "float32", graph_format: str = "onnx") -> str:
    """The file name a graph is exported to: ``step.onnx``, ``sequence_int8.onnx``, ``step.ort``, ..."""
    return f"{graph_key(kind, precision)}.{graph_format}"


def state_names(cell: str, layers: int) -> list[str]:
    """The state tensor names of a stack, in graph order: ``h0`` (and ``c0`` for LSTM), ``h1``, ..."""
    return [f"{kind}{i}" for i in range(layers) for kind in (("h", "c") if cell == "lstm" else ("h",))]


def state_output(name: str) -> str:
    """The graph output carrying state input ``name`` after the step: ``h0`` -> ``h0_out``."""
    return name + STATE_OUT_SUFFIX


def is_version_name(name: str) -> bool:
    """True when ``name`` is a version: at most 18 ASCII digits, no leading zeros, at least 1."""
    return _VERSION.fullmatch(name) is not None


def parse_version(version: str | int) -> int:
    """A requested version as an integer (:class:`InvalidInput` unless it follows the version rule)."""
    if isinstance(version, int) and not isinstance(version, bool):
        if 1 <= version < 10 ** MAX_VERSION_DIGITS:
            return version
    elif isinstance(version, str) and is_version_name(version):
        return int(version)
    raise InvalidInput(f"version must be a positive integer without leading zeros (1, 2, ...; at most "
                       f"{MAX_VERSION_DIGITS} digits) or empty for the latest, got {shown(version)}")


def version_dirs(model_dir: str | Path) -> dict[int, Path]:
    """``{version: directory}`` for the version-named directories of ``model_dir`` (empty if it is none)."""
    try:
        entries = list(Path(model_dir).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {int(p.name): p for p in entries if is_version_name(p.name) and p.is_dir()}


def resolve_version_dir(path: str | Path) -> Path:
    """``models/NAME/3`` -> itself; ``models/NAME`` -> its highest version holding a manifest.

    Raises :class:`NotFound` for a missing directory or one without versions.
    """
    path = Path(path)
    if (path / MANIFEST_FILE).is_file():
        return path
    if not path.is_dir():
        raise NotFound(f"{path}: no such model directory")
    versions = [v for v, d in version_dirs(path).items() if (d / MANIFEST_FILE).is_file()]
    if not versions:
        raise NotFound(f"{path}: holds no model version (expected {path}/<version>/{MANIFEST_FILE}, "
                       "versions being 1, 2, ... without leading zeros)")
    return path / str(max(versions))
