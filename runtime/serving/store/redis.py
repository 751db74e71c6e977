"""The Redis/Valkey session store: sessions that survive a crash and move between replicas.

Durability contract (docs/guides/sessions.md, "Sessions that survive a crash"): a prediction
is answered only after the state that produced it is in the store. The
batcher calls :meth:`RedisStore.commit` once per batch, one atomic script for
every session of the batch (one round trip), then scatters the new state into
the slab and answers. If the store cannot be reached the whole batch gets
UNAVAILABLE and nothing changes in memory.

One writer per session: opening a session takes a lease (set-if-absent with
``lease_s`` expiry) that every write renews, and a sweep renews it (and the
record's TTL) every third of ``lease_s`` or ``ttl_s``, whichever is shorter,
while a stream holds the session. Writes are fenced (see
:mod:`.lua`), so a holder whose lease expired while it stalled cannot
overwrite a newer holder's state. A crashed replica's leases expire within
``lease_s``; until then a stream elsewhere gets FAILED_PRECONDITION.

No late writes: every write script carries a deadline in the store's clock,
``timeout_s`` after it is sent, and changes nothing if it runs later. So a
write this process answered UNAVAILABLE (no answer within ``timeout_s``)
either ran in time or never will; a retry of the same samples then is
stored once (a retry whose first attempt was stored is acknowledged without
being applied again, see :mod:`.lua`). That needs the writer's view of the
session as it was before the unanswered write: a stream that still holds
the session has it; for a session let go meanwhile (an OIP sequence lets go
after every request, a stream may end) this process remembers each write
whose answer it never got, and a resume here that finds exactly that write
stored resumes as before it, so the retried request is acknowledged (and any
other one is refused naming the stored position).

The store's clock is learnt from its ``TIME`` against this process's
monotonic clock (:meth:`RedisStore.sync_clock`, at :meth:`check` and every
renewal sweep), and never read ahead of its true value, so a deadline is
never later than the moment this process gives up.

In this process only held sessions live in memory (slab rows); an idle
session is its record in the store, which expires after ``ttl_s`` (the TTL
maps to the store's expiry). ``max_sessions`` and ``max_per_tenant`` bound
the live sessions in the store (held or idle, every replica's), as the
memory store bounds its own: the creating script counts them atomically
(see :mod:`.lua`), so replicas sharing the store share the limits. Opening
a known id without ``resume`` is ALREADY_EXISTS, held or not.

Needs the ``redis`` package (``pip install 'eddy-rnn[redis]'``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ...core.errors import AlreadyExists, EddyError, FailedPrecondition, NotFound, ResourceExhausted, Unavailable, session_busy
from ...core.model import Model
from ...core.statecodec import ExportedState, encode_state
from ..config import ServeConfig
from ..sessions import Session, SessionInfo, SessionRecord, SessionStats, SessionStore, check_id, limit_reached
from ..slab import Slab
from . import lua

__all__ = ["LIVE", "RedisStore", "key_of"]

log = logging.getLogger("eddy.store")

T = TypeVar("T")
KEY_PREFIX = "eddy:s"  # record keys: eddy:s:<len(tenant)>:<tenant>:<session id>; leases add ":lease"
LIVE = "eddy:live"  # sorted set of every live session's record key; per tenant: eddy:live:<len(tenant)>:<tenant>


@dataclass(frozen=True)
class _Unanswered:
    """A write whose answer never came (it may be stored): the session before and after it."""

    seq: int  # the write count it was admitted at
    before: tuple[int, bytes]  # position, state bytes
    after: tuple[int, bytes]
    at: float  # time.monotonic() when it was given up on


class _Late(Unavailable):
    """A write script ran after its deadline: nothing was written."""


def key_of(tenant: str, session_id: str) -> str:
    """The record key of a session (the length prefix keeps tenant and id apart whatever they contain)."""
    return f"{KEY_PREFIX}:{len(tenant)}:{tenant}:{session_id}"


def _keys(tenant: str, session_id: str) -> list[str]:
    """KEYS of the OPEN and DELETE scripts: record, lease, live set, the tenant's live set."""
    key = key_of(tenant, session_id)
    return [key, key + ":lease", LIVE, f"{LIVE}:{len(tenant)}:{tenant}"]


