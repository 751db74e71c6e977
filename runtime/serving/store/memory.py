"""The in-memory session store (the default): sessions in slab rows of this process.

An idle session is its slab row (state, position, last touch) and one entry
in a per-tenant ``id -> handle`` dict; a :class:`Session` object exists only
while a stream holds it. Idle sessions are dropped after ``ttl_s`` (a numpy
sweep over each slab's touch times), at most ``max_sessions`` live at once
(and ``max_per_tenant`` per tenant; expired ones are swept before a new
session is refused), one stream per session. Nothing survives the process: use
:class:`~eddy.runtime.serving.store.redis.RedisStore` for that.

The synchronous methods (:meth:`acquire`, :meth:`release`, :meth:`close`,
:meth:`reset`, :meth:`get`) are the in-process API; the async
:class:`SessionStore` interface wraps them. None of them awaits, so each call
is atomic on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import numpy as np

from ...core.errors import AlreadyExists, FailedPrecondition, NotFound, session_busy
from ...core.model import Model
from ...core.statecodec import ExportedState, decode_state
from ..config import ServeConfig
from ..sessions import Session, SessionInfo, SessionRecord, SessionStats, SessionStore, check_id, limit_reached
from ..slab import Slab

__all__ = ["MemoryStore"]

log = logging.getLogger("eddy.sessions")

_ROW_BITS = 40  # handle = slab number << _ROW_BITS | row


class MemoryStore(SessionStore):
    """Sessions of this process, by ``(tenant, id)``, with a TTL for idle ones and a cap on their number.

    ``clock`` is injectable (tests pass a fake one); ``on_evict(n)`` is called
    after each sweep that evicted ``n > 0`` sessions; ``max_per_tenant`` None:
    only ``max_sessions``.
    """

    def __init__(self, ttl_s: float = ServeConfig.session_ttl, max_sessions: int = ServeConfig.max_sessions,
                 clock: Callable[[], float] = time.monotonic, on_evict: Callable[[int], None] | None = None, *,
                 max_per_tenant: int | None = ServeConfig.max_sessions_per_tenant) -> None:
        if ttl_s <= 0 or max_sessions < 1 or (max_per_tenant is not None and max_per_tenant < 1):
            raise ValueError(f"ttl_s must be > 0, max_sessions and max_per_tenant >= 1, got {ttl_s}, {max_sessions}, "
                             f"{max_per_tenant}")
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.max_per_tenant = max_per_tenant
        self.clock = clock
        self.on_evict = on_evict
        self.stats = SessionStats()
        self._slabs: dict[int, Slab] = {}  # slab number (the high bits of a handle) -> slab
        self._slab_no: dict[Model, int] = {}
        self._ids: dict[str, dict[str, int]] = {}  # tenant -> session id -> handle
        self._held: dict[int, Session] = {}  # handle -> the session object of its holder
        self._count = 0
        self._evictor: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return self._count

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, str) and session_id in self._ids.get("", {})

    @property
    def busy_count(self) -> int:
        return len(self._held)

    def tenant_count(self, tenant: str) -> int:
        """Sessions of ``tenant`` (held or idle)."""
        return len(self._ids.get(tenant, ()))

    def slab(self, model: Model) -> Slab:
        """The slab holding ``model``'s sessions (created on first use)."""
        no = self._slab_no.get(model)
        if no is None:
            no = self._slab_no[model] = max(self._slabs, default=-1) + 1
            self._slabs[no] = Slab(model)
        return self._slabs[no]

    def snapshot(self, session_id: str, tenant: str = "") -> SessionInfo | None:
        s = self.get(session_id, tenant)
        if s is None:
            return None
        idle = 0.0 if s.busy else self.clock() - float(s.slab.touched[s.row])
        return SessionInfo(s.id, s.model.name, s.model.version, s.position, s.busy, idle)

    def get(self, session_id: str, tenant: str = "") -> Session | None:
        """The session under ``session_id``: the holder's object, or a detached view of an idle one."""
        handle = self._ids.get(tenant, {}).get(session_id)
        if handle is None:
            return None
        held = self._held.get(handle)
        return held if held is not None else Session(session_id, tenant, *self._unpack(handle))

    # -- the synchronous API ---------------------------------------------------
    def acquire(self, model: Model, session_id: str | None = None,
                state_bytes: bytes | ExportedState | None = None, *, pinned: bool = False,
                owner: object | None = None, tenant: str = "") -> Session:
        """Open or resume a session and mark it held by the caller (see :meth:`SessionStore.open`)."""
        session_id = check_id(session_id)
        imported = decode_state(state_bytes) if isinstance(state_bytes, (bytes, bytearray, memoryview)) \
            else state_bytes
        ids = self._ids.setdefault(tenant, {})
        if session_id is not None and (handle := ids.get(session_id)) is not None:
            return self._resume(handle, session_id, tenant, model, pinned, imported, owner)
        state = None if imported is None else imported.for_model(model)  # name -> [1, *shape]
        self._check_room(tenant)
        while session_id is None or session_id in ids:
            session_id = uuid.uuid4().hex
        slab = self.slab(model)
        row = slab.alloc(state, imported.position if imported else 0, self.clock())
        handle = self._slab_no[model] << _ROW_BITS | row
        ids[session_id] = handle
        self._count += 1
        if imported is None:
            self.stats.created += 1
        else:
            self.stats.imported += 1
        return self._hold(handle, session_id, tenant, owner)

    def release(self, session: Session) -> None:
        """The holder is done with ``session`` for now: idle again, TTL restarts."""
        handle = self._ids.get(session.tenant, {}).get(session.id)
        if handle is not None and self._held.get(handle) is session:
            del self._held[handle]
            session.slab.touched[session.row] = self.clock()
        session.owner = None

    def close(self, session: Session | str, tenant: str = "") -> None:
        """Delete a session: the one the caller holds, or an idle one by id.

        Raises :class:`NotFound` for an unknown id and
        :class:`FailedPrecondition` for an id another stream holds.
        """
        if isinstance(session, Session):
            sid, tenant = session.id, session.tenant
        else:
            sid = session
        ids = self._ids.get(tenant, {})
        handle = ids.get(sid)
        held = self._held.get(handle) if handle is not None else None
        if handle is None or (isinstance(session, Session) and held is not session):
            raise NotFound(f"session {sid} does not exist (closed, expired or never opened)")
        if isinstance(session, str) and held is not None:
            raise FailedPrecondition(f"session {sid} is in use by another stream")
        self._drop(tenant, sid, handle)
        if held is not None:
            held.owner = None
        self.stats.closed += 1

    def reset(self, session: Session) -> None:
        """Back to zero state and position 0 (same id, same model version)."""
        session.slab.write(session.row, None, 0, self.clock())

    def evict_expired(self) -> int:
        """Drop sessions idle longer than ``ttl_s`` (never held ones); returns how many."""
        cutoff, expired = self.clock() - self.ttl_s, set()
        for no, slab in self._slabs.items():  # one numpy comparison per slab finds them ...
            expired.update(no << _ROW_BITS | row for row in np.nonzero(slab.used & (slab.touched < cutoff))[0].tolist())
        expired.difference_update(self._held)
        victims = [(tenant, sid, h) for tenant, ids in self._ids.items() for sid, h in ids.items() if h in expired] \
            if expired else []  # ... and one pass over the id map names them (no per-row id column to keep)
        for tenant, sid, handle in victims:
            self._drop(tenant, sid, handle)
        evicted = len(victims)
        if evicted:
            self.stats.evicted += evicted
            log.info("evicted %d idle session(s) (ttl %.0fs); %d live", evicted, self.ttl_s, self._count)
            if self.on_evict is not None:
                self.on_evict(evicted)
        return evicted

    async def run_evictor(self, interval_s: float = ServeConfig.eviction_interval) -> None:
        """Sweep every ``interval_s`` until cancelled (start it as a task)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.evict_expired()
            except Exception:  # a failing metrics hook must not stop eviction
                log.exception("session eviction sweep failed")

    # -- the SessionStore interface ----------------------------------------------
    async def open(self, model: Model, session_id: str | None = None, imported: ExportedState | None = None, *,
                   tenant: str = "", pinned: bool = False, resume: bool = False,
                   owner: object | None = None) -> tuple[Session, bool]:
        sid = check_id(session_id)
        ids = self._ids.get(tenant)
        handle = ids.get(sid) if ids is not None and sid is not None else None
        if resume and handle is None:
            raise NotFound(f"session {sid} does not exist (closed, expired or never opened)")
        if handle is not None and not resume:  # never a silent attach to a session someone else may be using
            raise AlreadyExists(f"session {sid} already exists: open it with `resume` to continue it, or pick "
                                "another id")
        if handle is not None:  # what acquire() does with a known id, without looking it up again
            return self._resume(handle, sid, tenant, model, pinned, imported, owner), True  # type: ignore[arg-type]
        return self.acquire(model, sid, imported, pinned=pinned, owner=owner, tenant=tenant), False

    async def end(self, session: Session) -> None:
        self.release(session)

    async def delete(self, session: Session | str, tenant: str = "") -> None:
        self.close(session, tenant)

    async def restart(self, session: Session) -> None:
        self.reset(session)

    async def info(self, session_id: str, tenant: str = "") -> SessionRecord:
        s = self.get(session_id, tenant)
        if s is None:
            raise NotFound(f"session {session_id} does not exist (closed, expired or never opened)")
        if s.busy:
            raise FailedPrecondition(f"session {session_id} is in use by a stream; "
                                     "use EXPORT_STATE / CLOSE inside that stream")
        return SessionRecord(s.id, s.model.name, s.model.version, s.position, self.export_state(s))

    def retire(self, model: Model) -> None:
        return None  # its sessions are its slab's rows: in use while any is left

    def in_use(self, model: Model) -> bool:
        no = self._slab_no.get(model)
        return no is not None and len(self._slabs[no]) > 0

    def forget(self, model: Model) -> None:
        no = self._slab_no.get(model)
        if no is not None and not self.in_use(model):
            del self._slab_no[model], self._slabs[no]

    def start(self, interval_s: float = ServeConfig.eviction_interval) -> None:
        if self._evictor is None:
            self._evictor = asyncio.get_running_loop().create_task(self.run_evictor(min(interval_s, self.ttl_s)))

    async def shutdown(self) -> None:
        if self._evictor is not None:
            self._evictor.cancel()
            await asyncio.gather(self._evictor, return_exceptions=True)
            self._evictor = None

    # -- internals -------------------------------------------------------------
    def _unpack(self, handle: int) -> tuple[Slab, int]:
        return self._slabs[handle >> _ROW_BITS], handle & ((1 << _ROW_BITS) - 1)

    def _check_resume(self, handle: int, sid: str, has: Model, model: Model, pinned: bool,
                      imported: ExportedState | None) -> None:
        if handle in self._held:
            self.stats.rejected_busy += 1
            raise session_busy(sid)
        if has.name != model.name:
            raise FailedPrecondition(f"session {sid} belongs to model {has.name}, not {model.name}")
        if pinned and has.version != model.version:
            raise FailedPrecondition(f"session {sid} runs on {has.name}/{has.version}; "
                                     f"the request pinned version {model.version}")
        if imported is not None:
            raise FailedPrecondition(f"session {sid} already exists; close it before importing state "
                                     "into it, or import under a new id")

    def _check_room(self, tenant: str) -> None:
        """RESOURCE_EXHAUSTED if a new session of ``tenant`` would pass a limit (expired ones swept first)."""
        per = self.max_per_tenant
        if self._count >= self.max_sessions or (per is not None and self.tenant_count(tenant) >= per):
            self.evict_expired()
        error = None
        if per is not None and self.tenant_count(tenant) >= per:
            error = limit_reached(self.tenant_count(tenant), per, tenant=True)
        elif self._count >= self.max_sessions:
            error = limit_reached(self._count, self.max_sessions, tenant=False)
        if error is not None:
            self.stats.rejected_full += 1
            raise error

    def _resume(self, handle: int, sid: str, tenant: str, model: Model, pinned: bool,
                imported: ExportedState | None, owner: object | None) -> Session:
        """Hold the existing session ``handle`` for ``owner``, if it may be resumed this way."""
        self._check_resume(handle, sid, self._unpack(handle)[0].model, model, pinned, imported)
        self.stats.resumed += 1
        return self._hold(handle, sid, tenant, owner)

    def _hold(self, handle: int, sid: str, tenant: str, owner: object | None) -> Session:
        slab, row = self._unpack(handle)
        s = Session(sid, tenant, slab, row, owner if owner is not None else object())
        self._held[handle] = s
        slab.touched[row] = self.clock()
        return s

    def _drop(self, tenant: str, sid: str, handle: int) -> None:
        del self._ids[tenant][sid]
        self._held.pop(handle, None)
        slab, row = self._unpack(handle)
        slab.free(row)
        self._count -= 1
