"""Session stores: the in-memory store and the Redis/Valkey store (state rows live in ``serving/slab.py``).

The data plane builds the one a ``--session-store`` URL names.
"""

from __future__ import annotations

from .memory import MemoryStore

__all__ = ["MemoryStore"]
