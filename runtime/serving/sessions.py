"""Resumable stream sessions: what a session is, and the store interface.

A :class:`Session` is one stream's state on one model version, identified by
``(tenant, id)`` (the tenant is ``""`` when authentication is off). Its state
lives in a row of the :class:`~eddy.runtime.serving.slab.Slab` of its
model version; the session object is only a handle onto that row, created
when a stream acquires it.

A :class:`SessionStore` keeps sessions by id so a client that reconnects with
the same id continues exactly where it was, and makes sure only one stream
drives a session at a time. Two implementations:

- :class:`~eddy.runtime.serving.store.memory.MemoryStore`: this process's
  memory (the default): TTL for idle sessions, a cap on their number;
- :class:`~eddy.runtime.serving.store.redis.RedisStore`: a Redis/Valkey
  server shared by replicas, with leases, fencing and write-before-answer.

Lifecycle, as the data plane uses it::

    session, existed = await store.open(model, session_id, imported, tenant=..., pinned=..., owner=...)
    try:
        y = await batcher.run(session, x)    # gather, run, store.commit (durable stores), scatter
        ...                                  # await store.reset / store.export_state / await store.delete
    finally:
        await store.end(session)             # idle again; TTL restarts; the lease is let go

Use a store from one asyncio event loop thread (the server's).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import EddyError, ResourceExhausted
from ..core.ids import MAX_SESSION_ID, check_id
from ..core.model import Model
from ..core.monitor import MONITOR
from ..core.statecodec import ExportedState, encode_state
from .config import ServeConfig

if TYPE_CHECKING:
    from .slab import Slab

__all__ = ["MAX_SESSION_ID", "Session", "SessionInfo", "SessionRecord", "SessionStats", "SessionStore", "SessionsView",
           "check_id", "limit_reached"]


class Session:
    """A held session: a handle on one slab row (state, position) plus who holds it."""

    __slots__ = ("id", "tenant", "slab", "row", "owner", "token", "seq")

    def __init__(self, session_id: str, tenant: str, slab: Slab, row: int, owner: object | None = None) -> None:
        self.id = session_id
        self.tenant = tenant
        self.slab = slab
        self.row = row
        self.owner = owner  # the holder's token while a stream drives it; None for a detached view
        self.token = ""  # durable stores: this holder's lease token
        self.seq = 0  # durable stores: the record's write count when last read or written (fencing)

    @property
    def model(self) -> Model:
        return self.slab.model

    @property
    def busy(self) -> bool:
        return self.owner is not None

    @property
    def position(self) -> int:
        """Samples consumed since the session started or was last reset."""
        return int(self.slab.position[self.row])

    @position.setter
    def position(self, value: int) -> None:
        self.slab.position[self.row] = value

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of the state: name -> ``[1, *shape]`` float32, and the monitor row under ``MONITOR`` (float64)."""
        return self.slab.read(self.row)

    @state.setter
    def state(self, value: dict[str, np.ndarray]) -> None:
        """Set the graph state (checked); the monitor row too when ``value`` has one under ``MONITOR``."""
        monitor = value.get(MONITOR)
        checked: dict[str, np.ndarray] = self.model._check_state(
            {k: np.asarray(v).reshape(v.shape[1:]) for k, v in value.items() if k != MONITOR})
        if monitor is None:
            monitor = self.slab.state[MONITOR][self.row] if MONITOR in self.slab.state else None
        if monitor is not None:
            checked[MONITOR] = np.array(monitor, np.float64)
        self.slab.write(self.row, checked, self.position, float(self.slab.touched[self.row]))

    def __repr__(self) -> str:
        return (f"<Session {self.tenant + '/' if self.tenant else ''}{self.id} {self.model.name}/{self.model.version}"
                f" at {self.position}{' busy' if self.busy else ''}>")


@dataclass(frozen=True)
class SessionRecord:
    """An idle session as GetSessionState/DeleteSession report it (with its state bytes)."""

    id: str
    model: str
    version: int
    position: int
    state: bytes  # portable state bytes (:mod:`eddy.runtime.core.statecodec`)


@dataclass(frozen=True)
class SessionInfo:
    """A read-only snapshot of one session (what :class:`SessionsView` hands out)."""

    id: str
    model: str  # served model name
    version: int
    position: int  # samples consumed since creation or the last reset
    busy: bool  # a stream holds it
    idle_s: float  # store-clock seconds since it was last touched (0 while held)


@dataclass
class SessionStats:
    """Monotonic counters for a metrics layer to read."""

    created: int = 0  # new sessions, zero state
    imported: int = 0  # new sessions from state bytes
    resumed: int = 0  # acquisitions of an existing session
    closed: int = 0
    evicted: int = 0  # idle longer than the TTL
    rejected_busy: int = 0  # acquire of a session held by another stream (or replica)
    rejected_full: int = 0  # new sessions refused at max_sessions or max_per_tenant


