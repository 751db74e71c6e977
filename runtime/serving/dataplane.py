"""What the eddy.v1 RPCs do, without gRPC: models, sessions, batching, limits.

:class:`DataPlane` ties the :class:`~runtime.repository.ModelRepository`,
the :class:`~runtime.sessions.SessionStore` and the
:class:`~runtime.batcher.Batcher` together under one
:class:`~runtime.config.ServeConfig`. The stream handler and the servicer
call it; tests can drive it without a socket. Every refusal is an
:class:`~runtime.errors.EddyError` carrying its status code.

Use it from one asyncio event loop (the server's): the session store and the
batcher are single-loop structures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from eddy.v1 import inference_pb2 as pb

from ..core.errors import FailedPrecondition, InvalidInput, NotFound, ResourceExhausted
from ..core.model import Model
from ..core.statecodec import decode_state, encode_state
from ..grpc.codecs import array_to_tensor, sample_count, tensor_to_sequences
from .batcher import OFFLOAD_VALUES, Batcher
from .config import ServeConfig
from .metrics import Metrics
from .repository import ModelRepository
from .sessions import Session, SessionStore

__all__ = ["DataPlane"]


class DataPlane:
    """Sessions and predictions over one repository. ``start()`` in the loop, ``await close()`` at the end."""

    def __init__(self, repository: ModelRepository, config: ServeConfig | None = None,
                 metrics: Metrics | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.repository = repository
        self.config = config or ServeConfig()
        self.metrics = metrics
        c = self.config
        self.sessions = SessionStore(c.session_ttl, c.max_sessions, clock=clock, on_evict=self._evicted)
        self.batcher = Batcher(c.max_batch, c.max_delay_us, c.batching,
                               on_batch=metrics.batch_size.observe if metrics else None)
        if metrics is not None:
            metrics.track_sessions(lambda: len(self.sessions))
        self._evictor: asyncio.Task[None] | None = None
        self._samples_children: dict[str, Any] = {}  # model name -> eddy_samples_total child

    def start(self) -> None:
        """Start the idle-session sweeper in the running loop."""
        if self._evictor is None:
            interval = min(self.config.eviction_interval, self.config.session_ttl)
            self._evictor = asyncio.get_running_loop().create_task(self.sessions.run_evictor(interval))

    async def close(self) -> None:
        """Stop the sweeper and the batcher's worker thread."""
        if self._evictor is not None:
            self._evictor.cancel()
            await asyncio.gather(self._evictor, return_exceptions=True)
            self._evictor = None
        self.batcher.close()

    # -- sessions -----------------------------------------------------------
    def open_session(self, request: pb.OpenStream, owner: object) -> tuple[Session, bool]:
        """Create, import or resume the session ``request`` names; returns it (held) and whether it existed.

        Version: a pinned one must match a resumed session's; unpinned, a
        resumed session keeps its own, imported bytes use theirs, a new
        session gets the latest.
        """
        sid, version = request.session_id, request.version
        exists = bool(sid) and sid in self.sessions
        if request.resume and not sid:
            raise InvalidInput("`resume` needs a `session_id`")
        if request.resume and not exists:
            raise NotFound(f"session {sid} does not exist (closed, expired or never opened)")
        imported = decode_state(request.state) if request.state else None  # InvalidInput if corrupted
        if imported is not None and not version and not exists:
            latest = self.repository.get(request.model)
            if imported.model != latest.name:
                raise FailedPrecondition(f"state bytes are for model {imported.model}/{imported.version}, "
                                         f"not {request.model}")
            version = str(imported.version)
        model = self.repository.get(request.model, version)
        session = self.sessions.acquire(model, sid or None, imported, pinned=bool(request.version), owner=owner)
        return session, exists

    def release(self, session: Session) -> None:
        """The stream driving ``session`` ended: keep it resumable."""
        self.sessions.release(session)

    def session_state(self, session_id: str) -> pb.SessionState:
        """An idle session's position and exported state."""
        s = self._idle(session_id)
        return pb.SessionState(session_id=s.id, model=s.model.name, version=s.model.version, position=s.position,
                               state=self.sessions.export_state(s))

    def delete_session(self, session_id: str) -> pb.SessionState:
        """Delete an idle session; returns its final state."""
        final = self.session_state(session_id)
        self.sessions.close(session_id)
        return final

    # -- predictions --------------------------------------------------------
    def check_samples(self, tensor: pb.Tensor) -> None:
        """RESOURCE_EXHAUSTED past ``max_samples_per_message`` (checked before decoding)."""
        n, limit = sample_count(tensor), self.config.max_samples_per_message
        if n > limit:
            raise ResourceExhausted(f"message holds {n} samples; the limit is {limit} per message "
                                    "(split it into several messages)")

    async def push(self, session: Session, x: np.ndarray) -> np.ndarray:
        """Advance ``session`` by validated samples ``x[n, F]``; raw ``y[n, O]``."""
        y = await self.batcher.run(session, x, alone=self.sessions.busy_count <= 1)  # 1 stream: no batch to wait for
        if self.metrics is not None:
            self._samples_counter(session.model.name).inc(len(x))
        return y

    def _samples_counter(self, model: str) -> Any:  # cached labelled child: .labels() per message cost ~7%
        child = self._samples_children.get(model)
        if child is None:
            child = self._samples_children[model] = self.metrics.samples.labels(model)
        return child

    async def predict(self, request: pb.PredictRequest) -> pb.PredictResponse:
        """Whole sequences ``[B, T, F]`` from zero or given state; nothing is kept."""
        model = self.repository.get(request.model, request.version)
        self.check_samples(request.inputs)
        x, encoding = tensor_to_sequences(request.inputs, model.n_features)  # [B, T, F]
        b, t, _ = x.shape
        state, positions = self._initial_state(model, list(request.states), b)  # [B, *shape]
        if x.size > OFFLOAD_VALUES:  # same threshold as the batcher's worker thread
            y, final = await asyncio.to_thread(model.run_sequence, x, state)
        else:
            y, final = model.run_sequence(x, state)  # [B, T, O]
        if self.metrics is not None:
            self._samples_counter(model.name).inc(b * t)
        states = [encode_state(model, positions[i] + t, {k: v[i] for k, v in final.items()}) for i in range(b)]
        return pb.PredictResponse(model=model.name, version=model.version, outputs=array_to_tensor(y, encoding),
                                  states=states)

    # -- internals ----------------------------------------------------------
    def _initial_state(self, model: Model, blobs: list[bytes], batch: int) -> tuple[dict[str, np.ndarray], list[int]]:
        if not blobs:
            return model.zero_state(batch), [0] * batch
        if len(blobs) != batch:
            raise InvalidInput(f"`states` holds {len(blobs)} blob(s); give none or one per sequence ({batch})")
        decoded = [decode_state(blob) for blob in blobs]
        per = [d.for_model(model) for d in decoded]  # name -> [1, *shape]
        return {k: np.concatenate([p[k] for p in per]) for k in per[0]}, [d.position for d in decoded]

    def _idle(self, session_id: str) -> Session:
        if not session_id:
            raise InvalidInput("no session_id given")
        s = self.sessions.get(session_id)
        if s is None:
            raise NotFound(f"session {session_id} does not exist (closed, expired or never opened)")
        if s.busy:
            raise FailedPrecondition(f"session {session_id} is in use by a stream; "
                                     "use EXPORT_STATE / CLOSE inside that stream")
        return s

    def _evicted(self, n: int) -> None:
        if self.metrics is not None:
            self.metrics.evictions.inc(n)
