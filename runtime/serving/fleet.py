"""Fleets: many sessions per message, one model version, without a wire.

A gateway that ticks a thousand sensors should not pay a thousand messages per
tick. A :class:`Fleet` is what one fleet stream drives: each
:meth:`Fleet.step` takes the ids of N sessions and raw samples ``x[N, k, F]``
(k samples per session) and returns ``y[N, k, O]``, running the k steps as k
step-graph calls at batch N through the slab
(:meth:`~eddy.runtime.serving.batcher.Batcher.run_rows`): one gather, k
onnxruntime calls, one durable write (Redis/Valkey store) and one
:meth:`~eddy.runtime.serving.slab.Slab.scatter`. The step graph gives every
row at batch N exactly what it gives that row alone, so each session's answers
are bit-identical to its own stream's, one sample per message.

The sessions are ordinary sessions: opened and resumed by id under the
caller's tenant through :meth:`DataPlane.open_session` (same limits, same
``resume`` rule as a stream's open), pinned to the fleet's model version, and
resumable afterwards by a Stream or an OIP sequence.

Holding: a fleet holds every session it has stepped until :meth:`release`
(the end of its stream), as a Stream holds its one session. Another stream
asking for one of them gets FAILED_PRECONDITION ("in use by another stream");
ending the fleet stream hands them over. Held for the stream's life, not per
message, because a store with leases (Redis/Valkey) would otherwise take and
let go of N leases per message.

Errors, per entry or per message:

- the message (nothing changes, not even the roster): ids named twice, no ids
  on the first message, ``x`` not ``[N, k, F]`` for the N sessions, k past
  ``max_samples_per_message``, an answer past the message size limit;
- one entry (its session unchanged, the others answered): a non-finite value
  (its session is then not even opened), a bad or empty id, an unknown id with
  ``resume``, a known one without it, a session busy elsewhere, of another
  model or version, past a session limit, at the last position, or whose
  durable write was refused. Its output rows are NaN.

The roster (the message's ids, in order) is kept: a message without ids steps
the same sessions as the one before, with no per-session Python work on the
way (one gather and one scatter by a cached row index). A message refused as
a whole forgets it (the next message must name its sessions again). Entries
that failed to open are tried again on every message, so a busy session joins
once it is free.

Use a fleet from the server's event loop, one :meth:`step` at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter_ns
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import EddyError, FailedPrecondition, InvalidInput, shown
from ..core.model import Model
from ..core.samples import not_finite
from ..core.statecodec import MAX_POSITION
from .sessions import Session
from .slab import Slab, as_rows

if TYPE_CHECKING:
    from .dataplane import DataPlane

__all__ = ["Fleet", "FleetAnswer"]

_OFFSET_BYTES = 8  # what an answer carries per session besides its outputs: its offset (uint64)


@dataclass(frozen=True)
class FleetAnswer:
    """What one fleet message gets: every entry's predictions and offset, and the entries that failed."""

    y: np.ndarray  # [N, k, O] float32, raw units; NaN rows for failed entries
    offsets: np.ndarray  # [N] int64: each session's position before the message (0 for one never opened)
    errors: dict[int, EddyError]  # row -> why it failed, ascending rows; its session is unchanged
    bounds: np.ndarray | None = None  # [N, k, 2 * L * O] float32: per calibrated level, lower [O] then upper [O]
    # (Model.forecast splits them); None when the model has no calibration; NaN rows for failed entries