class SessionStore(abc.ABC):
    """Where sessions live. One event loop; every refusal is an :class:`EddyError` that changes nothing."""

    durable: bool = False  # True: the batcher calls :meth:`commit` before answering
    stats: SessionStats

    @abc.abstractmethod
    async def open(self, model: Model, session_id: str | None = None, imported: ExportedState | None = None, *,
                   tenant: str = "", pinned: bool = False, resume: bool = False,
                   owner: object | None = None) -> tuple[Session, bool]:
        """Open or resume a session held by ``owner``; returns it and whether it existed.

        ``session_id`` None/``""``: a new session under a random id. Unknown id: a
        new session under it (zero state, or ``imported``), unless ``resume``
        (NOT_FOUND). Known id: that session on the version it started with
        (``pinned``: the versions must match), only with ``resume``: without it
        ALREADY_EXISTS (held or idle, never a silent attach). Raises
        FAILED_PRECONDITION (``resume`` of a busy session, other model/version),
        INVALID_ARGUMENT (bad id), RESOURCE_EXHAUSTED (a new session past
        ``max_sessions`` live ones, or past ``max_per_tenant`` of its tenant;
        expired sessions do not count), UNAVAILABLE (store down).
        """

    @abc.abstractmethod
    async def end(self, session: Session) -> None:
        """The stream holding ``session`` ended: idle and resumable (never raises)."""

    @abc.abstractmethod
    async def delete(self, session: Session | str, tenant: str = "") -> None:
        """Delete the caller's own session, or an idle one by id (NOT_FOUND, FAILED_PRECONDITION if held)."""

    @abc.abstractmethod
    async def restart(self, session: Session) -> None:
        """Back to zero state at position 0 (same id and version); durable before it returns."""

    @abc.abstractmethod
    async def info(self, session_id: str, tenant: str = "") -> SessionRecord:
        """An idle session's model, version, position and state bytes (NOT_FOUND, FAILED_PRECONDITION if held)."""

    async def commit(self, sessions: Sequence[Session], new: dict[str, np.ndarray],
                     advance: Sequence[int]) -> list[EddyError | None]:
        """Durable stores: write a batch's new state (name -> ``[B, *shape]``) before it is answered.

        One round trip for the whole batch. Returns one entry per session: None
        (written) or the error that session gets (e.g. its lease was lost); raises
        for the whole batch (UNAVAILABLE). Nothing is written in memory here: the
        batcher scatters the written rows afterwards.
        """
        return [None] * len(sessions)

    def export_state(self, session: Session) -> bytes:
        """The held session's state as portable bytes (see :mod:`eddy.runtime.core.statecodec`)."""
        return encode_state(session.model, session.position, session.slab.view(session.row))

    async def check(self) -> None:
        """Raise :class:`~eddy.runtime.core.errors.Unavailable` unless the store can be reached."""
        return None

    def evict_expired(self) -> int:
        """Drop idle sessions past their TTL now; returns how many (stores that expire by themselves: 0)."""
        return 0

    @abc.abstractmethod
    def retire(self, model: Model) -> None:
        """``model`` was removed from the repository: it takes no new sessions (see :meth:`in_use`)."""

    @abc.abstractmethod
    def in_use(self, model: Model) -> bool:
        """Whether a session on ``model`` is held here, or may still be resumed here."""

    @abc.abstractmethod
    def forget(self, model: Model) -> None:
        """Let go of everything kept for ``model`` (call only once :meth:`in_use` is False)."""

    def start(self, interval_s: float = ServeConfig.eviction_interval) -> None:
        """Start background work (TTL sweeps every ``interval_s``, lease renewal) in the running loop."""
        return None

    async def shutdown(self) -> None:
        """Stop background work and let go of connections and leases."""
        return None

    def get(self, session_id: str, tenant: str = "") -> Session | None:
        """The session if this process has it in memory (held by a stream here, or, for the memory store, idle)."""
        return None

    @abc.abstractmethod
    def snapshot(self, session_id: str, tenant: str = "") -> SessionInfo | None:
        """A snapshot of a session this process knows (all, for the memory store; held ones otherwise)."""

    @property
    @abc.abstractmethod
    def busy_count(self) -> int:
        """Sessions currently held by a stream of this process."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Sessions this process keeps in memory (all of them for the memory store; held ones otherwise)."""


class SessionsView:
    """Read-only access to a :class:`SessionStore`: counts and snapshots, never the live objects."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, str) and self._store.snapshot(session_id) is not None

    @property
    def busy_count(self) -> int:
        """Sessions currently held by a stream."""
        return self._store.busy_count

    @property
    def stats(self) -> SessionStats:
        """A copy of the store's counters."""
        return dataclasses.replace(self._store.stats)

    def get(self, session_id: str, tenant: str = "") -> SessionInfo | None:
        """A snapshot of session ``session_id``, or None."""
        return self._store.snapshot(session_id, tenant)


def limit_reached(live: int, limit: int, *, tenant: bool) -> ResourceExhausted:
    """The refusal of a new session when ``live`` sessions (of the caller's tenant, or in all) reached ``limit``."""
    if tenant:
        return ResourceExhausted(f"session limit reached for this tenant: {live} live sessions (max {limit}, "
                                 "--max-sessions-per-tenant); close finished ones first")
    return ResourceExhausted(f"session limit reached: {live} live sessions (max {limit}, --max-sessions); "
                             "close finished sessions or retry after idle ones expire")
