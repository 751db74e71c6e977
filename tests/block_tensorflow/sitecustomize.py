"""Test helper: make tensorflow, keras and tf2onnx unimportable in this interpreter.

Put this directory first on ``PYTHONPATH`` of a subprocess; Python imports
``sitecustomize`` at start-up, which installs a meta path finder that raises
``ModuleNotFoundError`` for the blocked packages (and their submodules), as
if the ``train`` extra were not installed. ``importlib.util.find_spec`` raises
the same error for them. Used by tests that prove the runtime and ``eddy
train``'s "needs the training extra" message work without tensorflow.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder

BLOCKED = frozenset({"tensorflow", "keras", "tf2onnx"})


class BlockTensorflow(MetaPathFinder):
    """Refuses to find the :data:`BLOCKED` top-level packages."""

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by tests/block_tensorflow)", name=fullname)
        return None


sys.meta_path.insert(0, BlockTensorflow())
