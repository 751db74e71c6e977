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

from ..core.errors import EddyError, InvalidInput, NotFound, shown
from ..core.layout import MANIFEST_FILE, is_version_name, parse_version
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
        self.precision = precision
        self._models: dict[str, dict[int, Model]] = {}  # name -> version -> model; replaced, never mutated
        self._retired: list[Model] = []  # removed versions (replaced ones too), kept while sessions may use them
        self.skipped: dict[Path, str] = {}  # version dir -> why it was not loaded
        self.refresh()
        if not self._models:
            log.warning("model repository %s holds no loadable model", self.root)

    def refresh(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """Rescan ``root``: load version directories not loaded yet, retire those that disappeared.

        Returns ``(added, removed)`` as ``(name, version)`` pairs. A retired
        version takes no new sessions; sessions already on it keep running
        (:meth:`session_model`) until the data plane lets go of it
        (:meth:`forget`). A directory that failed to load is retried on each
        refresh (it may have been half copied). Safe to run in a worker thread
        while the loop reads: the index is swapped in one assignment.
        """
        found: dict[tuple[str, int], Path] = {}
        for name_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for version_dir in sorted(p for p in name_dir.iterdir() if p.is_dir()):
                if is_version_name(version_dir.name):
                    found[(name_dir.name, int(version_dir.name))] = version_dir
                elif version_dir.name.isdigit() and version_dir not in self.skipped:  # say why it is not served
                    self._skip(version_dir, "not a version directory name (versions are 1, 2, ... in ASCII "
                                            "digits without leading zeros)")
        models = {name: dict(vs) for name, vs in self._models.items()}
        added = []
        for (name, version), version_dir in found.items():
            if version not in models.get(name, {}):
                model = self._load(name, version, version_dir)
                if model is not None:
                    models.setdefault(name, {})[version] = model
                    added.append((name, version))
        removed = [(name, v) for name, vs in models.items() for v in vs if (name, v) not in found]
        for name, version in removed:
            self._retired.append(models[name].pop(version))
            log.warning("%s/%d was removed from %s: it takes no new sessions", name, version, self.root)
        self._models = {name: vs for name, vs in models.items() if vs}
        self.skipped = {d: r for d, r in self.skipped.items() if d.is_dir() and d not in
                        {found[k] for k in added}}
        return added, removed

    def _load(self, name: str, version: int, version_dir: Path) -> Model | None:
        real = version_dir.resolve()
        if not real.is_relative_to(self.root.resolve()):
            self._skip(version_dir, f"resolves to {real}, outside the repository (symlinks out of the repository "
                                    "are refused)")
            return None
        if not (version_dir / MANIFEST_FILE).is_file():
            self._skip(version_dir, f"no {MANIFEST_FILE}")
            return None
        try:
            model = load(version_dir, precision=self.precision, lazy_sequence=True)  # sequence graph on first chunk
        except EddyError as e:
            self._skip(version_dir, e.message)
            return None
        except Exception as e:  # one broken directory never stops the server: one line, no traceback
            self._skip(version_dir, f"cannot load ({type(e).__name__}: {str(e)[:200]})")
            return None
        if (model.name, model.version) != (name, version):
            log.warning("%s: manifest says %s/%d; serving it as %s/%d",
                        version_dir, model.name, model.version, name, version)
            model.manifest = dataclasses.replace(model.manifest, name=name, version=version)
        self.skipped.pop(version_dir, None)
        log.info("loaded %s/%d (%s)", name, version, version_dir)
        return model

    def _skip(self, version_dir: Path, reason: str) -> None:
        if self.skipped.get(version_dir) != reason:  # once per reason, not on every rescan
            log.error("skipping %s: %s", version_dir, reason)
        self.skipped[version_dir] = reason

    def session_model(self, name: str, version: int) -> Model:
        """The model a stored session runs on: a served version, or a removed one still loaded."""
        model = self._models.get(name, {}).get(version) or next(
            (m for m in reversed(self._retired) if (m.name, m.version) == (name, version)), None)
        if model is None:
            raise NotFound(f"model {shown(name)} version {version} is no longer served; the session cannot continue")
        return model

    def retired(self) -> list[Model]:
        """The removed versions still loaded (for the sessions on them)."""
        return list(self._retired)

    def forget(self, model: Model) -> None:
        """Let go of a removed version no session uses any more (it and its onnxruntime sessions are freed)."""
        if any(m is model for m in self._retired):
            self._retired.remove(model)  # one call: safe beside a refresh appending in its thread
            log.info("%s/%d unloaded: no session uses it any more", model.name, model.version)

    def unavailable(self) -> list[str]:
        """Model names that have a skipped version directory and no loaded version (health: NOT_SERVING)."""
        return sorted({p.parent.name for p in self.skipped} - set(self._models))

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
            raise NotFound(f"model {shown(name)} not found (served models: {known})")
        if version is None or version == "":
            return max(versions)
        version = parse_version(version)  # InvalidInput unless it follows the version rule
        if version not in versions:
            raise NotFound(f"model {shown(name)} has no version {version} (versions: "
                           f"{', '.join(map(str, sorted(versions)))})")
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
