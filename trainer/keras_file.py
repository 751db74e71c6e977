"""Read a Keras model file's layer configuration without tensorflow, so a refusal or a broken file takes
milliseconds instead of the seconds tensorflow takes to start.

Supported files (what ``keras.saving.load_model`` reads, by suffix):

- ``.keras``: Keras 3's zip; its ``config.json`` holds the model config. Every member's CRC is checked too,
  so a damaged file is named here rather than by Keras later.
- ``.h5`` / ``.hdf5``: the legacy HDF5 format (``model.save("m.h5")``); the model config is the JSON
  string attribute ``model_config`` of the root group (read with h5py, which needs no tensorflow).

A TensorFlow SavedModel directory is refused: it holds a traced graph, not the Keras layers eddy rebuilds
with explicit state.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from .errors import DataError, UnsupportedModelError
from .keras_record import require_record
from .keras_rules import check_config

__all__ = ["H5_SUFFIXES", "KERAS_SUFFIX", "SUPPORTED", "precheck_model_file", "read_model_config"]

KERAS_SUFFIX = ".keras"
H5_SUFFIXES = (".h5", ".hdf5")
SUPPORTED = "a .keras file (model.save('m.keras')) or a legacy .h5 file (model.save('m.h5'))"
_RESAVE = "load the model in the code that built it and save it with model.save('model.keras')"


def precheck_model_file(path: str | Path) -> None:
    """Refuse ``path`` from its config alone if it is missing, broken or holds a model eddy cannot export.

    Raises :class:`~eddy.trainer.errors.DataError` (not a readable Keras model file) or
    :class:`~eddy.trainer.errors.UnsupportedModelError` (a layer or flag eddy cannot stream), each with a
    one-line message naming the file and the problem; also an eddy-trained network without what rebuilds its
    served model (:func:`eddy.trainer.keras_record.require_record`). Never imports tensorflow.
    """
    config = read_model_config(path)
    check_config(config, str(path))
    require_record(Path(path), config)


def read_model_config(path: str | Path) -> dict[str, Any]:
    """The model config (``{"class_name": ..., "config": {"layers": [...]}}``) of a ``.keras`` or ``.h5`` file.

    Raises :class:`~eddy.trainer.errors.DataError` naming what is wrong with the file.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            raise UnsupportedModelError(
                f"{path}: a TensorFlow SavedModel directory is not supported (it holds a traced graph, not the Keras "
                f"layers eddy rebuilds with explicit state); eddy export reads {SUPPORTED}: {_RESAVE}")
        raise DataError(f"{path}: a directory, not a Keras model file; eddy export reads {SUPPORTED}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == KERAS_SUFFIX:
        return _from_zip(path)
    if suffix in H5_SUFFIXES:
        return _from_h5(path)
    looks = (" (it is a zip: if it is a Keras 3 model, name it .keras)" if zipfile.is_zipfile(path)
             else " (it is an HDF5 file: name it .h5)" if _is_hdf5(path) else "")
    raise DataError(f"{path}: unknown model file suffix {path.suffix!r}{looks}; eddy export reads {SUPPORTED}")


def _from_zip(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()  # first member whose CRC does not match, reads every member (model files are small)
            if bad is not None:
                raise DataError(f"{path}: damaged .keras file: member {bad!r} fails its checksum")
            names = set(z.namelist())
            if "config.json" not in names:
                raise DataError(f"{path}: not a Keras model file: the zip has no config.json "
                                f"(a weights-only file? eddy export reads {SUPPORTED})")
            text = z.read("config.json")
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: not a readable .keras file (truncated or damaged? a .keras file is a zip): "
                        f"{e}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it: {e.strerror or e}") from None
    return _parse(path, text, "config.json")


def _from_h5(path: Path) -> dict[str, Any]:
    import h5py  # numpy only; ~0.15 s

    try:
        with h5py.File(path, "r") as f:
            text = f.attrs.get("model_config")
            weights_only = text is None and ("layers" in f or "model_weights" not in f)
    except OSError as e:  # h5py: "Unable to open file (truncated file: eof = ...)", "file signature not found"
        raise DataError(f"{path}: not a readable HDF5 file (truncated or damaged?): {_first_line(e)}") from None
    if text is None:
        what = "a weights-only file (model.save_weights)" if weights_only else "no model_config attribute"
        raise DataError(f"{path}: not a whole Keras model: {what}; eddy export reads {SUPPORTED}")
    return _parse(path, text, "model_config")


def _parse(path: Path, text: Any, where: str) -> dict[str, Any]:
    try:
        config = json.loads(text.decode("utf-8") if isinstance(text, bytes) else str(text))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: damaged Keras model file: its {where} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise DataError(f"{path}: damaged Keras model file: its {where} is not a JSON object")
    return config


def _is_hdf5(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
