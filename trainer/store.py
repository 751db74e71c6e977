"""Model repository layout: ``<model dir>/<version>/``, written atomically.

A version directory is built in a hidden staging directory next to the
versions (``<model dir>/.staging-*``, which is not a version name) and renamed
into place only when complete, so readers never see a half-written version,
an existing version is never overwritten, and a failure leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["list_versions", "next_version", "publish", "staging_dir"]

_VERSION = re.compile(r"[1-9][0-9]*")
_MAX_ATTEMPTS = 100  # publish retries when concurrent writers race for a version number


def list_versions(model_dir: str | Path) -> list[int]:
    """Sorted integer versions present in ``model_dir`` (empty if it does not exist)."""
    try:
        entries = list(Path(model_dir).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(p.name) for p in entries if _VERSION.fullmatch(p.name) and p.is_dir())


def next_version(model_dir: str | Path) -> int:
    """One more than the highest existing version, 1 if there is none."""
    versions = list_versions(model_dir)
    return versions[-1] + 1 if versions else 1


@contextmanager
def staging_dir(model_dir: str | Path) -> Iterator[Path]:
    """A fresh staging directory inside ``model_dir`` (created if needed).

    On exit the staging directory is removed if it still exists (it will not
    once :func:`publish` has renamed it), and so is ``model_dir`` if this call
    created it and it is still empty.
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


def publish(staging: Path, model_dir: str | Path, finalize: Callable[[Path, int], None]) -> tuple[Path, int]:
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
