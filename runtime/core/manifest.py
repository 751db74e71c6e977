"""The model manifest: everything the runtime needs to rebuild a model.

A model version directory (``models/<name>/<version>/``) holds
``manifest.json`` next to the ONNX graphs. The trainer writes it with
:func:`write_manifest`; the runtime reads and checks it with
:func:`read_manifest`. Both sides go through :class:`Manifest`, so the schema
lives in one place.

File names, graph I/O names, state naming and the version rule are in
:mod:`eddy.runtime.core.layout`; this module is the manifest's schema.

``io`` says where the normalisation lives. ``"raw"``: ``x`` and ``y`` are in the
data's own units, the normalisation and any target transform are inside the
graphs, and the runtime does no arithmetic around them (``normalization`` is a
record). ``"normalised"`` (manifests written before ``io`` existed): ``x`` and
``y`` are normalised units and the runtime applies ``normalization`` both ways.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .calibration import Calibration
from .errors import ModelLoadError
from .layout import CELLS, GRAPH_KINDS, MANIFEST_FILE

__all__ = [
    "FORMAT",
    "GraphSpec",
    "Manifest",
    "Normalization",
    "StateSpec",
    "read_manifest",
    "sha256_file",
    "write_manifest",
]

FORMAT = "eddy.model/1"
IO_KINDS = ("raw", "normalised")  # Manifest.io values


@dataclass(frozen=True)
class StateSpec:
    """One state tensor: graph input ``name``, output ``name + '_out'``."""

    name: str  # e.g. "h0", "c0"
    shape: list[int]  # without the batch dimension, e.g. [50]


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX file of the model."""

    file: str  # relative to the version directory
    sha256: str  # hex digest of the file, checked at load
    ops: list[str] = field(default_factory=list)  # sorted ONNX op types used


@dataclass(frozen=True)
class Normalization:
    """z = (raw - mean) / std, per column; the runtime applies it both ways."""

    input_mean: list[float]  # per feature, training rows only
    input_std: list[float]  # per feature
    target_mean: list[float]  # per target
    target_std: list[float]  # per target