class RedisStore(SessionStore):
    """Sessions in a Redis/Valkey server at ``url`` (``redis://HOST:PORT/DB``, ``unix:///path``).

    ``models(name, version)`` returns the served model of a stored session's
    version (raises NotFound if it is no longer served).
    """

    durable = True

    def __init__(self, url: str, models: Callable[[str, int], Model], *, ttl_s: float = ServeConfig.session_ttl,
                 max_sessions: int = ServeConfig.max_sessions,
                 max_per_tenant: int | None = ServeConfig.max_sessions_per_tenant, lease_s: float = ServeConfig.lease_s,
                 timeout_s: float = ServeConfig.store_timeout) -> None:
        try:
            import redis.asyncio as aredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError:
            raise Unavailable("--session-store needs the redis package: pip install 'eddy-rnn[redis]'") from None
        if ttl_s <= 0 or max_sessions < 1 or lease_s <= 0 or timeout_s <= 0 or (max_per_tenant or 1) < 1:
            raise ValueError(f"ttl_s, lease_s and timeout_s must be > 0, max_sessions and max_per_tenant >= 1, "
                             f"got {ttl_s}, {lease_s}, {timeout_s}, {max_sessions}, {max_per_tenant}")
        self.url = url
        self.ttl_s = ttl_s
        self.ttl_ms = str(int(ttl_s * 1000))
        self.lease_s = lease_s
        self.lease_ms = str(int(lease_s * 1000))
        self.timeout_s = timeout_s
        self._offset_ms: int | None = None  # the store's clock (ms) minus this process's monotonic clock (ms)
        self.max_sessions = max_sessions
        self.max_per_tenant = max_per_tenant
        self.stats = SessionStats()
        self._models = models
        # No client-side retries: a script that timed out may have run; the caller decides (UNAVAILABLE).
        self._redis = aredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                            retry=Retry(NoBackoff(), 0), decode_responses=False)
        self._errors: tuple[type[BaseException], ...] = (aredis.ConnectionError, aredis.TimeoutError, OSError)
        self._response_error: type[BaseException] = aredis.ResponseError
        self._scripts = {name: self._redis.register_script(getattr(lua, name))
                         for name in ("OPEN", "COMMIT", "END", "DELETE", "INFO", "RENEW")}
        self._slabs: dict[Model, Slab] = {}  # held sessions' rows, per model version
        self._kept_until: dict[Model, float] = {}  # removed versions: monotonic time their idle sessions may expire by
        self._unanswered: dict[tuple[str, str], _Unanswered] = {}  # (tenant, id) -> its last write, if unanswered
        self._held: dict[tuple[str, str], Session] = {}
        self._renewer: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._held)

    @property
    def busy_count(self) -> int:
        return len(self._held)

    def snapshot(self, session_id: str, tenant: str = "") -> SessionInfo | None:
        s = self._held.get((tenant, session_id))
        return None if s is None else SessionInfo(s.id, s.model.name, s.model.version, s.position, True, 0.0)

    def get(self, session_id: str, tenant: str = "") -> Session | None:
        """The session if a stream of this process holds it (idle sessions live in the store only)."""
        return self._held.get((tenant, session_id))

    async def check(self) -> None:
        await self.sync_clock()

    async def sync_clock(self) -> None:
        """Learn the store's clock: its ``TIME`` minus this process's monotonic clock, as of the answer.

        ``TIME`` ran before the answer arrived, so the offset is never over-estimated (a write's deadline is
        never later than the moment this process stops waiting); an answer slower than half the timeout is
        not used, unless there is nothing better yet.
        """
        sent = time.monotonic()
        seconds, micros = await self._call(self._redis.time())
        got = time.monotonic()
        if self._offset_ms is None or got - sent < self.timeout_s / 2:
            self._offset_ms = seconds * 1000 + micros // 1000 - math.ceil(got * 1000)

    # -- the SessionStore interface ----------------------------------------------
    async def open(self, model: Model, session_id: str | None = None, imported: ExportedState | None = None, *,
                   tenant: str = "", pinned: bool = False, resume: bool = False,
                   owner: object | None = None) -> tuple[Session, bool]:
        sid = check_id(session_id)
        if sid is not None and (tenant, sid) in self._held:  # known here: no round trip
            if not resume:
                raise self._refusal("EXISTS", sid, model, [])
            self.stats.rejected_busy += 1
            raise session_busy(sid)
        state = None if imported is None else imported.for_model(model)  # name -> [1, *shape], checked
        slab = self._slab(model)
        row = slab.alloc(state, imported.position if imported else 0, 0.0)
        initial = slab.row_to_bytes(row)
        # a named id without resume must not exist yet ("import" mode): ALREADY_EXISTS, never a silent attach
        mode = "resume" if resume else "fresh" if sid is None else "import"
        token, per = uuid.uuid4().hex, "" if self.max_per_tenant is None else self.max_per_tenant
        try:
            while True:
                reply = await self._write("OPEN", _keys(tenant, sid or (sid := uuid.uuid4().hex)),
                                          [token, self.lease_ms, self.ttl_ms, model.name,
                                           str(model.version) if pinned else "", mode, model.version,
                                           int(slab.position[row]), initial, self.max_sessions, per])
                if reply[0] != b"EXISTS" or mode != "fresh":
                    break
                sid = None  # a random id that is taken: draw another
        except BaseException:
            slab.free(row)
            raise
        verdict = reply[0].decode()
        if verdict != "CREATED":
            slab.free(row)
        if verdict != "CREATED" and verdict != "RESUMED":
            raise self._refusal(verdict, sid, model, reply)
        session = Session(sid, tenant, slab, row, owner if owner is not None else object())
        session.token = token
        if verdict == "RESUMED":
            session = await self._resumed(session, reply, token)
            self.stats.resumed += 1
        else:
            self.stats.imported += imported is not None
            self.stats.created += imported is None
        self._held[(tenant, sid)] = session
        return session, verdict == "RESUMED"

    async def end(self, session: Session) -> None:
        if self._held.get((session.tenant, session.id)) is not session:
            return
        del self._held[(session.tenant, session.id)]
        if session.model in self._kept_until:  # a removed version: resumable until its record expires
            self._kept_until[session.model] = time.monotonic() + self.ttl_s
        session.slab.free(session.row)
        session.owner = None
        key = key_of(session.tenant, session.id)
        try:
            await self._write("END", [key, key + ":lease"], [session.token, self.ttl_ms])
        except Unavailable as e:  # the lease expires by itself within lease_s
            log.warning("could not release the lease of session %s: %s", session.id, e.message)

    async def delete(self, session: Session | str, tenant: str = "") -> None:
        sid, token = (session.id, session.token) if isinstance(session, Session) else (session, "")
        tenant = session.tenant if isinstance(session, Session) else tenant
        held = self._held.get((tenant, sid))
        if isinstance(session, Session) and held is not session:
            raise NotFound(f"session {sid} does not exist (closed, expired or never opened)")
        if isinstance(session, str) and held is not None:
            raise FailedPrecondition(f"session {sid} is in use by another stream")
        verdict = (await self._write("DELETE", _keys(tenant, sid), [token])).decode()
        if verdict == "BUSY":
            raise FailedPrecondition(f"session {sid} is in use by another stream")
        if held is not None:
            del self._held[(tenant, sid)]
            held.slab.free(held.row)
            held.owner = None
        self._unanswered.pop((tenant, sid), None)
        if verdict == "NOTFOUND":
            raise NotFound(f"session {sid} does not exist (closed, expired or never opened)")
        self.stats.closed += 1

    async def restart(self, session: Session) -> None:
        errors = await self.commit([session], session.slab.fresh(1), [-session.position])
        if errors[0] is not None:
            raise errors[0]
        session.slab.write(session.row, None, 0, 0.0)

    async def info(self, session_id: str, tenant: str = "") -> SessionRecord:
        sid = check_id(session_id)
        if sid is None:
            raise NotFound("no session_id given")
        if (tenant, sid) in self._held:
            raise FailedPrecondition(f"session {sid} is in use by a stream; use EXPORT_STATE / CLOSE inside that stream")
        key = key_of(tenant, sid)
        reply = await self._call(self._scripts["INFO"](keys=[key, key + ":lease"]))
        verdict = reply[0].decode()
        if verdict == "BUSY":
            raise FailedPrecondition(f"session {sid} is in use by a stream (here or on another replica)")
        if verdict == "NOTFOUND":
            raise NotFound(f"session {sid} does not exist (closed, expired or never opened)")
        model = self._models(reply[1].decode(), int(reply[2]))
        position, slab = int(reply[3]), self._slab(model)
        row = slab.alloc()
        try:
            slab.load_bytes(row, reply[4])
            return SessionRecord(sid, model.name, model.version, position, encode_state(model, position, slab.view(row)))
        except ValueError as e:
            raise FailedPrecondition(f"session {sid}: {e}") from None
        finally:
            slab.free(row)

    async def commit(self, sessions: Sequence[Session], new: dict[str, np.ndarray],
                     advance: Sequence[int]) -> list[EddyError | None]:
        blobs = sessions[0].slab.batch_to_bytes(new)
        head = struct.Struct(lua.RECORD)
        packed = []
        for s, blob, n in zip(sessions, blobs, advance):
            key = key_of(s.tenant, s.id).encode()
            packed += (head.pack(len(key), s.token.encode(), s.seq, s.position + n), key, blob)
        args = [self.ttl_ms, self.lease_ms, len(sessions), len(blobs[0]), b"".join(packed)]
        try:
            written = await self._write("COMMIT", [], args)  # one round trip for the batch
        except _Late:
            raise  # it ran, too late to count: nothing was written
        except Unavailable:  # it may have been written: remember how to tell a retry of it
            self._remember(sessions, blobs, advance)
            raise
        errors: list[EddyError | None] = []
        for s, verdict in zip(sessions, written):
            self._unanswered.pop((s.tenant, s.id), None)  # settled, whatever the verdict
            if verdict == lua.WRITTEN:
                s.seq += 1
                errors.append(None)
            elif verdict == lua.TAKEN:
                errors.append(FailedPrecondition(
                    f"session {s.id} was taken over by another stream or replica (this server's lease expired); "
                    "reopen the stream to continue from the stored state"))
            elif verdict == lua.GONE:
                errors.append(FailedPrecondition(f"session {s.id} is no longer in the session store (expired or "
                                                 "deleted); open a new session"))
            else:  # an earlier write was stored though its answer never came back; this one is not the same
                errors.append(FailedPrecondition(
                    f"session {s.id} is at position {verdict} in the session store, not {s.position}: a message "
                    f"answered UNAVAILABLE was stored after all, and this one differs from it (resend that "
                    f"message, or reopen the stream with resume to continue from position {verdict})"))
        return errors

    def retire(self, model: Model) -> None:
        """Idle sessions on ``model`` live in the store: resumable here until the TTL after the last one ended."""
        self._kept_until[model] = max(self._kept_until.get(model, 0.0), time.monotonic() + self.ttl_s)

    def in_use(self, model: Model) -> bool:
        slab = self._slabs.get(model)
        return (slab is not None and len(slab) > 0) or time.monotonic() < self._kept_until.get(model, 0.0)

    def forget(self, model: Model) -> None:
        if not self.in_use(model):
            self._slabs.pop(model, None)
            self._kept_until.pop(model, None)

    def start(self, interval_s: float = ServeConfig.eviction_interval) -> None:
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def shutdown(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
            self._renewer = None
        for session in list(self._held.values()):
            await self.end(session)
        await self._redis.aclose()

    # -- internals -------------------------------------------------------------
    def _slab(self, model: Model) -> Slab:
        slab = self._slabs.get(model)
        if slab is None:
            slab = self._slabs[model] = Slab(model)
        return slab

    async def _resumed(self, session: Session, reply: list[bytes], token: str) -> Session:
        sid, tenant = session.id, session.tenant
        name, version, position, seq, state = reply[1].decode(), int(reply[2]), int(reply[3]), reply[4], reply[5]
        try:
            model = self._models(name, version)
            slab = self._slab(model)
            row = slab.alloc(None, position, 0.0)
            try:
                slab.load_bytes(row, state)
            except ValueError as e:
                slab.free(row)
                raise FailedPrecondition(f"session {sid}: {e}") from None
        except EddyError:
            key = key_of(tenant, sid)
            await self._write("END", [key, key + ":lease"], [token, self.ttl_ms])
            raise
        resumed = Session(sid, tenant, slab, row, session.owner)
        resumed.token, resumed.seq = token, int(seq)
        last = self._unanswered.pop((tenant, sid), None)
        if last is not None and (int(seq), position, state) == (last.seq + 1, *last.after):
            # stored, never answered: resume as before it, so that its retry is acknowledged, not stored twice
            slab.load_bytes(row, last.before[1])
            resumed.position, resumed.seq = last.before[0], last.seq
            log.info("session %s: its last write (to position %d) was stored but never answered; resumed before it",
                     sid, position)
        return resumed

    def _remember(self, sessions: Sequence[Session], blobs: list[bytes], advance: Sequence[int]) -> None:
        """Note writes whose answer never came (kept for the TTL at most: the record expires by then)."""
        now = time.monotonic()
        while self._unanswered:
            key, oldest = next(iter(self._unanswered.items()))
            if now - oldest.at < self.ttl_s:
                break
            del self._unanswered[key]
        for s, blob, n in zip(sessions, blobs, advance):
            self._unanswered.pop((s.tenant, s.id), None)  # re-inserted last: the dict stays in time order
            self._unanswered[(s.tenant, s.id)] = _Unanswered(
                s.seq, (s.position, s.slab.row_to_bytes(s.row)), (s.position + n, blob), now)

    def _refusal(self, verdict: str, sid: str, model: Model, reply: list[bytes]) -> EddyError:
        if verdict == "BUSY":
            self.stats.rejected_busy += 1
            return session_busy(sid, self.lease_s)
        if verdict == "NOTFOUND":
            return NotFound(f"session {sid} does not exist (closed, expired or never opened)")
        if verdict == "EXISTS":
            return AlreadyExists(f"session {sid} already exists: open it with `resume` to continue it, or pick "
                                 "another id")
        if verdict in ("FULL", "TENANT_FULL"):
            self.stats.rejected_full += 1
            tenant = verdict == "TENANT_FULL"
            return limit_reached(int(reply[1]), (self.max_per_tenant or 0) if tenant else self.max_sessions,
                                 tenant=tenant)
        has = f"{reply[1].decode()}/{reply[2].decode()}"
        if verdict == "MODEL":
            return FailedPrecondition(f"session {sid} belongs to model {reply[1].decode()}, not {model.name}")
        return FailedPrecondition(f"session {sid} runs on {has}; the request pinned version {model.version}")

    async def _write(self, script: str, keys: list[str], args: list[object]) -> Any:
        """Run a write script with its deadline (the last argument): UNAVAILABLE if it ran after it, unchanged."""
        if self._offset_ms is None:
            await self.sync_clock()
        deadline = int(time.monotonic() * 1000) + (self._offset_ms or 0) + int(self.timeout_s * 1000)  # store ms
        reply = await self._call(self._scripts[script](keys=keys, args=[*args, deadline]))
        if reply == lua.LATE:
            raise _Late(f"session store {self._where()} ran a write after this server's {self.timeout_s:g} s "
                        "timeout; nothing was written: retry")
        return reply

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except self._errors as e:
            raise Unavailable(f"session store {self._where()} unavailable: {e}") from None
        except self._response_error as e:
            if str(e).startswith("OOM"):
                raise ResourceExhausted(f"session store {self._where()} is out of memory: {e}") from None
            raise

    def _where(self) -> str:
        return re.sub(r"//[^@/]*@", "//", self.url)  # never print a password

    async def renew(self) -> list[str]:
        """Extend the leases (and TTLs) of every session held here, in one round trip; returns the ids of
        those whose lease another holder has taken (their next write will be refused)."""
        held = list(self._held.values())
        if not held:
            return []
        packed = b"".join(struct.pack("<H32s", len(k := key_of(s.tenant, s.id).encode()), s.token.encode()) + k
                          for s in held)
        kept = await self._write("RENEW", [], [self.lease_ms, self.ttl_ms, packed])
        return [s.id for s, ok in zip(held, kept) if not ok and self._held.get((s.tenant, s.id)) is s]

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(min(self.lease_s, self.ttl_s) / 3)  # a held record outlives a short TTL too
            try:
                await self.sync_clock()  # follows the store's clock (and a fail-over to another one)
                lost = await self.renew()
            except Exception as e:  # the store is down: writes will say so; keep trying
                log.warning("lease renewal failed: %s", e)
                continue
            if lost:
                log.warning("lost the lease of %d session(s): %s", len(lost), ", ".join(lost[:5]))
