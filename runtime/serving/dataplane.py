"""What the serving RPCs do, without a wire: models, sessions, batching, limits.

:class:`DataPlane` ties the :class:`~eddy.runtime.serving.repository.ModelRepository`,
the :class:`~eddy.runtime.serving.sessions.SessionStore` and the
:class:`~eddy.runtime.serving.batcher.Batcher` together under one
:class:`~eddy.runtime.serving.config.ServeConfig`. It takes plain values
(model name, version, session id, state bytes, float32 arrays) and returns
plain values and dataclasses; the gRPC layer (``eddy.runtime.grpc``) converts
protobuf at the edge, so another protocol is one more thin layer over the
same plane. It imports no grpc, protobuf or metrics library (a test checks).
Every refusal is an :class:`~eddy.runtime.core.errors.EddyError` carrying its
status code.

Use it from one asyncio event loop (the server's): the session store and the
batcher are single-loop structures.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter_ns

import numpy as np

from ..core.errors import FailedPrecondition, InvalidInput, NotFound, ResourceExhausted
from ..core.live import LiveFigures, session_figures
from ..core.model import Forecast, Model
from ..core.monitor import MONITOR
from ..core.samples import nonfinite_rows, unanswerable
from ..core.statecodec import MAX_POSITION, ExportedState, StateKeys, decode_state, encode_state, reseal
from .batcher import OFFLOAD_VALUES, Batcher
from .config import ServeConfig
from .fleet import Fleet
from .lane import Lane
from .metrics import Metrics
from .repository import ModelRepository
from .sessions import Session, SessionStore, SessionsView, check_id
from .stats import Statistics
from .store.memory import MemoryStore

__all__ = ["FRAMING_BYTES", "DataPlane", "Fleet", "Prediction", "SessionState"]

# Room kept for a wire's framing around an answer's float payload (field tags, lengths, shape, offset):
# eddy.v1 needs under 48 bytes for a predictions message. An answer is refused when payload + this
# exceeds the message limit, so it is never computed (and a session never advanced) in vain.
FRAMING_BYTES = 64

_INLINE_STATES = 64  # a Predict returning more state blobs than this encodes them in the lane, not on the loop


@dataclass(frozen=True)
class SessionState:
    """An idle session's identity, position, exported state bytes and live accuracy."""

    session_id: str
    model: str
    version: int
    position: int
    state: bytes
    live: LiveFigures | None = None  # from its monitor row


@dataclass(frozen=True)
class Prediction:
    """The answer to :meth:`DataPlane.predict`: raw ``y[B, T, O]`` and one final-state blob per sequence."""

    model: str
    version: int
    y: np.ndarray  # [B, T, O] float32, raw units
    states: list[bytes]


