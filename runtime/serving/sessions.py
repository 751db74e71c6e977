"""Resumable stream sessions: hidden state that outlives a connection.

A :class:`Session` is one stream's state on one model version. The
:class:`SessionStore` keeps them by id so a client that reconnects with the
same id continues exactly where it was, bounds how many exist
(``max_sessions``), drops the ones idle longer than ``ttl_s``, and makes sure
only one stream drives a session at a time.

Lifecycle, as the server uses it::

    session = store.acquire(model, request_id, state_bytes, pinned=...)  # busy now
    try:
        y = await batcher.run(session, x)      # advances session.state/position
        ...                                    # store.reset / export_state / close
    finally:
        store.release(session)                 # idle again; TTL clock restarts

Threading: the store is used from one asyncio event loop thread only (the
server's). Its methods never await, so each call is atomic on that loop and
no lock is needed. Do not call it from worker threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.errors import FailedPrecondition, InvalidInput, NotFound, ResourceExhausted
from ..core.model import Model
from ..core.statecodec import ExportedState, decode_state, encode_state
from .config import ServeConfig

__all__ = ["MAX_SESSION_ID", "Session", "SessionInfo", "SessionStats", "SessionStore", "SessionsView"]

log = logging.getLogger("eddy.sessions")

MAX_SESSION_ID = 128  # characters; ids come from clients, so they are bounded


@dataclass(eq=False)
class Session:
    """One stream's state on one model version (pinned for the session's life)."""

    id: str
    model: Model
    state: dict[str, np.ndarray]  # name -> float32 [1, *shape]
    position: int  # samples consumed since creation or the last reset
    created: float  # store clock
    last_used: float  # store clock, updated on acquire/release/reset
    owner: object | None = None  # the holder's token while a stream drives it

    @property
    def busy(self) -> bool:
        return self.owner is not None

    def __repr__(self) -> str:
        return (f"<Session {self.id} {self.model.name}/{self.model.version} at {self.position}"
                f"{' busy' if self.busy else ''}>")


@dataclass(frozen=True)
class SessionInfo:
    """A read-only snapshot of one session (what :class:`SessionsView` hands out)."""

    id: str
    model: str  # served model name
    version: int
    position: int  # samples consumed since creation or the last reset
    busy: bool  # a stream holds it
    idle_s: float  # store-clock seconds since it was last touched


@dataclass
class SessionStats:
    """Monotonic counters for a metrics layer to read."""

    created: int = 0  # new sessions, zero state
    imported: int = 0  # new sessions from state bytes
    resumed: int = 0  # acquisitions of an existing session
    closed: int = 0
    evicted: int = 0  # idle longer than the TTL
    rejected_busy: int = 0  # acquire of a session held by another stream
    rejected_full: int = 0  # acquire refused at max_sessions


class SessionStore:
    """Sessions by id, with a TTL for idle ones and a cap on their number.

    ``clock`` is injectable (tests pass a fake one); ``on_evict(n)`` is called
    after each sweep that evicted ``n > 0`` sessions.
    """

    def __init__(self, ttl_s: float = ServeConfig.session_ttl, max_sessions: int = ServeConfig.max_sessions,
                 clock: Callable[[], float] = time.monotonic, on_evict: Callable[[int], None] | None = None) -> None:
        if ttl_s <= 0 or max_sessions < 1:
            raise ValueError(f"ttl_s must be > 0 and max_sessions >= 1, got {ttl_s}, {max_sessions}")
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.clock = clock
        self.on_evict = on_evict
        self.stats = SessionStats()
        # Ordered by last_used (every touch moves a session to the end), so an
        # eviction sweep stops at the first idle session that is still fresh.
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._busy = 0  # sessions held by a stream, kept in step by _hold/release/close (O(1) to read)

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def get(self, session_id: str) -> Session | None:
        """The session under ``session_id`` (held or not), without acquiring it."""
        return self._sessions.get(session_id)

    @property
    def busy_count(self) -> int:
        """Sessions currently held by a stream."""
        return self._busy

    def acquire(self, model: Model, session_id: str | None = None,
                state_bytes: bytes | ExportedState | None = None, *, pinned: bool = False,
                owner: object | None = None) -> Session:
        """Open or resume a session and mark it held by the caller.

        - ``session_id`` None or ``""``: a new session under a random id.
        - unknown id: a new session under that id (zero state, or ``state_bytes``).
        - known id: that session, on the model version it started with. Its
          model name must equal ``model.name``; when ``pinned`` (the request
          named a version) the versions must match too. ``state_bytes`` for a
          known id is refused (close it first).

        Raises :class:`FailedPrecondition` (busy, other model/version, bytes for
        another model), :class:`InvalidInput` (bad id, corrupted bytes) or
        :class:`ResourceExhausted` (``max_sessions`` live sessions, after
        evicting expired idle ones). A refusal changes no session.
        """
        session_id = _check_id(session_id)
        imported = decode_state(state_bytes) if isinstance(state_bytes, (bytes, bytearray, memoryview)) \
            else state_bytes
        if session_id is not None and (s := self._sessions.get(session_id)) is not None:
            self._check_resume(s, model, pinned, imported)
            self._hold(s, owner)
            self.stats.resumed += 1
            return s
        state = model.zero_state(1) if imported is None else imported.for_model(model)  # name -> [1, *shape]
        if len(self._sessions) >= self.max_sessions:
            self.evict_expired()
            if len(self._sessions) >= self.max_sessions:
                self.stats.rejected_full += 1
                raise ResourceExhausted(
                    f"session limit reached: {len(self._sessions)} live sessions (max {self.max_sessions}); "
                    "close finished sessions or retry after idle ones expire")
        while session_id is None or session_id in self._sessions:
            session_id = uuid.uuid4().hex
        now = self.clock()
        s = Session(session_id, model, state, imported.position if imported else 0, now, now)
        self._sessions[session_id] = s
        self._hold(s, owner)
        if imported is None:
            self.stats.created += 1
        else:
            self.stats.imported += 1
        return s

    def release(self, session: Session) -> None:
        """The holder is done with ``session`` for now: idle again, TTL restarts."""
        if session.owner is not None:
            self._busy -= 1
        session.owner = None
        if self._sessions.get(session.id) is session:
            self._touch(session)

    def close(self, session: Session | str) -> None:
        """Delete a session: the one the caller holds, or an idle one by id.

        Raises :class:`NotFound` for an unknown id and
        :class:`FailedPrecondition` for an id another stream holds.
        """
        sid = session.id if isinstance(session, Session) else session
        current = self._sessions.get(sid)
        if current is None or (isinstance(session, Session) and current is not session):
            raise NotFound(f"session {sid} does not exist (closed, expired or never opened)")
        if isinstance(session, str) and current.busy:
            raise FailedPrecondition(f"session {sid} is in use by another stream")
        del self._sessions[sid]
        if current.owner is not None:
            self._busy -= 1
        current.owner = None
        self.stats.closed += 1

    def reset(self, session: Session) -> None:
        """Back to zero state and position 0 (same id, same model version)."""
        session.state = session.model.zero_state(1)
        session.position = 0
        if self._sessions.get(session.id) is session:
            self._touch(session)

    def export_state(self, session: Session) -> bytes:
        """The session's state as portable bytes (see :mod:`eddy.runtime.core.statecodec`)."""
        return encode_state(session.model, session.position, session.state)

    def evict_expired(self) -> int:
        """Drop sessions idle longer than ``ttl_s`` (never held ones); returns how many."""
        now, victims = self.clock(), []
        for sid, s in self._sessions.items():  # oldest touch first
            if now - s.last_used <= self.ttl_s:
                break
            if not s.busy:
                victims.append(sid)
        for sid in victims:
            del self._sessions[sid]
        if victims:
            self.stats.evicted += len(victims)
            log.info("evicted %d idle session(s) (ttl %.0fs); %d live", len(victims), self.ttl_s, len(self))
            if self.on_evict is not None:
                self.on_evict(len(victims))
        return len(victims)

    def view(self) -> SessionsView:
        """A read-only view of this store (for tests, tools and metrics)."""
        return SessionsView(self)

    async def run_evictor(self, interval_s: float = ServeConfig.eviction_interval) -> None:
        """Sweep every ``interval_s`` until cancelled (start it as a task)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.evict_expired()
            except Exception:  # a failing metrics hook must not stop eviction
                log.exception("session eviction sweep failed")

    # -- internals ----------------------------------------------------------
    def _check_resume(self, s: Session, model: Model, pinned: bool, imported: ExportedState | None) -> None:
        if s.busy:
            self.stats.rejected_busy += 1
            raise FailedPrecondition(f"session {s.id} is in use by another stream")
        if s.model.name != model.name:
            raise FailedPrecondition(f"session {s.id} belongs to model {s.model.name}, not {model.name}")
        if pinned and s.model.version != model.version:
            raise FailedPrecondition(f"session {s.id} runs on {s.model.name}/{s.model.version}; "
                                     f"the request pinned version {model.version}")
        if imported is not None:
            raise FailedPrecondition(f"session {s.id} already exists; close it before importing state "
                                     "into it, or import under a new id")

    def _hold(self, s: Session, owner: object | None) -> None:
        if s.owner is None:
            self._busy += 1
        s.owner = owner if owner is not None else object()
        self._touch(s)

    def _touch(self, s: Session) -> None:
        s.last_used = self.clock()
        self._sessions.move_to_end(s.id)


class SessionsView:
    """Read-only access to a :class:`SessionStore`: counts and snapshots, never the live objects."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._store

    def ids(self) -> list[str]:
        """Session ids, least recently used first."""
        return list(self._store._sessions)

    @property
    def busy_count(self) -> int:
        """Sessions currently held by a stream."""
        return self._store.busy_count

    @property
    def stats(self) -> SessionStats:
        """A copy of the store's counters."""
        return dataclasses.replace(self._store.stats)

    def get(self, session_id: str) -> SessionInfo | None:
        """A snapshot of session ``session_id``, or None."""
        s = self._store.get(session_id)
        if s is None:
            return None
        return SessionInfo(s.id, s.model.name, s.model.version, s.position, s.busy,
                           self._store.clock() - s.last_used)


def _check_id(session_id: str | None) -> str | None:
    if session_id is None or session_id == "":
        return None
    if not isinstance(session_id, str):
        raise InvalidInput(f"session id must be a string, got {type(session_id).__name__}")
    if len(session_id) > MAX_SESSION_ID or not session_id.isprintable() or session_id.strip() != session_id:
        raise InvalidInput(f"session id must be 1-{MAX_SESSION_ID} printable characters without "
                           "leading/trailing spaces")
    return session_id
