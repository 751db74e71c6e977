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
- At most :data:`MAX_IN_FLIGHT` requests run at once: :meth:`submit` waits
  for room, which stops the servicer reading, so gRPC's flow control pushes
  back on the client.
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
from ..serving.sequences import SequenceStep
from .oip_codec import sequence_step, stream_response_bytes
from .status import to_status

__all__ = ["MAX_IN_FLIGHT", "Answer", "OipStreamHandler"]

MAX_IN_FLIGHT = 1024  # requests of one ModelStreamInfer running at once; reading pauses past it

Answer = pb.ModelStreamInferResponse | bytes  # an error message, or a serialized answer (the hot path)
Infer = Callable[[pb.ModelInferRequest, SequenceStep], Awaitable[bytes]]  # serialized ModelInferResponse
Record = Callable[[str, str, float], None]  # (model, outcome, seconds) per answer


def _ignore(model: str, outcome: str, seconds: float) -> None:
    return None


class OipStreamHandler:
    """State and protocol of one ``ModelStreamInfer`` RPC: requests run concurrently, answers as they complete."""

    def __init__(self, infer: Infer, *, record: Record = _ignore) -> None:
        self._infer = infer  # runs one request of a sequence step; raises EddyError when it is refused
        self.record = record  # called once per answer: (model, outcome, seconds), e.g. for metrics
        self._answers: asyncio.Queue[Answer | None] = asyncio.Queue()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._last: dict[str, asyncio.Task[None]] = {}  # sequence id -> its latest request's task (order)
        self._tasks: set[asyncio.Task[None]] = set()
        self._input_ended = False
        self.requests = 0  # requests submitted
        self.rejected = 0  # answered with an in-band error
        self._started = time.monotonic()

    @property
    def running(self) -> int:
        """Requests submitted and not answered yet (being computed or waiting for their sequence)."""
        return len(self._tasks)

    def log_fields(self) -> dict[str, object]:
        """Fields of the stream's close log line."""
        return {"rpc": "ModelStreamInfer", "requests": self.requests, "rejected": self.rejected,
                "duration_s": round(time.monotonic() - self._started, 6)}

    async def submit(self, request: pb.ModelInferRequest) -> None:
        """Start ``request`` (after its sequence's previous request); waits while :data:`MAX_IN_FLIGHT` run."""
        await self._slots.acquire()
        self.requests += 1
        try:
            step: SequenceStep | EddyError = sequence_step(request.parameters)
        except EddyError as e:  # malformed sequence parameters: answered in-band, ordered after nothing
            step = e
        sid = step.sequence_id if isinstance(step, SequenceStep) else ""
        task = asyncio.get_running_loop().create_task(self._run(request, step, self._last.get(sid) if sid else None))
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
        while (answer := await self._answers.get()) is not None:
            yield answer

    async def close(self) -> None:
        """Cancel the requests still running (their sessions are released) and wait for them."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals ----------------------------------------------------------
    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._input_ended and not self._tasks:
            self._answers.put_nowait(None)

    async def _run(self, request: pb.ModelInferRequest, step: SequenceStep | EddyError,
                   after: asyncio.Task[None] | None) -> None:
        try:
            if after is not None and not after.done():
                await asyncio.wait((after,))  # its outcome is its own answer's business
            t0 = time.perf_counter()
            answer: Answer
            try:
                if isinstance(step, EddyError):
                    raise step
                answer = stream_response_bytes(await self._infer(request, step))
                outcome = "OK"
            except Exception as e:
                status, message = to_status(e, "ModelStreamInfer")
                answer = pb.ModelStreamInferResponse(error_message=message, infer_response=pb.ModelInferResponse(
                    model_name=request.model_name, model_version=request.model_version, id=request.id))
                outcome = status.name
                self.rejected += 1
            self.record(request.model_name, outcome, time.perf_counter() - t0)
            self._answers.put_nowait(answer)
        finally:
            self._slots.release()
