"""The eddy.v1 ``Fleet`` protocol for one RPC, without a socket: many sessions per message.

:class:`FleetHandler` takes ``FleetRequest`` messages one at a time and
returns the ``FleetResponse`` for each (as
:class:`~eddy.runtime.grpc.stream_handler.StreamHandler` does for ``Stream``);
the sessions, batching and rules are the data plane's
:class:`~eddy.runtime.serving.fleet.Fleet`:

- The first request must be ``open`` (model, version). Anything else, or a
  model or version that is not served, ends the RPC with its status
  (FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND), raised as
  :class:`~eddy.runtime.core.errors.EddyError`.
- Every later ``samples`` request gets one ``predictions`` response: offsets
  ``[N]`` (little-endian uint64 bytes), outputs ``[N, k, O]`` in the request's encoding, and an entry in
  ``errors`` (row, status, message) for each session that failed (its rows
  NaN, its state unchanged). A message refused as a whole (bad tensor, ids
  named twice, a limit) gets an in-band ``error`` and changes nothing; the
  stream stays open.

The handler holds its sessions while the stream lives; the servicer must call
:meth:`FleetHandler.release` in a ``finally``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from eddy.v1 import inference_pb2 as pb

from ..core.errors import EddyError, FailedPrecondition, InvalidInput
from ..serving.dataplane import DataPlane
from ..serving.fleet import Fleet
from .status import error_to_proto, status_code
from .tensors import array_to_tensor, tensor_to_fleet

__all__ = ["FleetHandler"]

_LE_U64 = np.dtype("<u8")  # wire dtype of FleetPredictions.offsets
_NATIVE_LE = sys.byteorder == "little"  # float32 arrays are then wire bytes as they are


class FleetHandler:
    """State and protocol of one ``Fleet`` RPC. One message at a time."""

    def __init__(self, plane: DataPlane, *, client_limit: int | None = None, tenant: str = "") -> None:
        self._plane = plane
        self.client_limit = client_limit  # bytes the client receives at most (None: the server's limit)
        self.tenant = tenant  # the authenticated caller ("" without authentication)
        self.fleet: Fleet | None = None
        self.model_name = ""  # as requested (repository key)
        self.model_version = 0
        self.rejected = 0  # messages answered with an in-band error
        self.failed = 0  # entries answered with an error
        self._started = time.monotonic()

    @property
    def opened(self) -> bool:
        return self.fleet is not None

    async def handle(self, request: pb.FleetRequest) -> pb.FleetResponse:
        """The response to one request (raises :class:`EddyError` only for problems that end the RPC)."""
        if self.fleet is None:
            return self._open(request)
        try:
            return await self._next(request, self.fleet)
        except EddyError as e:
            self.rejected += 1
            self.fleet.forget_roster()  # the next message must name its sessions (see FleetSamples.session_ids)
            return pb.FleetResponse(error=error_to_proto(e))

    async def release(self) -> None:
        """Let go of every session (idle, resumable); safe to call more than once."""
        if self.fleet is not None:
            await self.fleet.release()

    def log_fields(self) -> dict[str, object]:
        """Fields of the stream's close log line."""
        f = self.fleet
        return {"model": self.model_name or "-", "version": self.model_version, "sessions": f.held if f else 0,
                "samples": f.samples if f else 0, "messages": f.messages if f else 0, "rejected": self.rejected,
                "failed": self.failed, "duration_s": round(time.monotonic() - self._started, 6)}

    # -- internals ----------------------------------------------------------
    def _check(self, k: int) -> None:
        self._plane.check_samples(k, per_session=True)  # before decoding

    def _open(self, request: pb.FleetRequest) -> pb.FleetResponse:
        kind = request.WhichOneof("kind")
        if kind != "open":
            got = f"`{kind}`" if kind else "an empty request"
            raise FailedPrecondition(f"the first message of a fleet must be `open`, got {got}")
        o = request.open
        self.fleet = fleet = self._plane.open_fleet(o.model, o.version, tenant=self.tenant,
                                                    client_limit=self.client_limit, intervals=tuple(o.intervals))
        m = fleet.model
        self.model_name, self.model_version = o.model, m.version
        return pb.FleetResponse(opened=pb.FleetOpened(model=o.model, version=m.version, features=m.features,
                                                      targets=m.targets, interval_levels=m.interval_levels))

    async def _next(self, request: pb.FleetRequest, fleet: Fleet) -> pb.FleetResponse:
        kind = request.WhichOneof("kind")
        if kind == "open":
            raise FailedPrecondition("the fleet is already open; open a new stream for another model")
        if kind != "samples":
            raise InvalidInput("empty request: carries no `samples`")
        s = request.samples
        x, encoding = tensor_to_fleet(s.samples, fleet.model.n_features, check=self._check)  # [N, k, F]
        answer = await fleet.step(list(s.session_ids) if s.session_ids else None, x, resume=s.resume)
        response = pb.FleetResponse()
        p = response.predictions  # filled in place: no per-session Python objects on the way
        p.offsets = answer.offsets.astype(_LE_U64, copy=False).tobytes()
        if encoding == "raw" and _NATIVE_LE:  # the hot path: the outputs' bytes as they are
            p.outputs.shape[:] = answer.y.shape
            p.outputs.raw = answer.y.tobytes()
        else:
            p.outputs.CopyFrom(array_to_tensor(answer.y, encoding))
        if fleet.intervals and answer.bounds is not None:  # [N, k, 2L * O]: per level, lower then upper
            o, levels = fleet.model.n_targets, fleet.model.interval_levels
            for i in fleet.intervals:
                p.intervals.add(level=levels[i], lower=array_to_tensor(answer.bounds[..., 2 * i * o:(2 * i + 1) * o],
                                                                       encoding),
                                upper=array_to_tensor(answer.bounds[..., (2 * i + 1) * o:(2 * i + 2) * o], encoding))
        if answer.errors:
            self.failed += len(answer.errors)
            p.errors.extend(pb.FleetError(index=i, code=status_code(e).value[0], message=e.message)
                            for i, e in answer.errors.items())
        return response
