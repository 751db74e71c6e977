"""Publishing a model version: stage its files, write its manifest, rename it into place.

``eddy train`` and ``eddy export`` both go through :func:`stage`::

    with publish.stage(model_dir) as staging:
        exported = export_model(model, staging.path, ...)   # graphs, parity checks
        model.save(staging.path / KERAS_FILE)
        manifest = staging.manifest(exported, name=..., ...)
        version_dir = staging.publish(manifest)

The version directory is built in a hidden staging directory next to the
versions (``<model dir>/.staging-*``, which is not a version name) and renamed
into place only when complete, so readers never see a half-written version,
an existing version is never overwritten, and a failure leaves nothing behind
(not even a model directory the run created).
"""

from __future__ import annotations

import errno
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eddy.runtime.core.layout import version_dirs
from eddy.runtime.core.manifest import Manifest, sha256_file, write_manifest

from .keras_record import embed_record

if TYPE_CHECKING:
    from .onnx_export import ExportResult

__all__ = ["KERAS_FILE", "Staging", "claim_version", "library_versions", "list_versions", "next_version", "stage",
           "staging_dir"]

KERAS_FILE = "model.keras"  # the Keras model next to the graphs (hashed in the manifest's files)
_MAX_ATTEMPTS = 100  # claim_version retries when concurrent writers race for a version number
# manifest key -> distribution whose version the manifest records
_VERSIONED = {d: d for d in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy")} | {"eddy": "eddy-rnn"}


class Staging:
    """A staging directory for one new version of the model in ``model_dir`` (see :func:`stage`)."""

    def __init__(self, path: Path, model_dir: Path) -> None:
        self.path = path  # write the version's files here
        self.model_dir = model_dir

    def manifest(self, exported: ExportResult, *, graphs: dict[str, Any] | None = None, **fields: Any) -> Manifest:
        """A manifest for ``exported`` (state, graphs, opset, parity), stamped with the time, the library
        versions and the sha256 of ``model.keras``, into which it first writes the manifest's record
        (:mod:`eddy.trainer.keras_record`); ``fields`` give the rest (name, cell, columns, ...).
        ``graphs`` replaces ``exported.graphs`` (e.g. with int8 graphs added). The version is set by
        :meth:`publish`."""
        keras_file = self.path / KERAS_FILE
        manifest = Manifest(
            version=0,
            state=exported.state,
            graphs=dict(graphs if graphs is not None else exported.graphs),
            opset=exported.opset,
            parity=exported.parity,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            versions=library_versions(),
            **fields,
        )
        if keras_file.is_file():
            embed_record(keras_file, manifest)  # what rebuilds the served graphs travels with the network
            manifest.files = {**manifest.files, KERAS_FILE: sha256_file(keras_file)}
        return manifest

    def publish(self, manifest: Manifest, before: Callable[[Path, Manifest], None] | None = None) -> Path:
        """Claim the next version, set ``manifest.version``, run ``before(directory, manifest)`` (files that
        record the version, e.g. the report), write ``manifest.json`` and rename the staging directory into
        place; returns the version directory."""

        def finalize(directory: Path, version: int) -> None:
            manifest.version = version
            if before is not None:
                before(directory, manifest)
            write_manifest(directory, manifest)

        return claim_version(self.path, self.model_dir, finalize)[0]


@contextmanager
def stage(model_dir: str | Path) -> Iterator[Staging]:
    """A :class:`Staging` in ``model_dir`` (created if needed); everything is removed unless published."""
    with staging_dir(model_dir) as path:
        yield Staging(path, Path(model_dir))


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that produce a model, for the manifest."""
    versions = {"python": platform.python_version()}
    for key, dist in _VERSIONED.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = "unknown"
    return versions


def list_versions(model_dir: str | Path) -> list[int]:
    """Sorted versions present in ``model_dir`` (empty if it does not exist); the rule is layout's."""
    return sorted(version_dirs(model_dir))


def next_version(model_dir: str | Path) -> int:
    """One more than the highest existing version, 1 if there is none."""
    versions = list_versions(model_dir)
    return versions[-1] + 1 if versions else 1


@contextmanager
def staging_dir(model_dir: str | Path) -> Iterator[Path]:
    """A fresh staging directory inside ``model_dir`` (created if needed).

    On exit the staging directory is removed if it still exists (it will not
    once :func:`claim_version` has renamed it), and so is ``model_dir`` if this
    call created it and it is still empty.
    """
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(model_dir))
    created = [p for p in (model_dir, *model_dir.parents) if not p.exists()]
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # innermost first
            try:
                p.rmdir()
            except OSError:
                break


def claim_version(staging: Path, model_dir: str | Path, finalize: Callable[[Path, int], None]) -> tuple[Path, int]:
    """Rename ``staging`` to ``model_dir/<next version>``; returns ``(path, version)``.

    ``finalize(staging, version)`` runs first (e.g. to write the manifest, which
    records the version). If another writer takes that version first, the
    next number is tried, so an existing version is never replaced.
    """
    model_dir = Path(model_dir)
    staging.chmod(0o755)  # mkdtemp makes it 0700; a published version is world-readable
    for _ in range(_MAX_ATTEMPTS):
        version = next_version(model_dir)
        target = model_dir / str(version)
        finalize(staging, version)
        if target.exists():  # appeared since next_version looked
            continue
        try:
            os.rename(staging, target)  # atomic; fails if target is a non-empty directory
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue
            raise
        return target, version
    raise FileExistsError(errno.EEXIST, f"could not claim a new version after {_MAX_ATTEMPTS} attempts", str(model_dir))
