"""The slab: every session's state of one model version in one preallocated array per state tensor.

A session is a row. Rows come from a free list; when it runs dry every array
doubles (amortised O(1) per new session, and no per-session numpy objects).
A batch of B sessions is one gather (``array[rows]``) and, after the
onnxruntime call, one scatter (``array[rows] = new``) per state tensor, in
place of B small arrays concatenated and split again.

Beside the graph state the slab keeps, per row, the session's monitor row
(under :data:`~eddy.runtime.core.monitor.MONITOR`, float64: its online
recalibration and live accuracy, :mod:`eddy.runtime.core.monitor`), its
position and the last time it was touched (``float64``), so an idle session
costs its state and monitor bytes plus 16 and the id-map entry of the store
that owns the slab.

A step applies in two moves, so that a durable store can write it in between:
:meth:`Slab.advance` computes it, pure (the graph, then the monitor), from what
:meth:`Slab.gather` read, and :meth:`Slab.scatter` writes it back, the one
place a step takes effect. The mapping between them holds the graph state
under the manifest's names, the new monitor rows under ``MONITOR`` and the
step's scores under :data:`OBSERVED`, each with one row per session (filter
with ``{k: v[i] for k, v in new.items()}``).

Single-threaded: use a slab from one event-loop thread. A gathered array is a
copy or a view of rows the caller holds, so a worker thread may read it while
the loop grows the slab.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from ..core.model import Model
from ..core.monitor import MONITOR
from ..core.samples import FLOAT32_LE, FLOAT64_LE

__all__ = ["MONITOR", "OBSERVED", "POSITION", "Rows", "Slab", "as_rows"]

POSITION = "#position"  # gathered: the rows' positions [B] (int64), which the monitor needs
OBSERVED = "#observed"  # a computed step: its scored errors [B, n, E], pooled into the model's live figures at scatter

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
        self._width = model.monitor.width  # monitor values per row (0: the model has nothing to monitor)
        if self._width:
            self.state[MONITOR] = model.monitor.fresh(capacity)  # [capacity, K] float64
        self.position = np.zeros(capacity, np.int64)  # samples consumed, per row
        self.touched = np.zeros(capacity, np.float64)  # store clock of the last touch, per row
        self.used = np.zeros(capacity, np.bool_)
        self._free = list(range(capacity - 1, -1, -1))  # pop() hands out the lowest row first
        self.graph_bytes = sum(int(np.prod(s)) * 4 for s in self._shapes)  # float32 graph-state bytes per session
        self.row_bytes = self.graph_bytes + 8 * self._width  # and the float64 monitor row

    @property
    def capacity(self) -> int:
        return len(self.position)

    def __len__(self) -> int:
        """Rows in use."""
        return self.capacity - len(self._free)

    # -- rows ------------------------------------------------------------------
    def alloc(self, state: Mapping[str, np.ndarray] | None = None, position: int = 0, now: float = 0.0) -> int:
        """A row holding ``state`` (name -> ``[1, *shape]`` or ``[*shape]``, the monitor row under ``MONITOR``;
        zeros and a fresh monitor row if None)."""
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
        """Overwrite one row's state (zeros if None; a fresh monitor row if None or without ``MONITOR``),
        position and touch time."""
        for n, shape in zip(self.names, self._shapes):
            self.state[n][row] = 0.0 if state is None else np.asarray(state[n], np.float32).reshape(shape)
        if self._width:
            if state is None or MONITOR not in state:
                self.state[MONITOR][row] = self.model.monitor.fresh(1)[0]
            else:
                self.state[MONITOR][row] = np.asarray(state[MONITOR], np.float64).reshape(self._width)
        self.position[row] = position
        self.touched[row] = now

    def read(self, row: int) -> dict[str, np.ndarray]:
        """A copy of one row's state: name -> ``[1, *shape]``, and the monitor row under ``MONITOR``."""
        return {n: a[row:row + 1].copy() for n, a in self.state.items()}

    def view(self, row: int) -> dict[str, np.ndarray]:
        """One row as zero-copy views, name -> ``[1, *shape]`` (valid until the slab grows)."""
        return {n: a[row:row + 1] for n, a in self.state.items()}

    def fresh(self, batch: int = 1) -> dict[str, np.ndarray]:
        """The state of ``batch`` new sessions: zeros, and fresh monitor rows."""
        out = {n: np.zeros((batch, *shape), np.float32) for n, shape in zip(self.names, self._shapes)}
        if self._width:
            out[MONITOR] = self.model.monitor.fresh(batch)
        return out

    def load_bytes(self, row: int, data: bytes) -> None:
        """Fill one row from :meth:`row_to_bytes` output (the graph state, float32 LE, tensors in manifest order,
        then the monitor row, float64 LE). A record of the graph state alone (written before monitor rows
        existed) gets a fresh monitor row."""
        if len(data) not in (self.row_bytes, self.graph_bytes):
            raise ValueError(f"state record holds {len(data)} bytes; {self.model.name}/{self.model.version} "
                             f"needs {self.row_bytes}")
        flat = np.frombuffer(data, FLOAT32_LE, count=self.graph_bytes // 4)
        offset = 0
        for n, shape in zip(self.names, self._shapes):
            size = int(np.prod(shape))
            self.state[n][row] = flat[offset:offset + size].reshape(shape)
            offset += size
        if self._width:
            self.state[MONITOR][row] = np.frombuffer(data, FLOAT64_LE, offset=self.graph_bytes) \
                if len(data) == self.row_bytes else self.model.monitor.fresh(1)[0]

    def row_to_bytes(self, row: int) -> bytes:
        """One row's state as bytes: float32 LE tensors in manifest order, then the float64 LE monitor row."""
        parts = [self.state[n][row].astype(FLOAT32_LE, copy=False).tobytes() for n in self.names]
        if self._width:
            parts.append(self.state[MONITOR][row].astype(FLOAT64_LE, copy=False).tobytes())
        return b"".join(parts)

    # -- batches ---------------------------------------------------------------
    def gather(self, rows: Rows, copy: bool = False) -> dict[str, np.ndarray]:
        """What :meth:`advance` needs of ``rows``: name -> ``[B, *shape]``, the monitor rows under ``MONITOR`` and
        the positions under :data:`POSITION`.

        Rows as ints or an ``intp`` array: one fancy-index copy per tensor; a
        lone row given as a list, or a ``slice`` of consecutive rows: zero-copy
        views (they stay valid while the slab grows: growing allocates new
        arrays and leaves these as they were), unless ``copy``.
        """
        if isinstance(rows, slice):
            out = {n: a[rows].copy() if copy else a[rows] for n, a in self.state.items()}
            out[POSITION] = self.position[rows].copy()
            return out
        if len(rows) == 1 and not isinstance(rows, np.ndarray):
            r = int(rows[0])
            out = self.read(r) if copy else self.view(r)  # no copy for a lone session
            out[POSITION] = self.position[r:r + 1].copy()
            return out
        index = rows if isinstance(rows, np.ndarray) else np.fromiter(rows, np.intp, len(rows))
        out = {n: a[index] for n, a in self.state.items()}
        out[POSITION] = self.position[index]
        return out

    def advance(self, x: np.ndarray, gathered: Mapping[str, np.ndarray],
                run_options: ort.RunOptions | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Compute one step of ``B`` sessions from ``gathered`` (:meth:`gather`): raw ``x[B, n, F]`` ->
        ``(answer [B, n, O * (1 + 2L)], new)``; nothing is written (see the module docstring).

        The answer holds the predictions (``answer[..., :O]``) and each calibrated level's lower and upper
        bounds; ``new`` the graph state, the monitor rows and the step's scores. ``run_options`` (the lane's) runs
        the sequence graph, stoppable from another thread; otherwise one sample runs the step graph.
        """
        answer, new, observed = self.model._run_sessions(x, gathered, gathered[POSITION], run_options=run_options)
        if observed is not None:
            new[OBSERVED] = observed
        return answer, new

    def observe(self, x: np.ndarray, gathered: Mapping[str, np.ndarray], y: np.ndarray,
                new: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:meth:`advance` for a graph step computed elsewhere (``y [B, n, O]``, ``new`` its graph state): the
        monitor's part only. A fleet runs its k samples as k step-graph calls this way."""
        answer, monitor, observed = self.model._observe(x, gathered, gathered[POSITION], y)
        if monitor is not None:
            new[MONITOR] = monitor
        if observed is not None:
            new[OBSERVED] = observed
        return answer, new

    def scatter(self, rows: Rows, new: Mapping[str, np.ndarray], advance: int) -> None:
        """Apply a step computed by :meth:`advance` (``new``: one row per entry of ``rows``): write the state and
        monitor rows, advance each row's position by ``advance`` samples, pool the step's scores into the model's
        live figures. The one place a session's step takes effect."""
        if isinstance(rows, slice):  # consecutive rows: one block copy per tensor
            for n, a in self.state.items():
                a[rows] = new[n]
            self.position[rows] += advance
        elif len(rows) == 1:
            r = int(rows[0])
            for n, a in self.state.items():
                a[r] = new[n][0]
            self.position[r] += advance
        else:
            index = rows if isinstance(rows, np.ndarray) else np.fromiter(rows, np.intp, len(rows))
            for n, a in self.state.items():
                a[index] = new[n]
            self.position[index] += advance
        observed = new.get(OBSERVED)
        if observed is not None:
            self.model.live.add(observed)

    def batch_to_bytes(self, new: Mapping[str, np.ndarray]) -> list[bytes]:
        """Per-session state bytes for a batch ``new`` (name -> ``[B, *shape]``), as :meth:`row_to_bytes`."""
        b = len(new[self.names[0]])
        flat = np.concatenate([np.asarray(new[n], FLOAT32_LE).reshape(b, -1) for n in self.names], axis=1)  # [B, S]
        if not self._width:
            return [flat[i].tobytes() for i in range(b)]
        monitor = np.asarray(new[MONITOR], FLOAT64_LE).reshape(b, self._width)  # [B, K]
        return [flat[i].tobytes() + monitor[i].tobytes() for i in range(b)]

    # -- internals -------------------------------------------------------------
    def _grow(self) -> None:
        old = self.capacity
        new = old * 2
        for n, a in self.state.items():
            grown = np.zeros((new, *a.shape[1:]), a.dtype)
            grown[:old] = a
            self.state[n] = grown
        self.position = np.concatenate([self.position, np.zeros(old, np.int64)])
        self.touched = np.concatenate([self.touched, np.zeros(old, np.float64)])
        self.used = np.concatenate([self.used, np.zeros(old, np.bool_)])
        self._free.extend(range(new - 1, old - 1, -1))

    def __repr__(self) -> str:
        return f"<Slab {self.model.name}/{self.model.version} {len(self)}/{self.capacity} rows>"