class Fleet:
    """The sessions one fleet stream drives on ``model`` (one version), held until :meth:`release`."""

    def __init__(self, plane: DataPlane, model: Model, *, name: str = "", tenant: str = "",
                 client_limit: int | None = None, intervals: tuple[int, ...] = ()) -> None:
        self.plane = plane
        self.model = model
        self.intervals = intervals  # calibrated levels (positions, Model.interval_index) the answers carry
        self.name = name or model.name  # as requested (repository key)
        self.tenant = tenant  # sessions live in this tenant's namespace
        self.client_limit = client_limit  # bytes the client receives at most (None: the server's limit)
        self.samples = 0  # samples predicted
        self.messages = 0  # step() calls, refused ones included
        self._held: dict[str, Session] = {}  # every session this fleet holds, by id
        self._ids: list[str] | None = None  # the roster: the last message's ids, in order
        self._sessions: list[Session | None] = []  # roster entry -> its held session (None: not open)
        self._groups: list[tuple[Slab, np.ndarray | slice, list[Session]]] | None = None  # all held, one slab
        self._checked: tuple[int, ...] = ()  # the last x shape that passed the message limits (they do not change)
        self._stats = plane.stats.of(model)  # this version's counters (kept by name and version for the server's life)

    @property
    def held(self) -> int:
        """Sessions this fleet holds."""
        return len(self._held)

    async def step(self, session_ids: Sequence[str] | None, x: np.ndarray, *, resume: bool = False) -> FleetAnswer:
        """Advance the sessions ``session_ids`` (None or empty: the previous message's) by raw ``x[N, k, F]``.

        ``x`` is float32 and may hold non-finite rows (they fail their
        entry). ``resume`` applies to ids this fleet does not hold yet, as in
        a stream's open. Raises :class:`EddyError` for a message refused as a
        whole: no session changed, and the roster is forgotten (the next
        message must name its sessions, so a client that sent more messages
        behind the refused one never steps sessions it did not mean).
        Per-entry failures are in the answer.
        """
        self.messages += 1
        try:
            return await self._step(session_ids, x, resume)
        except EddyError:  # refused as a whole: no roster is left, so no later message steps sessions by mistake
            self.forget_roster()
            raise

    def forget_roster(self) -> None:
        """A message was refused as a whole (here, or by the protocol before it got here): the next must name its
        sessions. The held sessions stay held."""
        self._ids, self._sessions, self._groups = None, [], None

    async def release(self) -> None:
        """Let go of every held session (idle, resumable), after any durable write still in progress."""
        await self.plane.batcher.settled()
        held, self._held = list(self._held.values()), {}
        self.forget_roster()
        for session in held:
            await self.plane.release(session)

    # -- internals ----------------------------------------------------------
    async def _step(self, session_ids: Sequence[str] | None, x: np.ndarray, resume: bool) -> FleetAnswer:
        plane, model = self.plane, self.model
        ids = self._ids if not session_ids else self._checked_roster(session_ids)
        if ids is None:
            raise InvalidInput("this fleet message names no sessions: the first message, and the one after a "
                               "refused message, must carry session_ids")
        n = len(ids)
        if x.shape != self._checked or x.shape[0] != n:
            if x.ndim != 3 or x.shape[0] != n or x.shape[1] < 1 or x.shape[2] != model.n_features:
                raise InvalidInput(f"samples must be shaped [N={n}, k >= 1, {model.n_features}] for the {n} "
                                   f"session(s) of this message, got {list(x.shape)}")
            plane.check_samples(x.shape[1], per_session=True)
            plane.check_answer(model, n * x.shape[1], self.client_limit, extra=n * _OFFSET_BYTES,
                               levels=len(self.intervals))
            self._checked = x.shape
        if ids is not self._ids:  # a new roster: map it onto the held sessions
            self._ids, self._sessions, self._groups = list(ids), [self._held.get(sid) for sid in ids], None
        finite = None if np.isfinite(x).all() else np.isfinite(x).all(axis=(1, 2))  # [N] bool; None: all finite
        stats, t0 = self._stats, perf_counter_ns()
        try:
            answer = await self._run(n, x, finite, resume)
        except BaseException:
            stats.finished(False, perf_counter_ns() - t0)
            raise
        done = (n - len(answer.errors)) * x.shape[1]
        stats.finished(done > 0, perf_counter_ns() - t0)
        self.samples += done
        plane.record_samples(model.name, done)
        return answer

    async def _run(self, n: int, x: np.ndarray, finite: np.ndarray | None, resume: bool) -> FleetAnswer:
        k = x.shape[1]
        batcher = self.plane.batcher
        if self._groups is not None and finite is None:  # the hot path: the same sessions, all held, all finite
            slab, rows, sessions = self._groups[0]
            offsets = slab.position[rows].copy()  # [N] int64, before the message
            if offsets.max() <= MAX_POSITION - k:
                y, failed = await batcher.run_rows(sessions, rows, x)
                if not failed:
                    o = self.model.n_targets
                    return FleetAnswer(y[..., :o], offsets, {}, y[..., o:] if y.shape[-1] > o else None)
                return self._answer(n, k, [(np.arange(n), offsets, y, failed)], {})
        errors: dict[int, EddyError] = {}
        runs = []
        for slab, rows, sessions, where in await self._prepare(finite, x, resume, errors):
            position = slab.position[rows]  # [B] before the message
            last = position + k > MAX_POSITION
            if last.any():  # positions are bounded (state bytes carry them): those entries fail alone
                for i in np.nonzero(last)[0].tolist():
                    errors[int(where[i])] = FailedPrecondition(
                        f"session {sessions[i].id} would pass position {MAX_POSITION}; RESET it or start a new "
                        "session")
                keep = np.nonzero(~last)[0]
                rows, where, position = rows[keep], where[keep], position[keep]
                sessions = [sessions[i] for i in keep.tolist()]
            if len(rows):
                y, failed = await batcher.run_rows(sessions, rows, x[where])  # x[where]: [B, k, F]
                runs.append((where, position, y, failed))
        return self._answer(n, k, runs, errors)

    def _answer(self, n: int, k: int, runs: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, EddyError]]],
                errors: dict[int, EddyError]) -> FleetAnswer:
        """Assemble the answer of ``runs`` (message rows, positions before, answers, failed) and entry ``errors``."""
        o, width = self.model.n_targets, self.model.n_targets * (1 + 2 * len(self.model.interval_levels))
        y = np.full((n, k, width), np.nan, np.float32)  # [N, k, W]: predictions, then bounds
        offsets = np.zeros(n, np.int64)
        for where, position, out, failed in runs:
            for i, e in failed.items():
                errors[int(where[i])] = e
            good = np.ones(len(where), np.bool_)
            good[list(failed)] = False
            y[where[good]], offsets[where[good]] = out[good], position[good]
        for i in errors:  # a failed entry's session, if held, keeps its position
            s = self._sessions[i]
            if s is not None:
                offsets[i] = s.position
        return FleetAnswer(y[..., :o], offsets, dict(sorted(errors.items())), y[..., o:] if width > o else None)

    def _checked_roster(self, session_ids: Sequence[str]) -> list[str]:
        """The message's ids (the roster itself when unchanged); an id named twice refuses the message."""
        if self._ids is not None and list(session_ids) == self._ids:
            return self._ids
        ids = list(session_ids)
        if len(set(ids)) != len(ids):
            first: dict[str, int] = {}
            for i, sid in enumerate(ids):
                if sid in first:
                    raise InvalidInput(f"session {shown(sid)} is named twice in one message (rows {first[sid]} and "
                                       f"{i}); a session takes one row per message")
                first[sid] = i
        return ids

    async def _prepare(self, finite: np.ndarray | None, x: np.ndarray, resume: bool,
                       errors: dict[int, EddyError]) -> list[tuple[Slab, np.ndarray, list[Session], np.ndarray]]:
        """Open the roster's sessions not held yet (finite rows only); the runnable entries grouped by slab.

        Fills ``errors`` for entries that cannot run. Each group: (slab, rows, sessions, their message rows).
        When every entry runs on one slab the group is cached for the next messages (the hot path).
        """
        plane, ids, sessions = self.plane, self._ids or [], self._sessions
        for i, sid in enumerate(ids):
            if finite is not None and not finite[i]:
                # not opened, not changed
                errors[i] = InvalidInput(f"session {shown(sid, quote=False)}: {not_finite(x[i]).message}")
            elif sessions[i] is None:
                if not sid:
                    errors[i] = InvalidInput(f"row {i}: a session id must be 1-128 printable characters, got ''")
                    continue
                try:
                    session, _ = await plane.open_session(self.name, self.model.version, sid, resume=resume,
                                                          owner=self, tenant=self.tenant)
                except EddyError as e:
                    errors[i] = e
                    continue
                self._held[sid] = sessions[i] = session
        by_slab: dict[Slab, tuple[list[int], list[Session], list[int]]] = {}
        for i, s in enumerate(sessions):
            if s is not None and i not in errors:
                rows, group, where = by_slab.setdefault(s.slab, ([], [], []))
                rows.append(s.row)
                group.append(s)
                where.append(i)
        groups = [(slab, np.array(rows, np.intp), group, np.array(where, np.intp))
                  for slab, (rows, group, where) in by_slab.items()]
        if not errors and finite is None and len(groups) == 1:  # every entry held, one slab: the next messages
            slab, rows, group, _ = groups[0]                       # skip all of this (consecutive rows: a slice)
            self._groups = [(slab, as_rows(rows.tolist()), group)]
        return groups
