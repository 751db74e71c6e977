"""A lane of its own for large work, so one big request never holds up everyone else's steps.

Every small step goes through the :class:`~eddy.runtime.serving.batcher.Batcher`,
whose drain loop runs one batch at a time. A stream message of tens of
thousands of samples, or a large ``Predict``, used to run in that same loop
(in its worker thread, but awaited by the loop's only drain task), so every
other stream waited behind it. Large work now runs here instead, in one
thread of its own: the batcher keeps answering the other streams on the
event loop meanwhile (onnxruntime releases the GIL; the machine's other core
does the big call).

The computation is the one the batcher would have made for the same
request (a chunk alone at batch 1 through the sequence graph), so results
are bit-identical either way. A caller that goes away (cancel, deadline,
disconnect) stops its work: the onnxruntime call is terminated through its
``RunOptions`` and nothing is committed to the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter_ns
from typing import TypeVar

import numpy as np
import onnxruntime as ort

from ..core.samples import nonfinite_rows, unanswerable
from .batcher import Commit
from .sessions import Session
from .stats import ModelStats

__all__ = ["Lane"]

T = TypeVar("T")


class Lane:
    """One worker thread for large requests; :meth:`call` is cancellable, :meth:`advance` commits on success."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None  # created on first use
        self.terminated = 0  # calls stopped because their caller went away

    async def call(self, work: Callable[[ort.RunOptions], T]) -> T:
        """Run ``work(run_options)`` in the lane's thread; if the caller is cancelled, terminate it."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="eddy-lane")
        options = ort.RunOptions()
        future = asyncio.get_running_loop().run_in_executor(self._executor, work, options)
        try:
            return await future
        except asyncio.CancelledError:
            options.terminate = True  # a running onnxruntime call stops at its next check; a queued one never starts
            self.terminated += 1
            raise

    async def advance(self, session: Session, x: np.ndarray, commit: Commit | None = None,
                      stats: ModelStats | None = None, *, bounds: bool = False) -> np.ndarray:
        """Advance ``session`` by raw ``x[n, F]`` (alone, batch 1, sequence graph); returns raw ``y[n, O]`` or, with
        ``bounds``, the whole answer (:meth:`Batcher.run <eddy.runtime.serving.batcher.Batcher.run>`).

        The session changes only if the call succeeded and its caller is
        still waiting; with a durable store, ``commit`` writes the new state
        first (as the batcher does) and a write that succeeded stands.
        ``stats`` gets the call (its infer phase includes the thread hop).
        """
        t0 = perf_counter_ns()
        slab = session.slab
        state = slab.gather([session.row], copy=True)  # a copy taken on the loop thread, [1, *shape]
        t1 = perf_counter_ns()
        y, new = await self.call(lambda options: slab.advance(x[None], state, options))
        t2 = perf_counter_ns()
        o = slab.model.n_targets  # the predictions; bounds after them
        if nonfinite_rows(y[..., :o], new) is not None:
            raise unanswerable(y[0, :, :o])
        output_ns = 0
        try:
            if commit is not None:
                errors = await commit([session], new, [len(x)])
                if errors[0] is not None:
                    raise errors[0]
            t3 = perf_counter_ns()
            session.slab.scatter([session.row], new, len(x))
            output_ns = perf_counter_ns() - t3
        finally:
            if stats is not None:
                stats.executed(1, len(x), input_ns=t1 - t0, infer_ns=t2 - t1, output_ns=output_ns)
        return y[0] if bounds else y[0][:, :session.model.n_targets]  # [n, O]

    def close(self) -> None:
        """Stop the thread (after the server stopped serving)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
