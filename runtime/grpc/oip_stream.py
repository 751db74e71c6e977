"""The Open Inference Protocol's ``ModelStreamInfer`` for one RPC, without a socket.

:class:`OipStreamHandler` takes ``ModelInferRequest`` messages and hands out
their answers, so the servicer only moves messages (inside the one stream
lifecycle, :mod:`~eddy.runtime.grpc.lifecycle`) and a test can drive the
protocol without a socket::

    handler = OipStreamHandler(servicer.infer)
    await handler.submit(request)            # starts it (after the previous request of its sequence)
    handler.end_input()                      # no more requests
    async for answer in handler.answers():   # serialized ModelStreamInferResponse bytes, or a message
        ...

- Each request runs as soon as it is submitted, so one stream can carry many
  sequences that batch together; requests of one sequence (the same
  ``sequence_id``, parsed once by
  :func:`~eddy.runtime.grpc.oip_codec.sequence_step`) run in the order
  submitted. Answers come out as they complete (clients match them by ``id``).
- A refused request (an :class:`~eddy.runtime.core.errors.EddyError`) is
  answered in-band: ``error_message``, with the request's model, version and
  ``id``; the stream goes on. Anything unexpected is answered INTERNAL with a
  generic message (traceback in the log).
- What one stream holds is bounded: at most ``max_held`` requests that are
  running or answered but not yet taken by :meth:`answers` (sent), and at
  most ``max_bytes`` of them (requests by their size, answers by theirs; one
  request always fits). :meth:`submit` waits for room, which stops the
  servicer reading, so gRPC's flow control pushes back on a client that does
  not read its answers; :meth:`held` says what is held (the server's seam for
  tests and operators: ``Server.gate.calls[i].held()``).
- :meth:`answers` ends once :meth:`end_input` was called and every submitted
  request is answered. :meth:`close` cancels what still runs (safe to call
  more than once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from eddy.v1 import oip_pb2 as pb

from ..core.errors import EddyError
from ..serving.config import ServeConfig
from ..serving.sequences import SequenceStep
from .lifecycle import Held
from .oip_codec import sequence_step, stream_response_bytes
from .status import to_status

__all__ = ["MAX_HELD", "Answer", "OipStreamHandler"]

MAX_HELD = 1024  # requests of one ModelStreamInfer running or answered and not yet sent; reading pauses past it

Answer = pb.ModelStreamInferResponse | bytes  # an error message, or a serialized answer (the hot path)
Infer = Callable[[pb.ModelInferRequest, SequenceStep], Awaitable[bytes]]  # serialized ModelInferResponse
Record = Callable[[str, str, float], None]  # (model, outcome, seconds) per answer


def _ignore(model: str, outcome: str, seconds: float) -> None:
    return None


class OipStreamHandler:
    """State and protocol of one ``ModelStreamInfer`` RPC: requests run concurrently, answers as they complete."""

    def __init__(self, infer: Infer, *, record: Record = _ignore, max_held: int = MAX_HELD,
                 max_bytes: int = 2 * ServeConfig.max_message_bytes) -> None:
        self._infer = infer  # runs one request of a sequence step; raises EddyError when it is refused
        self.record = record  # called once per answer: (model, outcome, seconds), e.g. for metrics
        self.max_held = max_held  # requests running or answered and not yet sent, at most
        self.max_bytes = max_bytes  # ... and their bytes at most (one request always fits)
        self._answers: asyncio.Queue[tuple[Answer, int] | None] = asyncio.Queue()  # (answer, its bytes)
        self._held = self._held_bytes = self._peak_bytes = 0
        self._room = asyncio.Event()  # set whenever an answer is taken
        self._full = False  # submit waits for room
        self._last: dict[str, asyncio.Task[None]] = {}  # sequence id -> its latest request's task (order)
        self._tasks: set[asyncio.Task[None]] = set()
        self._input_ended = False
        self.requests = 0  # requests submitted
        self.rejected = 0  # answered with an in-band error
        self._started = time.monotonic()

    def held(self) -> Held:
        """What the stream holds now: requests running or answered and not yet sent, their bytes, the peak."""
        return Held(self._held, self._held_bytes, self._peak_bytes, self._full)

    @property
    def running(self) -> int:
        """Requests submitted and not answered yet (being computed or waiting for their sequence)."""
        return len(self._tasks)

    def log_fields(self) -> dict[str, object]:
        """Fields of the stream's close log line."""
        return {"rpc": "ModelStreamInfer", "requests": self.requests, "rejected": self.rejected,
                "duration_s": round(time.monotonic() - self._started, 6)}

    async def submit(self, request: pb.ModelInferRequest) -> None:
        """Start ``request`` (after its sequence's previous request); first waits while the stream is full."""
        size = request.ByteSize()
        while self._held >= self.max_held or (self._held and self._held_bytes + size > self.max_bytes):
            self._full = True  # not reading: the client's sends wait on gRPC's flow control
            self._room.clear()
            await self._room.wait()
        self._full = False
        self._hold(1, size)
        self.requests += 1
        try:
            step: SequenceStep | EddyError = sequence_step(request.parameters)
        except EddyError as e:  # malformed sequence parameters: answered in-band, ordered after nothing
            step = e
        sid = step.sequence_id if isinstance(step, SequenceStep) else ""
        task = asyncio.get_running_loop().create_task(
            self._run(request, size, step, self._last.get(sid) if sid else None))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        if sid:
            self._last[sid] = task
            task.add_done_callback(lambda t, k=sid: self._last.pop(k, None) if self._last.get(k) is t else None)

    def end_input(self) -> None:
        """No more requests: :meth:`answers` ends once every submitted one is answered."""
        self._input_ended = True
        if not self._tasks:
            self._answers.put_nowait(None)

    async def answers(self) -> AsyncIterator[Answer]:
        """Each answer as it completes, until the input ended and everything submitted is answered."""
        while (item := await self._answers.get()) is not None:
            answer, size = item
            self._hold(-1, -size)  # from here on gRPC holds it (until the client reads it)
            self._room.set()
            yield answer

    async def close(self) -> None:
        """Cancel the requests still running (their sessions are released) and wait for them."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals ----------------------------------------------------------
    def _hold(self, messages: int, size: int) -> None:
        self._held += messages
        self._held_bytes += size
        if self._held_bytes > self._peak_bytes:
            self._peak_bytes = self._held_bytes

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._input_ended and not self._tasks:
            self._answers.put_nowait(None)

    async def _run(self, request: pb.ModelInferRequest, size: int, step: SequenceStep | EddyError,
                   after: asyncio.Task[None] | None) -> None:
        if after is not None and not after.done():
            await asyncio.wait((after,))  # its outcome is its own answer's business
        t0 = time.perf_counter()
        answer: Answer
        try:
            if isinstance(step, EddyError):
                raise step
            answer = stream_response_bytes(await self._infer(request, step))
            outcome, answer_size = "OK", len(answer)
        except Exception as e:
            status, message = to_status(e, "ModelStreamInfer")
            answer = pb.ModelStreamInferResponse(error_message=message, infer_response=pb.ModelInferResponse(
                model_name=request.model_name, model_version=request.model_version, id=request.id))
            outcome, answer_size = status.name, answer.ByteSize()
            self.rejected += 1
        self.record(request.model_name, outcome, time.perf_counter() - t0)
        self._hold(0, answer_size - size)  # the request is let go, its answer queued
        self._answers.put_nowait((answer, answer_size))
