"""Session stores: the slab (state rows), the in-memory store and the Redis/Valkey store.

:func:`open_store` builds the one a ``--session-store`` URL names.
"""

from __future__ import annotations

from .memory import MemoryStore
from .slab import Slab

__all__ = ["MemoryStore", "Slab"]