class DataPlane:
    """Sessions and predictions over one repository. ``start()`` in the loop, ``await close()`` at the end."""

    def __init__(self, repository: ModelRepository, config: ServeConfig | None = None,
                 metrics: Metrics | None = None, *, state_keys: StateKeys | None = None) -> None:
        self.repository = repository
        self.state_keys = state_keys  # sign/verify state bytes; None: this process's random key
        self.config = c = config or ServeConfig()
        self.metrics = metrics or Metrics()  # no-op unless the server enabled metrics
        self._sessions = self._make_store()
        self.stats = Statistics()  # per model version, always kept (the OIP's ModelStatistics)
        self.batcher = Batcher(c.max_batch, c.max_delay_us, c.batching, on_batch=self.metrics.batch,
                               commit=self._sessions.commit if self._sessions.durable else None, stats=self.stats)
        self.lane = Lane()  # large messages and Predicts: their own thread, never in the batcher's way
        self.metrics.track_sessions(lambda: len(self._sessions))
        self.metrics.track_live(self._live_figures)
        self._samples: dict[str, Callable[[int], None]] = {}  # model name -> samples counter
        self._blob_sizes: weakref.WeakKeyDictionary[Model, int] = weakref.WeakKeyDictionary()  # state blob bound

    @property
    def sessions(self) -> SessionsView:
        """A read-only view of the live sessions (counts and snapshots)."""
        return SessionsView(self._sessions)

    @property
    def durable(self) -> bool:
        """True with a shared session store: answers are written there first."""
        return self._sessions.durable

    def start(self) -> None:
        """Start the store's background work (idle-session sweeps, lease renewal) in the running loop."""
        self._sessions.start(min(self.config.eviction_interval, self.config.session_ttl))

    async def check(self) -> None:
        """Raise :class:`~eddy.runtime.core.errors.Unavailable` if the session store cannot be reached."""
        await self._sessions.check()

    async def close(self) -> None:
        """Stop the store's background work (letting go of held leases) and the batcher's worker thread."""
        await self._sessions.shutdown()
        self.batcher.close()
        self.lane.close()

    def evict_expired(self) -> int:
        """Drop sessions idle longer than the TTL now (the sweeper does it periodically); returns how many.

        With a shared store the store itself expires them: always 0 here.
        """
        return self._sessions.evict_expired()

    # -- models -------------------------------------------------------------
    def models(self) -> dict[str, list[int]]:
        """``{name: [versions, ascending]}`` for every served model."""
        return self.repository.index()

    def model(self, name: str, version: str | int | None = None) -> Model:
        """The served model ``name`` at ``version`` (latest if omitted or empty)."""
        return self.repository.get(name, version)

    def versions(self, name: str) -> list[int]:
        """The versions served under ``name``, ascending."""
        return self.repository.versions(name)

    async def reload(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """Rescan the repository (loading off the loop); returns ``(added, removed)`` as ``(name, version)``.

        A removed version takes no new sessions; the sessions on it keep running and stay resumable until
        they are closed or expire, then it is unloaded (:meth:`free_unused`).
        """
        added, removed = await asyncio.to_thread(self.repository.refresh)
        for model in self.repository.retired():
            if (model.name, model.version) in removed:
                self._sessions.retire(model)
        self.free_unused()
        return added, removed

    def free_unused(self) -> list[tuple[str, int]]:
        """Unload the removed versions no session can use any more (they and their onnxruntime sessions are
        freed); returns them as ``(name, version)``. Runs after every reload and whenever a session ends."""
        freed = []
        for model in self.repository.retired():  # usually none
            if not self._sessions.in_use(model):
                self._sessions.forget(model)
                self.repository.forget(model)
                freed.append((model.name, model.version))
        return freed

    # -- sessions -----------------------------------------------------------
    async def open_session(self, model: str | Model, version: str | int | None = None, session_id: str | None = None,
                           state: bytes | None = None, *, resume: bool = False, owner: object | None = None,
                           tenant: str = "") -> tuple[Session, bool]:
        """Create, import or resume a session; returns it (held by ``owner``) and whether it existed.

        ``model``: the served name, or the :class:`Model` :meth:`model` resolved from it and ``version``.
        Version: a pinned one must match a resumed session's; unpinned, a
        resumed session keeps its own, imported bytes use theirs, a new
        session gets the latest. ``tenant`` namespaces session ids.
        """
        sid, pinned = session_id or "", version not in (None, "")
        if resume and not sid:
            raise InvalidInput("`resume` needs a `session_id`")
        name = model if isinstance(model, str) else model.name
        imported = self.decode_state(state, tenant) if state else None
        if imported is not None and not pinned:
            latest = self.repository.get(name)
            if imported.model != latest.name:
                raise FailedPrecondition(f"state bytes are for model {imported.model}/{imported.version}, "
                                         f"not {name}")
            version = imported.version
        resolved = model if isinstance(model, Model) and imported is None else self.repository.get(name, version)
        return await self._sessions.open(resolved, sid or None, imported, tenant=tenant, pinned=pinned,
                                         resume=resume, owner=owner)

    async def release(self, session: Session) -> None:
        """The stream driving ``session`` ended: keep it resumable (and let go of its lease)."""
        await self._sessions.end(session)
        self.free_unused()

    async def reset(self, session: Session) -> None:
        """Back to zero state and position 0 (same id, same model version); stored before it returns."""
        await self._sessions.restart(session)

    def export_state(self, session: Session, tenant: str = "") -> bytes:
        """The session's state as signed portable bytes, bound to ``tenant``."""
        return encode_state(session.model, session.position, session.state, keys=self.state_keys, tenant=tenant)

    def decode_state(self, data: bytes, tenant: str = "") -> ExportedState:
        """Verify and parse state bytes sent by ``tenant`` (see :mod:`eddy.runtime.core.statecodec` for errors)."""
        return decode_state(data, keys=self.state_keys, tenant=tenant)

    async def close_session(self, session: Session) -> None:
        """Delete the session the caller holds."""
        await self._sessions.delete(session)
        self.free_unused()

    async def session_state(self, session_id: str, tenant: str = "") -> SessionState:
        """An idle session's position and exported state (signed for ``tenant``)."""
        if not session_id:
            raise InvalidInput("no session_id given")
        check_id(session_id)  # a malformed id is INVALID_ARGUMENT here too, not an unknown (NOT_FOUND) one
        r = await self._sessions.info(session_id, tenant)  # another tenant's id is simply not there
        model = self.repository.session_model(r.model, r.version)
        monitor = decode_state(r.state).for_model(model).get(MONITOR)  # the store's own bytes (this process's key)
        live = session_figures(model.monitor, monitor[0], model.live.reference) if monitor is not None else None
        return SessionState(r.id, r.model, r.version, r.position, reseal(r.state, keys=self.state_keys, tenant=tenant),
                            live)

    async def live(self, model: str, version: str | int | None = None, session_id: str = "",
                   tenant: str = "") -> tuple[Model, LiveFigures]:
        """Live accuracy: ``model``'s (at ``version``, latest if empty) pooled over its sessions in this process,
        or session ``session_id``'s (idle, or held by a stream here); with the model version it is of.

        NOT_FOUND for an unknown model, version or session (or one of another model); FAILED_PRECONDITION for a
        session a stream on another replica holds.
        """
        if not session_id:
            served = self.repository.get(model, version)
            return served, served.live.figures()
        held = self._sessions.get(session_id, tenant)
        if held is not None and held.busy:  # a stream here drives it: its row, read as it stands
            served = held.model
            row = held.slab.state[MONITOR][held.row] if MONITOR in held.slab.state else served.monitor.fresh(1)[0]
            figures = session_figures(served.monitor, row, served.live.reference)
        else:  # idle: from the store (NOT_FOUND, or FAILED_PRECONDITION while another replica holds it)
            state = await self.session_state(session_id, tenant)
            served = self.repository.session_model(state.model, state.version)
            figures = state.live or session_figures(served.monitor, served.monitor.fresh(1)[0], served.live.reference)
        if served.name != model:
            raise NotFound(f"session {session_id} does not exist for model {model} (it runs {served.name})")
        return served, figures

    async def delete_session(self, session_id: str, tenant: str = "") -> SessionState:
        """Delete an idle session; returns its final state."""
        final = await self.session_state(session_id, tenant)
        await self._sessions.delete(session_id, tenant)
        self.free_unused()
        return final

    # -- predictions --------------------------------------------------------
    def check_samples(self, n: int, *, per_session: bool = False) -> None:
        """RESOURCE_EXHAUSTED past ``max_samples_per_message`` (call it before decoding ``n`` samples).

        ``per_session``: ``n`` is what a fleet message carries for each of its sessions.
        """
        limit = self.config.max_samples_per_message
        if n > limit:
            each = " for each session" if per_session else ""
            raise ResourceExhausted(f"message holds {n} samples{each}; the limit is {limit} per message "
                                    f"{'and session ' if per_session else ''}(split it into several messages)")

    def response_limit(self, client_limit: int | None = None) -> int:
        """Bytes an answer may take: the server's ``max_message_bytes``, or less if the client said so."""
        limit = self.config.max_message_bytes
        return min(limit, client_limit) if client_limit else limit

    def check_answer(self, model: Model, n: int, client_limit: int | None = None, *, extra: int = 0,
                     levels: int = 0) -> None:
        """RESOURCE_EXHAUSTED if the answer to ``n`` samples could not be delivered (checked before any step).

        ``extra``: bytes the answer carries besides the outputs (a fleet's per-session offsets); ``levels``:
        intervals it carries (a lower and an upper bound per output each, and their framing).
        """
        limit = self.response_limit(client_limit)
        per_sample = model.n_targets * 4 * (1 + 2 * levels)  # float32 outputs, then lower and upper per level
        framing = FRAMING_BYTES * (1 + levels) + extra
        size = n * per_sample + framing
        if size > limit:
            most = max(0, (limit - framing) // per_sample)
            raise ResourceExhausted(f"the answer to {n} samples would take {size} bytes, over the {limit}-byte "
                                    f"message limit; send at most {most} samples per message")

    async def push(self, session: Session, x: np.ndarray, *, client_limit: int | None = None,
                   alone: bool | None = None) -> np.ndarray:
        """Advance ``session`` by validated raw samples ``x[n, F]``; returns raw ``y[n, O]``.

        :meth:`forecast` is the same step answered with intervals.
        """
        answer = await self.advance(session, x, client_limit=client_limit, alone=alone)
        return answer[:, :session.model.n_targets]

    async def forecast(self, session: Session, x: np.ndarray, index: tuple[int, ...], *,
                       client_limit: int | None = None, alone: bool | None = None) -> Forecast:
        """:meth:`push`, answered with the intervals of the calibrated levels at ``index``
        (:meth:`Model._interval_index <eddy.runtime.core.model.Model._interval_index>`, checked before anything runs)."""
        answer = await self.advance(session, x, client_limit=client_limit, alone=alone, levels=len(index))
        return session.model._forecast(answer, index)

    async def advance(self, session: Session, x: np.ndarray, *, client_limit: int | None = None,
                      alone: bool | None = None, levels: int = 0) -> np.ndarray:
        """The step under :meth:`push` and :meth:`forecast`: returns the answer ``[n, O * (1 + 2L)]`` (raw
        predictions ``[:, :O]``, then each calibrated level's lower and upper bounds).

        An answer larger than :meth:`response_limit` is refused before the
        step runs, so the session never advances past an answer the caller
        cannot receive. ``alone``: whether no other session is active, so
        there is no batch to wait for. None: judged by held sessions (one
        stream holds its session throughout); protocols whose requests hold a
        session only while they run (OIP sequences) pass their own judgement.
        A large chunk runs in the :class:`~eddy.runtime.serving.lane.Lane`
        (same computation, its own thread) so the batcher keeps answering the
        other streams meanwhile.
        """
        stats, t0 = self.stats.of(session.model), perf_counter_ns()
        try:
            self.check_answer(session.model, len(x), client_limit, levels=levels)
            if session.position + len(x) > MAX_POSITION:  # positions are bounded (state bytes carry them)
                raise FailedPrecondition(f"session {session.id} would pass position {MAX_POSITION}; RESET it or "
                                         "start a new session")
            if len(x) > 1 and x.size > OFFLOAD_VALUES:
                y = await self.lane.advance(session, x, self.batcher.commit, stats, bounds=True)
            else:
                if alone is None:
                    alone = self._sessions.busy_count <= 1  # 1 stream: no batch to wait for
                y = await self.batcher.run(session, x, alone=alone, bounds=True)
        except BaseException:
            stats.finished(False, perf_counter_ns() - t0)
            raise
        stats.finished(True, perf_counter_ns() - t0)
        self._count(session.model.name, len(x))
        return y

    def open_fleet(self, model: str, version: str | int | None = None, *, tenant: str = "",
                   client_limit: int | None = None, intervals: tuple[float, ...] = ()) -> Fleet:
        """A :class:`~eddy.runtime.serving.fleet.Fleet` on ``model`` at ``version`` (latest if omitted or empty):
        many sessions per message; ``await fleet.release()`` when its stream ends. ``intervals``: the calibrated
        levels its answers carry (checked here: FAILED_PRECONDITION without a calibration, INVALID_ARGUMENT for
        another level)."""
        served = self.repository.get(model, version)
        index = served._interval_index(intervals) if intervals else ()
        return Fleet(self, served, name=model, tenant=tenant, client_limit=client_limit, intervals=index)

    def record_samples(self, model: str, n: int) -> None:
        """Count ``n`` samples predicted by ``model`` (the samples metric)."""
        self._count(model, n)

    async def predict(self, model: Model, x: np.ndarray, states: Sequence[bytes] = (), *,
                      client_limit: int | None = None, tenant: str = "") -> Prediction:
        """Whole sequences, validated raw ``x[B, T, F]``, from zero or given state; nothing is kept.

        RESOURCE_EXHAUSTED, before running, if outputs and state blobs would
        exceed :meth:`response_limit`. Large work (and the encoding of many
        state blobs) runs in the lane, off the event loop.
        """
        if x.ndim != 3 or x.shape[-1] != model.n_features:
            raise InvalidInput(f"inputs must be shaped [B, T, {model.n_features}], got {list(x.shape)}")
        b, t, _ = x.shape
        stats, t0 = self.stats.of(model), perf_counter_ns()
        phases = [0, 0, 0]  # the call's input, infer and output ns (see stats.py), measured where each runs
        try:
            limit = self.response_limit(client_limit)
            size = b * t * model.n_targets * 4 + b * (self._blob_size(model) + 8) + FRAMING_BYTES + len(model.name)
            if size > limit:
                raise ResourceExhausted(f"the answer to {b} sequence(s) of {t} would take {size} bytes (outputs "
                                        f"and final states), over the {limit}-byte message limit; send fewer "
                                        "sequences")
            i0 = perf_counter_ns()
            state, positions = self._initial_state(model, list(states), b, tenant)  # [B, *shape]
            phases[0] = perf_counter_ns() - i0
            keys = self.state_keys

            def work(options: object = None) -> tuple[np.ndarray, list[bytes]]:
                c0 = perf_counter_ns()
                answer, final, observed = model._run_sessions(x, state, positions, sequence=True,
                                                             run_options=options)  # [B, T, W]
                y = answer[:, :, :model.n_targets]  # [B, T, O]
                if (bad := nonfinite_rows(y, final)) is not None:
                    raise InvalidInput(f"sequence {int(bad[0])}: {unanswerable(y[bad[0]]).message}")
                model.live.add(observed)
                c1 = perf_counter_ns()
                blobs = [encode_state(model, positions[i] + t, {k: v[i] for k, v in final.items()}, keys=keys,
                                      tenant=tenant) for i in range(b)]
                phases[1:] = c1 - c0, perf_counter_ns() - c1
                return y, blobs

            if x.size > OFFLOAD_VALUES or b > _INLINE_STATES:  # compute and state encoding off the event loop
                y, blobs = await self.lane.call(work)
            else:
                y, blobs = work()
        except BaseException:
            stats.finished(False, perf_counter_ns() - t0)
            raise
        stats.executed(1, b * t, input_ns=phases[0], infer_ns=phases[1], output_ns=phases[2], batch=b)
        stats.finished(True, perf_counter_ns() - t0)
        self._count(model.name, b * t)
        return Prediction(model.name, model.version, y, blobs)

    # -- internals ----------------------------------------------------------
    def _live_figures(self) -> list[tuple[str, int, LiveFigures]]:
        """Every served model version's pooled live accuracy (what the metrics layer exports)."""
        return [(name, v, self.repository.get(name, v).live.figures()) for name, vs in self.repository.index().items()
                for v in vs]

    def _blob_size(self, model: Model) -> int:
        """Upper bound of one exported-state blob of ``model`` (largest position written)."""
        size = self._blob_sizes.get(model)
        if size is None:
            size = self._blob_sizes[model] = len(encode_state(model, MAX_POSITION, model.zero_state(1),
                                                              tenant="t" * 64))  # the longest tenant name
        return size

    def _count(self, model: str, n: int) -> None:
        counter = self._samples.get(model)
        if counter is None:
            counter = self._samples[model] = self.metrics.samples(model)
        counter(n)

    def _initial_state(self, model: Model, blobs: list[bytes], batch: int,
                       tenant: str) -> tuple[dict[str, np.ndarray], list[int]]:
        if not blobs:
            return model.zero_state(batch), [0] * batch
        if len(blobs) != batch:
            raise InvalidInput(f"`states` holds {len(blobs)} blob(s); give none or one per sequence ({batch})")
        decoded = [self.decode_state(blob, tenant) for blob in blobs]
        per = [d.for_model(model) for d in decoded]  # name -> [1, *shape]
        return {k: np.concatenate([p[k] for p in per]) for k in per[0]}, [d.position for d in decoded]

    def _evicted(self, n: int) -> None:
        self.metrics.evicted(n)
        self.free_unused()

    def _make_store(self) -> SessionStore:
        c = self.config
        if not c.session_store:
            return MemoryStore(c.session_ttl, c.max_sessions, clock=c.clock, on_evict=self._evicted,
                               max_per_tenant=c.max_sessions_per_tenant)
        from .store.redis import RedisStore  # needs the redis package: only when asked for

        return RedisStore(c.session_store, self.repository.session_model, ttl_s=c.session_ttl,
                          max_sessions=c.max_sessions, max_per_tenant=c.max_sessions_per_tenant, lease_s=c.lease_s,
                          timeout_s=c.store_timeout)