@dataclass
class Manifest:
    """Schema of ``manifest.json`` (format ``eddy.model/1``)."""

    name: str  # the model's name, the repository folder models/<name>/
    version: int  # the version folder's number
    cell: str  # simple_rnn, lstm or gru (layout.CELLS)
    layers: int  # stacked recurrent layers
    units: int  # units per recurrent layer
    features: list[str]  # input column names, F of them
    targets: list[str]  # output column names, O of them
    window: int  # training window length (samples)
    horizon: int  # predicts the target this many steps after the last input
    state: list[StateSpec]  # the graphs' state tensors, in graph order
    normalization: Normalization  # the training rows' statistics (inside the graphs when io is raw)
    graphs: dict[str, GraphSpec]  # "step" and "sequence" at least
    opset: int  # ONNX opset of the graphs
    parity: dict[str, Any]  # export checks against Keras in float64: error, Keras float32's error, limit, rule
    metrics: dict[str, Any]  # test-set metrics in raw units
    created: str  # ISO 8601 UTC
    versions: dict[str, str]  # producing library versions
    training: dict[str, Any] = field(default_factory=dict)  # configuration used
    files: dict[str, str] = field(default_factory=dict)  # other files -> sha256
    layer_units: list[int] = field(default_factory=list)  # units of each recurrent layer; empty = all `units`
    io: str = "normalised"  # "raw": graphs take/return raw units (normalisation inside); see the module docstring
    target_transform: str = "level"  # what the network predicts: level, delta, log_delta, seasonal_delta, double_delta
    calibration: dict[str, Any] = field(default_factory=dict)  # prediction intervals (core/calibration.py); {}: none
    format: str = FORMAT  # "eddy.model/1"

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    @property
    def intervals(self) -> Calibration | None:
        """The interval calibration, or None for a model without one (made before intervals existed)."""
        return Calibration.from_dict(self.calibration, self.targets) if self.calibration else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d = {"format": d.pop("format"), **d}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "manifest") -> Manifest:
        """Build and validate; raises :class:`ModelLoadError` naming the problem."""
        if not isinstance(d, dict):
            raise ModelLoadError(f"{where}: expected a JSON object")
        if d.get("format") != FORMAT:
            raise ModelLoadError(f"{where}: unsupported format {d.get('format')!r} (expected {FORMAT!r})")
        try:
            m = cls(
                name=str(d["name"]),
                version=int(d["version"]),
                cell=str(d["cell"]),
                layers=int(d["layers"]),
                units=int(d["units"]),
                features=[str(c) for c in d["features"]],
                targets=[str(c) for c in d["targets"]],
                window=int(d["window"]),
                horizon=int(d.get("horizon", 1)),
                state=[StateSpec(name=str(s["name"]), shape=[int(n) for n in s["shape"]]) for s in d["state"]],
                normalization=Normalization(**{k: [float(v) for v in d["normalization"][k]] for k in (
                    "input_mean", "input_std", "target_mean", "target_std")}),
                graphs={k: GraphSpec(file=str(g["file"]), sha256=str(g["sha256"]), ops=list(g.get("ops", [])))
                        for k, g in d["graphs"].items()},
                opset=int(d["opset"]),
                parity=dict(d.get("parity", {})),
                metrics=dict(d.get("metrics", {})),
                created=str(d.get("created", "")),
                versions={str(k): str(v) for k, v in d.get("versions", {}).items()},
                training=dict(d.get("training", {})),
                files={str(k): str(v) for k, v in d.get("files", {}).items()},
                layer_units=[int(u) for u in d.get("layer_units", [])],
                io=str(d.get("io", "normalised")),
                target_transform=str(d.get("target_transform", "level")),
                calibration=dict(d.get("calibration") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            missing = f"missing field {e}" if isinstance(e, KeyError) else str(e)[:200]
            raise ModelLoadError(f"{where}: invalid manifest: {missing}") from None
        m.validate(where)
        return m

    def validate(self, where: str = "manifest") -> None:
        def bad(msg: str) -> ModelLoadError:
            return ModelLoadError(f"{where}: {msg}")

        if self.cell not in CELLS:
            raise bad(f"unknown cell {self.cell!r} (expected one of {', '.join(CELLS)})")
        if self.layer_units and (len(self.layer_units) != self.layers or min(self.layer_units) < 1):
            raise bad(f"layer_units needs {self.layers} positive entries, one per recurrent layer")
        if self.io not in IO_KINDS:
            raise bad(f"unknown io {self.io!r} (expected one of {', '.join(IO_KINDS)})")
        if self.io == "normalised" and self.target_transform != "level":
            raise bad(f"target_transform {self.target_transform!r} needs io 'raw' (the transform lives in the graphs)")
        if self.version < 1:
            raise bad(f"version must be >= 1, got {self.version}")
        if self.layers < 1 or self.units < 1 or self.window < 1 or self.horizon < 1:
            raise bad("layers, units, window and horizon must be positive")
        if not self.features or not self.targets:
            raise bad("features and targets must be non-empty")
        if not self.state:
            raise bad("a recurrent model needs at least one state tensor")
        for s in self.state:
            if not s.shape or any(n < 1 for n in s.shape):
                raise bad(f"state {s.name!r} has invalid shape {s.shape}")
        n = self.normalization
        for key, cols in (("input", self.features), ("target", self.targets)):
            mean, std = getattr(n, f"{key}_mean"), getattr(n, f"{key}_std")
            if len(mean) != len(cols) or len(std) != len(cols):
                raise bad(f"normalization.{key}_mean/std need {len(cols)} entries, one per column")
            if not all(math.isfinite(v) for v in mean + std) or any(v <= 0 for v in std):
                raise bad(f"normalization.{key}_std must be positive and all values finite")
        for required in GRAPH_KINDS:
            if required not in self.graphs:
                raise bad(f"graphs.{required} is missing")
        if self.calibration:
            try:
                Calibration.from_dict(self.calibration, self.targets)
            except (KeyError, TypeError, ValueError) as e:
                raise bad(f"invalid calibration: {f'missing field {e}' if isinstance(e, KeyError) else e}") from None


_MAX_MANIFEST = 1 << 20  # bytes; a manifest is a few KB


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(version_dir: str | Path, verify_files: bool = True) -> Manifest:
    """Read ``manifest.json`` from a version directory and check file hashes."""
    version_dir = Path(version_dir)
    path = version_dir / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no manifest (is {version_dir} a model version directory?)") from None
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read: {e.strerror}") from None
    if len(raw) > _MAX_MANIFEST:
        raise ModelLoadError(f"{path}: {len(raw)} bytes; a manifest is at most {_MAX_MANIFEST}")
    try:
        d = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as e:
        raise ModelLoadError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, NaN/Infinity, nesting too deep
        raise ModelLoadError(f"{path}: not valid JSON: {str(e)[:120] or type(e).__name__}") from None
    m = Manifest.from_dict(d, where=str(path))
    if verify_files:
        expected = {g.file: g.sha256 for g in m.graphs.values()} | m.files
        root = version_dir.resolve()
        for rel, digest in expected.items():
            f = version_dir / rel
            if not f.resolve().is_relative_to(root):
                raise ModelLoadError(f"{f}: listed in the manifest but outside the version directory "
                                     "(an absolute path, '..' or a symlink out of it)")
            if not f.is_file():
                raise ModelLoadError(f"{f}: listed in the manifest but missing")
            if sha256_file(f) != digest:
                raise ModelLoadError(f"{f}: sha256 does not match the manifest (file changed or corrupted)")
    return m


def write_manifest(version_dir: str | Path, manifest: Manifest) -> Path:
    """Validate and write ``manifest.json``; returns its path."""
    manifest.validate(str(version_dir))
    path = Path(version_dir) / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path
