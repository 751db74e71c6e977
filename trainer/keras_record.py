"""What rebuilds a served model around the network in an eddy-written ``model.keras`` (numpy and the manifest only).

The network ``eddy train`` fits works in *model space*: normalised inputs, and with a delta target transform
the changes between samples, not the values. The served graphs wrap it with the normalisation, the target
transform and its state (the previous sample, the last season). The Keras file alone therefore does not say
what the served model computes: exported as a raw model it serves wrong numbers without an error.

So every ``model.keras`` eddy writes (``eddy train``, ``eddy export``) carries a :class:`Record` as one more
zip member, :data:`MEMBER`, written from the version's manifest when it is published. ``eddy export`` of such a
file rebuilds the same graphs from it; for a file written before the record existed, the ``manifest.json``
next to it (whose sha256 of the file must match) gives the same record. An eddy-written file with neither is
refused (:func:`require_record`). Keras ignores zip members it does not know, so the file still loads anywhere.
The record also carries the version's interval calibration, so an export without ``--data`` serves the same
intervals, and the ARIMA stage of a ``--blend arima`` version with its weight, so the export serves the same blend.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eddy.runtime.core.errors import ModelLoadError
from eddy.runtime.core.layout import MANIFEST_FILE
from eddy.runtime.core.manifest import Manifest, Normalization, read_manifest, sha256_file

from .errors import DataError, UnsupportedModelError
from .graph_io import WINDOW_STATE
from .transform import KINDS, SEASON_STATE, SEASONAL_KINDS

__all__ = ["EDDY_MODEL_PREFIX", "FORMAT", "MEMBER", "Record", "embed_record", "read_record", "record_of",
           "require_record"]

MEMBER = "eddy.json"  # the record's zip member inside model.keras
FORMAT = "eddy.keras-record/1"
EDDY_MODEL_PREFIX = "eddy_"  # the Keras model name eddy train gives its networks (eddy_<cell>)
_SEMANTICS = ("stream", "window")


@dataclass(frozen=True)
class Record:
    """What the served graphs put around the network, as the manifest says it."""

    target_transform: str  # level, delta, log_delta, seasonal_delta, double_delta
    season: int | None  # the seasonal kinds' season; else the --season the model was scored with (or None)
    normalization: Normalization  # model-space statistics, inside the graphs
    window: int
    horizon: int
    features: list[str]
    targets: list[str]
    semantics: str  # stream (the recurrent state) or window (each answer from the last `window` samples only)
    split: list[float] | None  # the train/val/test fractions the model was trained and scored with
    io: str = "raw"  # the manifest's io: raw (normalisation in the graphs) or normalised (older versions)
    calibration: dict[str, Any] = field(default_factory=dict)  # the manifest's prediction intervals ({}: none)
    blend: dict[str, Any] = field(default_factory=dict)  # --blend arima: the served "arima" and its "weight" ({}: none)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}


def record_of(manifest: Manifest) -> Record:
    """The record of a version from its manifest."""
    state = {s.name: s.shape for s in manifest.state}
    season = manifest.training.get("season")
    if manifest.target_transform in SEASONAL_KINDS:  # the buffer holds S rows, S + 1 for double_delta
        season = state[SEASON_STATE][0] - (manifest.target_transform == "double_delta")
    split = manifest.training.get("split")
    return Record(
        target_transform=manifest.target_transform,
        season=int(season) if season else None,
        normalization=manifest.normalization,
        window=manifest.window,
        horizon=manifest.horizon,
        features=list(manifest.features),
        targets=list(manifest.targets),
        semantics="window" if list(state) == [WINDOW_STATE] else "stream",
        split=[float(f) for f in split] if isinstance(split, list | tuple) and len(split) == 3 else None,
        io=manifest.io,
        calibration=dict(manifest.calibration),
        blend=_served_blend(manifest.metrics.get("blend")),
    )


def _served_blend(entry: Any) -> dict[str, Any]:
    """What rebuilds the ARIMA stage of a blended version (trainer/blend.py) from its ``metrics.blend``: the
    served ``arima`` and its ``weight``, or {} when the version serves the networks alone."""
    if not isinstance(entry, dict) or entry.get("kind") != "arima":
        return {}
    return {"arima": entry["arima"], "weight": entry["weight"]}


def embed_record(path: Path, manifest: Manifest) -> None:
    """Write ``manifest``'s record into the ``.keras`` zip at ``path`` as :data:`MEMBER` (replacing an older one)."""
    text = json.dumps(record_of(manifest).to_json(), indent=1)
    fd, tmp = tempfile.mkstemp(prefix=".record-", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
            for info in src.infolist():
                if info.filename != MEMBER:
                    dst.writestr(info, src.read(info))
            dst.writestr(MEMBER, text, compress_type=zipfile.ZIP_STORED)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_record(path: Path) -> tuple[Record, str] | None:
    """``(record, where it came from)`` for the ``.keras`` file at ``path``, or None if it has none.

    The file's own :data:`MEMBER` first, else the ``manifest.json`` next to it if that manifest lists this
    file with its sha256. Raises :class:`DataError` for a damaged record.
    """
    if path.suffix.lower() != ".keras" or not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        text = z.read(MEMBER) if MEMBER in z.namelist() else None
    if text is not None:
        return _parse(path, text), f"its own record ({MEMBER} inside the file)"
    manifest = _manifest_listing(path)
    if manifest is None:
        return None
    return record_of(manifest), f"the {MANIFEST_FILE} next to it (version {manifest.version} of {manifest.name!r})"


def require_record(path: Path, config: dict[str, Any]) -> None:
    """Refuse an eddy-trained network (its Keras model named ``eddy_<cell>``) that has no record: alone it would
    be exported as a raw model and serve wrong numbers."""
    name = str(config.get("config", {}).get("name", "")) if isinstance(config.get("config"), dict) else ""
    if not name.startswith(EDDY_MODEL_PREFIX) or read_record(path) is not None:
        return
    beside = path.parent / MANIFEST_FILE
    why = (f"the {MANIFEST_FILE} next to it does not list this file's sha256 (was the file changed or replaced?)"
           if beside.is_file() else f"no {MANIFEST_FILE} next to it")
    raise UnsupportedModelError(
        f"{path}: written by eddy train (Keras model {name!r}) without what rebuilds its served model: the network "
        f"reads normalised inputs (and, with a delta target transform, changes between samples), so exported as a "
        f"raw model it would serve wrong numbers; {why}. Export the model.keras inside its version directory, "
        f"next to its {MANIFEST_FILE}, or serve that version directory as it is")


def _manifest_listing(path: Path) -> Manifest | None:
    """The manifest next to ``path`` if it lists ``path``'s name with ``path``'s sha256 (else None)."""
    if not (path.parent / MANIFEST_FILE).is_file():
        return None
    try:
        manifest = read_manifest(path.parent, verify_files=False)
    except ModelLoadError:
        return None
    want = manifest.files.get(path.name)
    return manifest if want is not None and want == sha256_file(path) else None


def _parse(path: Path, text: bytes) -> Record:
    def damaged(why: str) -> DataError:
        return DataError(f"{path}: damaged {MEMBER} (what rebuilds the served model): {why}")

    try:
        d = json.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise damaged(f"not JSON ({e})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise damaged(f"expected format {FORMAT!r}, got {d.get('format') if isinstance(d, dict) else d!r}")
    try:
        record = Record(
            target_transform=str(d["target_transform"]),
            season=int(d["season"]) if d.get("season") is not None else None,
            normalization=Normalization(**{k: [float(v) for v in d["normalization"][k]] for k in (
                "input_mean", "input_std", "target_mean", "target_std")}),
            window=int(d["window"]),
            horizon=int(d["horizon"]),
            features=[str(c) for c in d["features"]],
            targets=[str(c) for c in d["targets"]],
            semantics=str(d["semantics"]),
            split=[float(f) for f in d["split"]] if d.get("split") is not None else None,
            io=str(d.get("io", "raw")),
            calibration=dict(d.get("calibration") or {}),
            blend=dict(d.get("blend") or {}),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise damaged(f"{type(e).__name__}: {e}") from None
    if record.target_transform not in KINDS or record.semantics not in _SEMANTICS:
        raise damaged(f"unknown target transform {record.target_transform!r} or semantics {record.semantics!r}")
    return record
