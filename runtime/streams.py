"""The eddy.v1 ``Stream`` protocol for one RPC, without gRPC.

:class:`StreamHandler` takes ``StreamRequest`` messages one at a time and
returns the ``StreamResponse`` for each, so the servicer only moves messages
and a test can drive the protocol without a socket:

- The first request must be ``open``. Anything else ends the RPC with
  FAILED_PRECONDITION (the request may be fine, the stream is just not open
  yet); an empty model name or a malformed version ends it with
  INVALID_ARGUMENT, an unknown model or version with NOT_FOUND. These are
  raised as :class:`~runtime.errors.EddyError`.
- Every later ``samples`` request gets one ``predictions`` response (offset =
  stream position before the message) or, if rejected, an in-band ``error``
  response; a rejected message leaves the state exactly as it was and the
  stream stays open. A second ``open`` or an empty request is rejected
  in-band the same way (FAILED_PRECONDITION, INVALID_ARGUMENT).

Anything else that goes wrong propagates as an ordinary exception (the
servicer turns it into INTERNAL).
"""

from __future__ import annotations

import asyncio
import time

from .converters import array_to_tensor, error_to_proto, tensor_to_samples
from .errors import EddyError, FailedPrecondition, InvalidInput
from .model import Stream
from .proto.eddy.v1 import inference_pb2 as pb
from .repository import ModelRepository

__all__ = ["OFFLOAD_VALUES", "StreamHandler"]

# Messages carrying more floats than this run in a worker thread so a big
# chunk does not stall every other stream on the event loop.
OFFLOAD_VALUES = 4096


class StreamHandler:
    """State and protocol of one ``Stream`` RPC. One message at a time."""

    def __init__(self, repository: ModelRepository) -> None:
        self._repository = repository
        self._stream: Stream | None = None
        self.model_name = ""  # as served (repository key)
        self.model_version = 0
        self.messages = 0  # requests handled, including rejected ones
        self.rejected = 0  # requests answered with an in-band error
        self._started = time.monotonic()

    @property
    def opened(self) -> bool:
        return self._stream is not None

    @property
    def position(self) -> int:
        """Samples consumed so far (0 before ``open``)."""
        return self._stream.position if self._stream is not None else 0

    def handle(self, request: pb.StreamRequest) -> pb.StreamResponse:
        """The response to one request.

        Raises :class:`EddyError` only for problems that end the RPC (see
        the module docstring); rejected samples come back as ``error``.
        """
        self.messages += 1
        if self._stream is None:
            return self._open(request)
        try:
            return self._samples(request, self._stream)
        except EddyError as e:
            self.rejected += 1
            return pb.StreamResponse(error=error_to_proto(e))

    async def handle_async(self, request: pb.StreamRequest) -> pb.StreamResponse:
        """:meth:`handle`, in a worker thread when the message is large."""
        if request.WhichOneof("kind") == "samples":
            t = request.samples
            if len(t.values) + len(t.raw) // 4 > OFFLOAD_VALUES:
                return await asyncio.to_thread(self.handle, request)
        return self.handle(request)

    def summary(self) -> str:
        """One log line's worth: model, samples, messages, duration."""
        took = time.monotonic() - self._started
        where = f"{self.model_name}/{self.model_version}" if self.opened else "(never opened)"
        return (f"stream {where}: {self.position} sample(s) in {self.messages} message(s), "
                f"{self.rejected} rejected, {took:.3f}s")

    def _open(self, request: pb.StreamRequest) -> pb.StreamResponse:
        kind = request.WhichOneof("kind")
        if kind != "open":
            got = f"`{kind}`" if kind else "an empty request"
            raise FailedPrecondition(f"the first message of a stream must be `open`, got {got}")
        name, version = request.open.model, request.open.version
        resolved = self._repository.resolve(name, version)
        model = self._repository.get(name, resolved)
        self._stream = model.stream()
        self.model_name, self.model_version = name, resolved
        return pb.StreamResponse(opened=pb.StreamOpened(
            model=name, version=resolved, features=model.features, targets=model.targets))

    def _samples(self, request: pb.StreamRequest, stream: Stream) -> pb.StreamResponse:
        kind = request.WhichOneof("kind")
        if kind == "open":
            raise FailedPrecondition(
                f"stream is already open on {self.model_name}/{self.model_version}; open a new stream instead")
        if kind != "samples":
            raise InvalidInput("request carries neither `open` nor `samples`")
        x, encoding = tensor_to_samples(request.samples, stream.model.n_features)  # [n, F]
        offset = stream.position
        y = stream.push(x)  # [n, O]; state advances only on success
        return pb.StreamResponse(predictions=pb.Predictions(offset=offset, outputs=array_to_tensor(y, encoding)))
