"""A model repository: ``<root>/<name>/<version>/manifest.json``, like Triton's.

Every version directory is loaded (manifest and sha256 checked, onnxruntime
sessions opened) when the repository is created, so a request never pays for
a load and a broken model shows up at start. A directory that fails to load
is logged with the reason and skipped: one bad model does not take the other
models down. Models are keyed by their directory names; a manifest whose
name or version disagrees with its directory (a copied or renamed version
directory) is served as ``<directory name>/<directory version>``, with a
warning, and that served identity is what sessions, exported state bytes and
metadata carry, so a state blob always names the version that made it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..core.errors import EddyError, InvalidInput, NotFound
from ..core.manifest import MANIFEST_FILE
from ..core.model import Model, load

__all__ = ["ModelRepository"]

log = logging.getLogger("eddy.repository")


class ModelRepository:
    """The models under ``root``, all versions, loaded eagerly.

    Raises :class:`NotFound` if ``root`` is not a directory. An empty
    repository is allowed (and logged).
    """

    def __init__(self, root: str | Path, *, precision: str = "float32") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise NotFound(f"{self.root}: model repository directory does not exist")
        self._models: dict[str, dict[int, Model]] = {}  # name -> version -> model
        self.skipped: dict[Path, str] = {}  # version dir -> why it was not loaded
        for name_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for version_dir in sorted(p for p in name_dir.iterdir() if p.is_dir()):
                self._add(name_dir.name, version_dir, precision)
        if not self._models:
            log.warning("model repository %s holds no loadable model", self.root)

    def _add(self, name: str, version_dir: Path, precision: str) -> None:
        if not version_dir.name.isdigit():
            return  # not a version directory (e.g. notes, reports)
        if not (version_dir / MANIFEST_FILE).is_file():
            self._skip(version_dir, f"no {MANIFEST_FILE}")
            return
        try:
            model = load(version_dir, precision=precision)
        except EddyError as e:
            self._skip(version_dir, e.message)
            return
        version = int(version_dir.name)
        if (model.name, model.version) != (name, version):
            log.warning("%s: manifest says %s/%d; serving it as %s/%d",
                        version_dir, model.name, model.version, name, version)
            model.manifest = dataclasses.replace(model.manifest, name=name, version=version)
        self._models.setdefault(name, {})[version] = model
        log.info("loaded %s/%d (%s)", name, version, version_dir)

    def _skip(self, version_dir: Path, reason: str) -> None:
        self.skipped[version_dir] = reason
        log.error("skipping %s: %s", version_dir, reason)

    def index(self) -> dict[str, list[int]]:
        """``{name: [versions, ascending]}`` for every loaded model, by name."""
        return {name: sorted(vs) for name, vs in sorted(self._models.items())}

    def names(self) -> list[str]:
        """The model names served, sorted."""
        return sorted(self._models)

    def versions(self, name: str) -> list[int]:
        """The versions served under ``name``, ascending (NotFound naming what exists)."""
        self.resolve(name)  # raises NotFound/InvalidInput for an unknown or empty name
        return sorted(self._models[name])

    def resolve(self, name: str, version: str | int | None = None) -> int:
        """The version number a request means: ``None``/``""`` is the latest.

        Raises :class:`InvalidInput` for a malformed version and
        :class:`NotFound` (naming what exists) for an unknown model or version.
        """
        if not name:
            raise InvalidInput("no model name given")
        versions = self._models.get(name)
        if versions is None:
            known = ", ".join(self._models) or "none"
            raise NotFound(f"model {name!r} not found (served models: {known})")
        if version is None or version == "":
            return max(versions)
        if isinstance(version, str):
            if not version.strip().isdigit():
                raise InvalidInput(f"version must be a non-negative integer or empty for the latest, got {version!r}")
            version = int(version)
        if version not in versions:
            raise NotFound(f"model {name!r} has no version {version} (versions: {', '.join(map(str, sorted(versions)))})")
        return version

    def get(self, name: str, version: str | int | None = None) -> Model:
        """The loaded model ``name`` at ``version`` (latest if omitted)."""
        resolved = self.resolve(name, version)  # raises NotFound/InvalidInput first
        return self._models[name][resolved]

    def __len__(self) -> int:
        """Number of model names served."""
        return len(self._models)

    def __repr__(self) -> str:
        n = sum(len(v) for v in self._models.values())
        return f"<ModelRepository {self.root}: {len(self._models)} model(s), {n} version(s)>"
