"""Triton-style sequences (``sequence_id``, ``sequence_start``, ``sequence_end``) on eddy sessions, without a wire.

The Open Inference Protocol's sequence extension names a sequence per
request instead of holding a stream open; :class:`Sequences` maps it onto the
same sessions, batcher and limits the eddy.v1 ``Stream`` uses:

- **no id**: stateless. The samples run from zero state as one fresh
  sequence (``x[n, F]`` -> ``y[n, O]``) in a session that lives for this
  request only (so it batches like any other); nothing is kept. Start/end
  flags without an id are refused.
- **id + start**: the sequence begins (again): whatever session held that id
  is dropped (it must be idle) and a new one starts from zero state on the
  requested (or latest) version.
- **id, no start**: the session under that id continues, on the version it
  started with. An unknown id is INVALID_ARGUMENT in Triton's words ("... must
  specify the START flag on the first request of the sequence").
- **end**: the session is closed after this request's answer is computed.

The session id *is* the sequence id in decimal (an integer id 42 is session
``"42"``) or the string id as given, so a sequence started here can be
continued by an eddy.v1 ``Stream`` opening session ``"42"`` and vice versa.
Idle sequences keep their state for the session TTL (Triton drops them after
``max_sequence_idle_microseconds``, 1 s by default). Each request holds its
session only while it runs: a request for a sequence another request or
stream is driving right now gets FAILED_PRECONDITION.

Batching: a request holds its session only while it runs, so held sessions
do not tell whether other sequences are active (one eddy.v1 stream holds its
session throughout). :class:`Sequences` counts the distinct sequences seen in
the last :data:`ACTIVE_WINDOW_S`: with one, a step runs at once; with more,
it joins the batcher's queue, where steps of different sequences that are
pending together run as one onnxruntime call.

Input is validated by the caller against the model (``plane.model``) before
:meth:`Sequences.infer`, so a rejected request changes no session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..core.errors import FailedPrecondition, InvalidInput, NotFound
from ..core.model import Model
from .dataplane import DataPlane

__all__ = ["ACTIVE_WINDOW_S", "SequenceStep", "Sequences"]

ACTIVE_WINDOW_S = 0.005  # a sequence with a request in the last 5 ms counts as active (for batching)


class SequenceStep(NamedTuple):
    """One request's place in a sequence (a named tuple: built per request, 2x cheaper than a frozen dataclass)."""

    sequence_id: str = ""  # "" : not in a sequence (stateless)
    start: bool = False  # first request: new (or restarted) session
    end: bool = False  # last request: the session is closed after the answer


class Sequences:
    """Requests of Triton-style sequences on one :class:`DataPlane` (one event loop)."""

    def __init__(self, plane: DataPlane, clock: Callable[[], float] = time.monotonic) -> None:
        self.plane = plane
        self._clock = clock
        self._window_end = 0.0
        self._current: set[object] = set()  # sequences seen in this window
        self._previous: set[object] = set()  # ... and in the one before

    def active(self, key: object) -> int:
        """Note a request of sequence ``key``; how many sequences were active in the last one or two windows."""
        now = self._clock()
        if now >= self._window_end:
            self._previous = self._current if now < self._window_end + ACTIVE_WINDOW_S else set()
            self._current, self._window_end = set(), now + ACTIVE_WINDOW_S
        self._current.add(key)
        return len(self._current | self._previous) if self._previous else len(self._current)

    async def infer(self, model: Model, version: str | int | None, step: SequenceStep,
                    x: np.ndarray, tenant: str = "", levels: tuple[float, ...] = ()) -> tuple[Model, Any]:
        """Run validated raw samples ``x[n, F]`` as ``step`` says; the model that ran them and raw ``y[n, O]``,
        or with ``levels`` a :class:`~eddy.runtime.core.monitor.Forecast` holding those levels' intervals.

        ``model``: what the request named, resolved (:meth:`DataPlane.model <eddy.runtime.serving.dataplane.DataPlane.model>`
        of its name and ``version``); a continued sequence runs on its own version unless ``version`` pins one.
        Sequence ids live in ``tenant``'s namespace, like eddy.v1 session ids.
        """
        plane = self.plane
        sid = step.sequence_id
        owner = object()  # this request holds the session while it runs
        alone = self.active(sid or owner) <= 1  # stateless requests count one each
        if not sid:
            if step.start or step.end:
                raise InvalidInput("sequence_start / sequence_end given without a sequence_id")
            step = SequenceStep("", start=True, end=True)  # a one-request sequence under a server-assigned id
            session, _ = await plane.open_session(model, version, None, owner=owner, tenant=tenant)
        elif step.start:
            try:
                await plane.delete_session(sid, tenant)  # START begins the sequence again: its old state is dropped
            except NotFound:
                pass
            except FailedPrecondition:
                raise FailedPrecondition(f"sequence {sid} is in use by another request or stream") from None
            session, _ = await plane.open_session(model, version, sid, owner=owner, tenant=tenant)
        else:
            try:
                session, _ = await plane.open_session(model, version, sid, resume=True, owner=owner, tenant=tenant)
            except NotFound:  # the model resolved (the caller validated x against it): the session is unknown
                raise InvalidInput(f"inference request for sequence {sid} to model '{model.name}' must specify "
                                   "the START flag on the first request of the sequence") from None
        ran = session.slab.model
        try:
            if ran is not model and x.shape[1] != ran.n_features:  # a resumed session may run another version
                raise InvalidInput(f"sequence {sid} runs {ran.name}/{ran.version}, which takes "
                                   f"{ran.n_features} feature(s) per sample, got shape {list(x.shape)}")
            if levels:  # checked against the session's own version (a resumed one may run another)
                y: Any = await plane.forecast(session, x, ran._interval_index(levels), alone=alone)
            else:
                y = await plane.push(session, x, alone=alone)  # state advances only on success
        except BaseException:
            if step.start:
                await plane.close_session(session)  # the sequence did not start
            else:
                await plane.release(session)
            raise
        if step.end:
            await plane.close_session(session)
        else:
            await plane.release(session)
        return ran, y
