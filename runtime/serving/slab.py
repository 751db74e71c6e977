"""The slab: every session's state of one model version in one preallocated array per state tensor.

A session is a row. Rows come from a free list; when it runs dry every array
doubles (amortised O(1) per new session, and no per-session numpy objects).
A batch of B sessions is one gather (``array[rows]``) and, after the
onnxruntime call, one scatter (``array[rows] = new``) per state tensor, in
place of B small arrays concatenated and split again.

Beside the state the slab keeps, per row, the session's position and the
last time it was touched (``float64``), so an idle session costs its state
bytes plus 16 and the id-map entry of the store that owns the slab.

Single-threaded: use a slab from one event-loop thread. A gathered array is a
copy or a view of rows the caller holds, so a worker thread may read it while
the loop grows the slab.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..core.model import Model
from ..core.samples import FLOAT32_LE

__all__ = ["Rows", "Slab", "as_rows"]

_MIN_ROWS = 16  # first allocation; doubled whenever the free list runs dry

Rows = Sequence[int] | np.ndarray | slice  # a batch's rows: ints, an intp array, or a slice of consecutive rows


def as_rows(rows: Sequence[int]) -> np.ndarray | slice:
    """``rows`` as a slice when they are consecutive and ascending (gathered as views), else an ``intp`` array."""
    index = np.array(rows, np.intp)
    if len(index) > 1 and index[-1] - index[0] == len(index) - 1 and (np.diff(index) == 1).all():
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


class Slab:
    """Rows of state for one :class:`Model` (one model version)."""

    def __init__(self, model: Model, capacity: int = _MIN_ROWS) -> None:
        self.model = model
        self.names = [s.name for s in model.state_spec]
        self._shapes = [tuple(s.shape) for s in model.state_spec]
        capacity = max(int(capacity), 1)
        self.state = {n: np.zeros((capacity, *shape), np.float32) for n, shape in zip(self.names, self._shapes)}
        self.position = np.zeros(capacity, np.int64)  # samples consumed, per row
        self.touched = np.zeros(capacity, np.float64)  # store clock of the last touch, per row
        self.used = np.zeros(capacity, np.bool_)
        self._free = list(range(capacity - 1, -1, -1))  # pop() hands out the lowest row first
        self.row_bytes = sum(int(np.prod(s)) * 4 for s in self._shapes)  # float32 state bytes per session

    @property
    def capacity(self) -> int:
        return len(self.position)

    def __len__(self) -> int:
        """Rows in use."""
        return self.capacity - len(self._free)

    # -- rows ------------------------------------------------------------------
    def alloc(self, state: Mapping[str, np.ndarray] | None = None, position: int = 0, now: float = 0.0) -> int:
        """A row holding ``state`` (name -> ``[1, *shape]`` or ``[*shape]``; zeros if None)."""
        if not self._free:
            self._grow()
        row = self._free.pop()
        self.used[row] = True
        self.write(row, state, position, now)
        return row

    def free(self, row: int) -> None:
        """Give ``row`` back (its contents are left; the next alloc overwrites them)."""
        if self.used[row]:
            self.used[row] = False
            self._free.append(row)

    def write(self, row: int, state: Mapping[str, np.ndarray] | None, position: int, now: float) -> None:
        """Overwrite one row's state (zeros if None), position and touch time."""
        for n, shape in zip(self.names, self._shapes):
            self.state[n][row] = 0.0 if state is None else np.asarray(state[n], np.float32).reshape(shape)
        self.position[row] = position
        self.touched[row] = now

    def read(self, row: int) -> dict[str, np.ndarray]:
        """A copy of one row's state: name -> ``[1, *shape]``."""
        return {n: a[row:row + 1].copy() for n, a in self.state.items()}

    def view(self, row: int) -> dict[str, np.ndarray]:
        """One row as zero-copy views, name -> ``[1, *shape]`` (valid until the slab grows)."""
        return {n: a[row:row + 1] for n, a in self.state.items()}

    def load_bytes(self, row: int, data: bytes) -> None:
        """Fill one row from :meth:`row_to_bytes` output (float32 LE, tensors in manifest order)."""
        flat = np.frombuffer(data, FLOAT32_LE)
        if flat.size * 4 != self.row_bytes:
            raise ValueError(f"state record holds {len(data)} bytes; {self.model.name}/{self.model.version} "
                             f"needs {self.row_bytes}")
        offset = 0
        for n, shape in zip(self.names, self._shapes):
            size = int(np.prod(shape))
            self.state[n][row] = flat[offset:offset + size].reshape(shape)
            offset += size

    def row_to_bytes(self, row: int) -> bytes:
        """One row's state as float32 LE bytes, tensors in manifest order."""
        return b"".join(self.state[n][row].astype(FLOAT32_LE, copy=False).tobytes() for n in self.names)

    # -- batches ---------------------------------------------------------------
    def gather(self, rows: Rows) -> dict[str, np.ndarray]:
        """The state of ``rows``: name -> ``[B, *shape]``.

        Rows as ints or an ``intp`` array: one fancy-index copy per tensor; a
        lone row given as a list, or a ``slice`` of consecutive rows: zero-copy
        views (they stay valid while the slab grows: growing allocates new
        arrays and leaves these as they were).
        """
        if isinstance(rows, slice):
            return {n: a[rows] for n, a in self.state.items()}
        if len(rows) == 1 and not isinstance(rows, np.ndarray):
            return self.view(rows[0])  # no copy for a lone session
        index = rows if isinstance(rows, np.ndarray) else np.fromiter(rows, np.intp, len(rows))
        return {n: a[index] for n, a in self.state.items()}

    def scatter(self, rows: Rows, new: Mapping[str, np.ndarray], advance: int) -> None:
        """Write back ``new`` (name -> ``[B, *shape]``) and advance each row's position by ``advance`` samples."""
        if isinstance(rows, slice):  # consecutive rows: one block copy per tensor
            for n in self.names:
                self.state[n][rows] = new[n]
            self.position[rows] += advance
            return
        if len(rows) == 1:
            r = int(rows[0])
            for n in self.names:
                self.state[n][r] = new[n][0]
            self.position[r] += advance
            return
        index = rows if isinstance(rows, np.ndarray) else np.fromiter(rows, np.intp, len(rows))
        for n in self.names:
            self.state[n][index] = new[n]
        self.position[index] += advance

    @staticmethod
    def batch_to_bytes(new: Mapping[str, np.ndarray], names: Sequence[str]) -> list[bytes]:
        """Per-session state bytes for a batch ``new`` (name -> ``[B, *shape]``), as :meth:`row_to_bytes`."""
        b = len(next(iter(new.values())))
        flat = np.concatenate([np.asarray(new[n], FLOAT32_LE).reshape(b, -1) for n in names], axis=1)  # [B, S]
        return [flat[i].tobytes() for i in range(b)]

    # -- internals -------------------------------------------------------------
    def _grow(self) -> None:
        old = self.capacity
        new = old * 2
        for n, a in self.state.items():
            grown = np.zeros((new, *a.shape[1:]), np.float32)
            grown[:old] = a
            self.state[n] = grown
        self.position = np.concatenate([self.position, np.zeros(old, np.int64)])
        self.touched = np.concatenate([self.touched, np.zeros(old, np.float64)])
        self.used = np.concatenate([self.used, np.zeros(old, np.bool_)])
        self._free.extend(range(new - 1, old - 1, -1))

    def __repr__(self) -> str:
        return f"<Slab {self.model.name}/{self.model.version} {len(self)}/{self.capacity} rows>"
