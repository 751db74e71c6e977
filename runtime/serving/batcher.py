"""Cross-stream batching: steps from many sessions, one onnxruntime call.

Every stream's ``run(session, x)`` joins one queue. A drain task takes the
oldest pending request; if it is a single sample (``n == 1``) it gathers the
other pending single samples for the same model (up to ``max_batch``),
stacks their inputs and states along the batch axis and runs them as one
step-graph call (``x[B, F]``); outputs and new states are split back per
session. A chunk (``n > 1``) runs alone, through the sequence graph at
batch 1.

Why chunks are never batched: served predictions are bit-identical to the
in-process ``Stream`` given the same samples in the same chunks, whatever
else shares a call. onnxruntime's step graph (MatMul/Add/activation) gives
every row at batch B exactly what it gives that row at batch 1, so single
samples batch freely. The sequence graph need not: the native ``RNN`` op's
rows move in the last bits with the batch size, tf2onnx's ``Loop`` differs
at batch 1 from batch 2+, and ``GRU``/``LSTM`` matched row for row only as
far as we checked (onnxruntime 1.32, 50 units), which nothing promises. So
a chunk batched with others could differ from the same chunk pushed
in-process; running every chunk at batch 1 keeps it exact (and the native
ops are fast at batch 1).

Guarantees:

- per-session order: only a session's oldest pending request may join a
  batch, so a session never appears twice in one batch and its requests run
  in the order they were submitted;
- a session's state and position change only when its request succeeded
  and its caller is still waiting (a cancelled caller's step is dropped);
- a failed batch is retried one request at a time, so a faulty session
  fails alone and its neighbours still get their predictions.

How long a round collects: one event-loop turn (what is already queued);
then, with ``max_delay_us`` > 0, more turns while the loop is busy admitting
other requests and fewer steps are queued than sessions were recently active,
up to ``max_delay_us`` after the oldest queued step (:meth:`Batcher._collect`).
An idle loop runs the batch at once. Why: under load grpc.aio hands requests
to the loop one at a time, hundreds of microseconds apart, so a round that ran
after one turn held ~1 step and paid onnxruntime's per-call cost (82 us for
one LSTM(256) step, 21 us per step at 32) for every step. Disabled, every request runs
alone, in submission order: a small one inline in ``run`` itself when
nothing is queued (no task, no loop turn); enabled, the same happens when
the caller says no other session is active.

Where onnxruntime runs: small batches run inline on the event loop; a batch
carrying more than ``offload_values`` input values runs in one worker thread
(onnxruntime releases the GIL, so the loop keeps serving other streams
meanwhile). Measured on 2 cores with SimpleRNN(50) and SimpleRNN(512):
inline is 1.1-2.5x faster for single steps at every stream count (a thread
hand-off costs ~100 us per call), while for 64 streams x 1000-sample chunks
the thread is 1.7x faster because compute overlaps the loop's own work.

Durable stores (``commit``): a batch's new state is written to the store
(one round trip for the batch) before any of its callers is answered, and
nothing changes in memory if the write fails. Up to ``_MAX_FLIGHTS`` batches
may wait for their write at once, each as its own task, so the next batch
computes while the store answers; a session in flight joins no other batch.

Use the batcher from one event loop thread, and await each ``run`` of a
session before touching that session again (reset, export, close).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import perf_counter_ns

import numpy as np

from ..core.errors import EddyError, InvalidInput
from ..core.model import Model
from ..core.samples import nonfinite_rows, unanswerable
from .config import ServeConfig
from .sessions import Session
from .slab import Slab
from .stats import Statistics

__all__ = ["ACTIVE_WINDOW_NS", "IDLE_TURN_NS", "OFFLOAD_VALUES", "Batcher"]

log = logging.getLogger("eddy.batcher")

_State = dict[str, np.ndarray]
# A durable store's write-before-answer hook: (sessions, new state [B, *shape], samples each) -> per-session error
Commit = Callable[[Sequence[Session], _State, Sequence[int]], Awaitable[list[EddyError | None]]]

# Durable stores: batches whose store write may be in flight at once (each holds its sessions back meanwhile).
_MAX_FLIGHTS = 4

# A session that sent a step within the current or the previous window of this many ns counts as active.
ACTIVE_WINDOW_NS = 20_000_000
# While a batch collects steps: IDLE_TURNS loop turns in a row, each shorter than IDLE_TURN_NS and bringing no new
# step, mean the loop is idle (a turn with nothing else to run takes ~2.5 us here; one that ran other work, e.g. grpc
# admitting a request, 11 us or more).
IDLE_TURN_NS = 10_000
IDLE_TURNS = 2

# Batches carrying more input floats than this (B * n * F) run in a worker
# thread; below it the ~100 us thread hand-off costs more than it saves.
OFFLOAD_VALUES = 4096


@dataclass(eq=False)
class _Request:
    session: Session
    x: np.ndarray  # [n, F] raw
    future: asyncio.Future[np.ndarray]
    queued_ns: int  # perf_counter_ns() when it joined the queue


class Batcher:
    """Runs :class:`Session` steps, batching across sessions (one event loop).

    ``on_batch(size)`` is called once per onnxruntime call with its batch
    size (for a histogram); ``recent_batch_sizes`` keeps the last few
    thousand sizes; ``stats`` gets each call's model, size, samples, compute
    and queue time.
    """

    def __init__(self, max_batch: int = ServeConfig.max_batch, max_delay_us: int = ServeConfig.max_delay_us,
                 enabled: bool = ServeConfig.batching, *,
                 offload_values: int = OFFLOAD_VALUES, on_batch: Callable[[int], None] | None = None,
                 commit: Commit | None = None, stats: Statistics | None = None,
                 active_window_ns: int = ACTIVE_WINDOW_NS, idle_turn_ns: int = IDLE_TURN_NS) -> None:
        if max_batch < 1 or max_delay_us < 0:
            raise ValueError(f"max_batch must be >= 1 and max_delay_us >= 0, got {max_batch}, {max_delay_us}")
        self.max_batch = max_batch if enabled else 1
        self.row_batch = max_batch  # rows per call of a fleet's step (its sessions came together: batched anyway)
        self.max_delay_us = max_delay_us if enabled else 0
        self.enabled = enabled
        self.on_batch = on_batch
        self.stats = stats or Statistics()  # per model version: calls, samples, compute and queue ns
        self.recent_batch_sizes: deque[int] = deque(maxlen=4096)
        self.batches = 0  # onnxruntime calls made
        self.requests = 0  # requests that succeeded
        self._pending: deque[_Request] = deque()
        self._active: set[tuple[str, str]] = set()  # (tenant, id) of sessions with a step in the current window ...
        self._was_active: set[tuple[str, str]] = set()  # ... and in the previous one (ids: no model kept alive)
        self._window_end = 0  # perf_counter_ns
        self._window_ns = active_window_ns
        self.idle_turn_ns = idle_turn_ns  # IDLE_TURNS loop turns shorter than this that brought no step: idle
        self._drainer: asyncio.Task[None] | None = None
        self.offload_values = offload_values  # batches with more input floats run in the worker thread
        self._executor: ThreadPoolExecutor | None = None  # created on first offload
        self.commit = commit  # durable store: awaited with each batch's new state before anyone is answered
        self._flights: set[asyncio.Task[None]] = set()  # durable: batches whose store write is in flight
        self._flying: set[Session] = set()  # ... and their sessions (none of them may join another batch)
        self._writes: set[asyncio.Future[dict[int, EddyError]]] = set()  # run_rows' durable writes in progress

    async def run(self, session: Session, x: np.ndarray, *, alone: bool = False, bounds: bool = False) -> np.ndarray:
        """Advance ``session`` by raw samples ``x[n, F]``; returns raw ``y[n, O]`` or, with ``bounds``, the whole
        answer ``[n, O * (1 + 2L)]``: the predictions, then each calibrated level's lower and upper bounds
        (:meth:`Slab.advance <eddy.runtime.serving.slab.Slab.advance>`).

        ``x`` must already be validated (finite float32, see
        :func:`eddy.runtime.core.samples.as_samples`); a wrong shape raises
        :class:`InvalidInput`. On any exception, including cancellation,
        the session is exactly as before. ``alone`` tells the batcher no
        other session is being driven right now, so there is nobody to wait
        for: a small request then runs at once, as with batching off.
        """
        model = session.model
        now = perf_counter_ns()
        if now >= self._window_end:  # sessions that sent a step lately: how many a batch should wait for
            w = self._window_ns
            self._was_active = self._active if now < self._window_end + w else set()
            self._active, self._window_end = set(), now + w
        self._active.add((session.tenant, session.id))
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != model.n_features:
            raise InvalidInput(f"samples must be shaped [n >= 1, {model.n_features}], got {list(x.shape)}")
        x = x.astype(np.float32, copy=False)
        if (alone or not self.enabled) and not self._pending and x.size <= self.offload_values and self.commit is None:
            answer = self._run_now(session, x)  # nothing queued, nobody to batch with: no task, no loop turn
        elif (alone or not self.enabled) and not self._pending and x.size <= self.offload_values \
                and session not in self._flying:
            answer = await self._run_durable(session, x)  # the same with a durable store: one write, then answer
        else:
            loop = asyncio.get_running_loop()
            request = _Request(session, x, loop.create_future(), now)
            self._pending.append(request)
            if self._drainer is None or self._drainer.done():
                self._drainer = loop.create_task(self._drain())
            answer = await request.future
        return answer if bounds else answer[:, :model.n_targets]

    async def run_rows(self, sessions: Sequence[Session], rows: np.ndarray | slice,
                       x: np.ndarray) -> tuple[np.ndarray, dict[int, EddyError]]:
        """A fleet's step: advance ``sessions`` (rows ``rows`` of their one slab) by raw ``x[B, k, F]``.

        The caller holds every session (each once; ``rows`` an ``intp``
        array or a slice of consecutive rows, in the order of ``sessions``)
        and validated ``x`` (float32, finite). Runs sample by sample through
        the step graph at batch B (k calls; B past ``max_batch`` in several
        calls), so each row gets exactly what it gets alone, one sample per
        message; on the event loop, or in the worker thread past
        ``offload_values`` inputs. It does not join the queue: it neither
        waits for other sessions' steps nor holds them up. Durable stores:
        one write for the B sessions before anything changes in memory.

        Returns the answer ``[B, k, O * (1 + 2L)]`` (raw predictions
        ``[..., :O]``, then each calibrated level's bounds, as
        :meth:`Slab.advance <eddy.runtime.serving.slab.Slab.advance>`) and
        the sessions (by index) whose durable write the store refused; the
        others advanced by k (one
        :meth:`Slab.scatter <eddy.runtime.serving.slab.Slab.scatter>`).
        Cancelled before the write, nothing changed; a write that started is
        finished and applied (it stands): :meth:`settled` waits for it.
        """
        slab = sessions[0].slab
        t0 = perf_counter_ns()
        state = slab.gather(rows)  # a copy, or views of rows only this caller writes (safe in the worker thread)
        t1 = perf_counter_ns()
        if x.size <= self.offload_values:
            y, new = _fleet_step(slab, x, state, self.row_batch)
        else:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="eddy-batcher")
            y, new = await asyncio.get_running_loop().run_in_executor(self._executor, _fleet_step, slab, x, state,
                                                                      self.row_batch)
        phases = (t1 - t0, perf_counter_ns() - t1)
        refused: dict[int, EddyError] = {}
        kept = np.arange(len(sessions))  # message index of each entry that goes on
        o = slab.model.n_targets  # the predictions; bounds after them
        if (bad := nonfinite_rows(y[..., :o], new)) is not None:  # those entries are refused; the others go on
            refused = {int(i): unanswerable(y[i, :, :o]) for i in bad}
            kept = np.setdiff1d(kept, bad)
            index = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
            sessions, rows, new = [sessions[i] for i in kept], index[kept], {n: v[kept] for n, v in new.items()}
            if not sessions:
                return y, refused
        shape = (len(sessions), *x.shape[1:])
        if self.commit is None:
            t2 = perf_counter_ns()
            slab.scatter(rows, new, x.shape[1])
            self._count_rows(sessions[0], shape, *phases, perf_counter_ns() - t2)
            self.requests += len(sessions)
            return y, refused
        write = asyncio.ensure_future(self._write_rows(sessions, rows, new, shape, phases))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)
        failed = await asyncio.shield(write)
        return y, {**refused, **{int(kept[i]): e for i, e in failed.items()}}

    async def settled(self) -> None:
        """Wait until the durable writes :meth:`run_rows` started are applied (their callers may have left)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def close(self) -> None:
        """Stop the worker thread (after the server stopped calling :meth:`run`)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals ----------------------------------------------------------
    def _run_now(self, session: Session, x: np.ndarray) -> np.ndarray:
        """Run one small request inline (batching off); the session changes only on success."""
        t0 = perf_counter_ns()
        y, new, t1 = _run(session.slab, [session.row], [x])
        t2 = perf_counter_ns()
        if nonfinite_rows(y[..., :session.model.n_targets], new) is not None:
            raise unanswerable(y[0, :, :session.model.n_targets])
        session.slab.scatter([session.row], new, len(x))  # only after the run succeeded
        self._count(session, 1, len(x), t1 - t0, t2 - t1, perf_counter_ns() - t2)
        self.requests += 1
        return y[0]  # [n, O]

    async def _drain(self) -> None:
        if self.enabled:
            await self._collect()  # let the steps of the other active sessions queue up
        batch: list[_Request] = []
        try:
            while self._pending:
                batch = self._take()
                if batch and self.commit is not None:
                    self._fly(batch)  # durable: its store write overlaps the next batch's compute
                elif batch:
                    await self._execute(batch)
                elif self._flights:  # every pending request waits for its session's write
                    await asyncio.wait(self._flights, return_when=asyncio.FIRST_COMPLETED)
                else:
                    break  # not reached: with nothing in flight the oldest request is always taken
                batch = []
                if len(self._flights) >= _MAX_FLIGHTS:
                    await asyncio.wait(self._flights, return_when=asyncio.FIRST_COMPLETED)
                if self.enabled:
                    await asyncio.sleep(0)  # let woken streams queue their next message
        except asyncio.CancelledError:  # loop shutting down: never leave a caller hanging
            for r in (*batch, *self._pending):
                r.future.cancel()
            self._pending.clear()
            raise
        except Exception as e:  # a bug in here: fail the callers rather than hang them
            log.exception("batcher drain failed")
            for r in (*batch, *self._pending):
                _fail(r, e)
            self._pending.clear()

    async def _collect(self) -> None:
        """Let the steps of the other active sessions queue up, while the event loop is busy admitting them.

        Always one loop turn (what is already queued). Then, with ``max_delay_us`` > 0, more turns while fewer
        steps are queued than sessions were recently active (:data:`ACTIVE_WINDOW_NS`), as long as each turn
        brings a new step or takes the loop ``idle_turn_ns`` or more (other work ran: grpc admitting requests),
        and at most ``max_delay_us`` after the oldest queued step. :data:`IDLE_TURNS` quick turns in a row that
        brought nothing mean the loop is idle: nobody else is about to arrive, so the batch runs then. Under
        load grpc.aio hands requests to the loop one at a time, hundreds of microseconds apart, over several
        turns each (most of them bring no step); running a batch after one turn made batches of ~1 step and
        paid onnxruntime's per-call cost for each, and so did a 40 us threshold, which most of grpc's own
        turns stay under (unary requests of 32 sequences: 1.0 steps per call; 10 us, two turns: 3-4 on a
        loaded machine).
        """
        await asyncio.sleep(0)
        if not self.max_delay_us or not self._pending:
            return
        expect = min(self.max_batch, max(len(self._active), len(self._was_active)))
        deadline = self._pending[0].queued_ns + self.max_delay_us * 1000
        quick = 0  # turns in a row that ran nothing else and brought no step
        while len(self._pending) < expect:
            t = perf_counter_ns()
            if t >= deadline:
                return
            seen = len(self._pending)
            await asyncio.sleep(0)
            quick = quick + 1 if len(self._pending) == seen and perf_counter_ns() - t < self.idle_turn_ns else 0
            if quick >= IDLE_TURNS:
                return  # the loop has nothing else to do

    def _take(self) -> list[_Request]:
        """The next batch: the oldest request, and if it is one sample, other sessions' single samples
        for the same model, each session once."""
        batch: list[_Request] = []
        skipped: list[_Request] = []
        seen: set[Session] = set()
        while self._pending and len(batch) < self.max_batch:
            r = self._pending.popleft()
            if r.future.done():  # the caller gave up before it ran
                continue
            first = r.session not in seen and r.session not in self._flying  # only a session's oldest request
            seen.add(r.session)
            head = batch[0] if batch else r
            if first and (not batch or (len(r.x) == 1 == len(head.x) and r.session.slab is head.session.slab)):
                batch.append(r)
                if len(r.x) > 1:
                    break  # a chunk runs alone, at batch 1 (exactness: see the module docstring)
            else:
                skipped.append(r)
        self._pending.extendleft(reversed(skipped))  # back in front, order kept
        return batch

    def _fly(self, batch: list[_Request]) -> None:
        """Run ``batch`` as its own task (durable stores), its sessions kept out of other batches until done."""
        sessions = [r.session for r in batch]
        self._flying.update(sessions)

        async def flight() -> None:
            try:
                await self._execute(batch)
            except asyncio.CancelledError:  # loop shutting down: never leave a caller hanging
                for r in batch:
                    r.future.cancel()
                raise
            except Exception as e:  # a bug in here: fail the callers rather than hang them
                log.exception("batcher flight failed")
                for r in batch:
                    _fail(r, e)
            finally:
                self._flying.difference_update(sessions)

        task = asyncio.get_running_loop().create_task(flight())
        self._flights.add(task)
        task.add_done_callback(self._flights.discard)

    async def _execute(self, batch: list[_Request]) -> None:
        t0 = perf_counter_ns()
        try:
            y, new, t1 = await self._compute(batch)  # t1: the call's inputs were ready
        except Exception as e:
            if len(batch) == 1:
                _fail(batch[0], e)
                return
            log.warning("batch of %d failed (%s); retrying one by one", len(batch), e)
            for r in batch:
                if not r.future.done():
                    await self._execute([r])
            return
        t2 = perf_counter_ns()
        o = batch[0].session.model.n_targets  # the predictions; bounds after them
        if (bad := nonfinite_rows(y[..., :o], new)) is not None:  # refused: kept out below, like a caller that left
            for i in bad:
                _fail(batch[i], unanswerable(y[i, :, :o]))
        call = (batch[0].session, len(batch), len(batch) * len(batch[0].x), t1 - t0, t2 - t1)
        queue_ns, store_ns = sum(t0 - r.queued_ns for r in batch), 0  # store_ns: a durable write, not output work
        try:
            keep = [i for i, r in enumerate(batch) if not r.future.done()]  # a cancelled caller's step never happened
            if len(keep) < len(batch):
                batch = [batch[i] for i in keep]
                y, new = y[keep], {k: v[keep] for k, v in new.items()}
            if batch:
                store_ns = await self._settle(batch, y, new)
        finally:
            self._count(*call, perf_counter_ns() - t2 - store_ns, queue_ns)

    async def _settle(self, batch: list[_Request], y: np.ndarray, new: _State) -> int:
        """Write a computed batch back (after a durable store took it) and answer its callers; the store's ns."""
        errors: list[EddyError | None] = [None] * len(batch)
        store_ns = 0
        if self.commit is not None:  # durable: written before anyone is answered, or nobody is
            s0 = perf_counter_ns()
            try:
                errors = await self.commit([r.session for r in batch], new, [len(r.x) for r in batch])
            except Exception as e:
                for r in batch:
                    _fail(r, e)
                return perf_counter_ns() - s0
            store_ns = perf_counter_ns() - s0
            if any(errors):
                ok = [i for i, e in enumerate(errors) if e is None]
                for r, e in zip(batch, errors):
                    if e is not None:
                        _fail(r, e)
                batch, errors = [batch[i] for i in ok], [None] * len(ok)
                y, new = y[ok], {k: v[ok] for k, v in new.items()}
                if not batch:
                    return store_ns
        batch[0].session.slab.scatter([r.session.row for r in batch], new, len(batch[0].x))  # one n per batch
        for i, r in enumerate(batch):
            if not r.future.done():  # a durable write stands even if the caller left during it
                r.future.set_result(y[i])  # [n, O]
            self.requests += 1
        return store_ns

    async def _run_durable(self, session: Session, x: np.ndarray) -> np.ndarray:
        """A lone request with a durable store: run inline, write, then scatter and answer."""
        t0 = perf_counter_ns()
        y, new, t1 = _run(session.slab, [session.row], [x])
        t2 = perf_counter_ns()
        if nonfinite_rows(y[..., :session.model.n_targets], new) is not None:
            raise unanswerable(y[0, :, :session.model.n_targets])
        output_ns = 0
        try:
            errors = await self.commit([session], new, [len(x)])
            if errors[0] is not None:
                raise errors[0]
            t3 = perf_counter_ns()
            session.slab.scatter([session.row], new, len(x))
            output_ns = perf_counter_ns() - t3
        finally:
            self._count(session, 1, len(x), t1 - t0, t2 - t1, output_ns)
        self.requests += 1
        return y[0]  # [n, O]

    async def _compute(self, batch: list[_Request]) -> tuple[np.ndarray, _State, int]:
        """y[B, n, O], the new state [B, *shape], and perf_counter_ns() when the call's inputs were ready."""
        slab = batch[0].session.slab
        rows = [r.session.row for r in batch]
        xs = [r.x for r in batch]
        if len(xs) * xs[0].size <= self.offload_values:
            return _run(slab, rows, xs)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="eddy-batcher")
        state = slab.gather(rows, copy=True)  # on the loop thread: a copy
        x = _stack(xs)
        t1 = perf_counter_ns()
        y, new = await asyncio.get_running_loop().run_in_executor(self._executor, slab.advance, x, state)
        return y, new, t1

    async def _write_rows(self, sessions: Sequence[Session], rows: np.ndarray | slice, new: _State,
                          shape: tuple[int, ...], phases: tuple[int, int]) -> dict[int, EddyError]:
        """Durable: write the new state of ``sessions``, then scatter the rows the store took."""
        b, k, _ = shape
        errors = await self.commit(sessions, new, [k] * b)  # type: ignore[misc]
        t2 = perf_counter_ns()
        failed = {i: e for i, e in enumerate(errors) if e is not None}
        if failed:
            keep = np.array([i not in failed for i in range(b)], np.bool_)
            index = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
            rows, new = index[keep], {n: v[keep] for n, v in new.items()}
        if len(failed) < b:
            sessions[0].slab.scatter(rows, new, k)
        self._count_rows(sessions[0], shape, *phases, perf_counter_ns() - t2)
        self.requests += b - len(failed)
        return failed

    def _count_rows(self, session: Session, shape: tuple[int, ...], input_ns: int, infer_ns: int,
                    output_ns: int) -> None:
        """A fleet step's onnxruntime calls (k per group of at most ``row_batch`` rows), phases shared evenly."""
        b, k, _ = shape
        if b <= self.row_batch and k == 1:  # one call
            self._count(session, b, b, input_ns, infer_ns, output_ns)
            return
        sizes = [min(self.row_batch, b - i) for i in range(0, b, self.row_batch)] * k
        n = len(sizes)
        for size in sizes:
            self._count(session, size, size, input_ns // n, infer_ns // n, output_ns // n)

    def _count(self, session: Session, size: int, samples: int, input_ns: int, infer_ns: int, output_ns: int,
               queue_ns: int = 0) -> None:
        self.stats.of(session.model).executed(size, samples, input_ns=input_ns, infer_ns=infer_ns,
                                              output_ns=output_ns, queue_ns=queue_ns)
        self.batches += 1
        self.recent_batch_sizes.append(size)
        if self.on_batch is not None:
            try:
                self.on_batch(size)
            except Exception:  # metrics must not break serving
                log.exception("on_batch hook failed")


def _run(slab: Slab, rows: list[int], xs: list[np.ndarray]) -> tuple[np.ndarray, _State, int]:
    """One onnxruntime call for B sessions' rows of one slab: one gather per state tensor, y[B, n, O].

    Also returns perf_counter_ns() when the inputs were ready (the end of the call's input phase).
    """
    state, x = slab.gather(rows), _stack(xs)  # gather: [B, *shape] (a view of the row when B == 1)
    t1 = perf_counter_ns()
    y, new = slab.advance(x, state)  # the answer [B, n, O * (1 + 2L)] (predictions, bounds), the new state
    return y, new, t1


def _fleet_step(slab: Slab, x: np.ndarray, gathered: _State, max_batch: int) -> tuple[np.ndarray, _State]:
    """A fleet's k samples as k step-graph calls (:func:`_steps`), then the sessions' monitor: (answer, new)."""
    y, new = _steps(slab.model, x, {n: gathered[n] for n in slab.names}, max_batch)
    return slab.observe(x, gathered, y, new)


def _steps(model: Model, x: np.ndarray, state: _State, max_batch: int) -> tuple[np.ndarray, _State]:
    """``x[B, k, F]`` sample by sample through the step graph, in calls of at most ``max_batch`` rows: y[B, k, O]."""
    b, k, _ = x.shape
    if b > max_batch:  # rows are independent: each part is what it would be alone
        parts = [_steps(model, x[i:i + max_batch], {n: v[i:i + max_batch] for n, v in state.items()}, max_batch)
                 for i in range(0, b, max_batch)]
        return np.concatenate([y for y, _ in parts]), {n: np.concatenate([p[n] for _, p in parts]) for n in state}
    if k == 1:
        y, new = model._run_step(x[:, 0], state)  # [B, O]
        return y[:, None], new
    ys = np.empty((b, k, model.n_targets), np.float32)
    for j in range(k):
        ys[:, j], state = model._run_step(x[:, j], state)
    return ys, state


def _stack(xs: list[np.ndarray]) -> np.ndarray:
    """B requests' ``x[n, F]`` as ``x[B, n, F]`` (3x faster than np.stack)."""
    n, f = xs[0].shape
    return xs[0][None] if len(xs) == 1 else np.concatenate(xs).reshape(len(xs), n, f)


def _fail(r: _Request, e: Exception) -> None:
    if not r.future.done():
        r.future.set_exception(e)
