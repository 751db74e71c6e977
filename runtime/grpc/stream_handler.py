"""The eddy.v1 ``Stream`` protocol for one RPC, without a socket.

:class:`StreamHandler` takes ``StreamRequest`` messages one at a time and
returns the ``StreamResponse`` for each, so the servicer only moves messages
and a test can drive the protocol without a socket:

- The first request must be ``open``. Anything else ends the RPC with
  FAILED_PRECONDITION (the request may be fine, the stream is just not open
  yet). A session that cannot be opened ends it with the reason's status:
  INVALID_ARGUMENT (no model name, bad version, bad session id, corrupted
  state bytes), NOT_FOUND (unknown model or version, ``resume`` of an unknown
  session), FAILED_PRECONDITION (session busy in another stream, session or
  state bytes of another model or version), RESOURCE_EXHAUSTED (session
  limit). These are raised as :class:`~eddy.runtime.core.errors.EddyError`.
- Every later ``samples`` request gets one ``predictions`` response (offset =
  session position before the message) and every ``control`` request one
  ``control_done``; a rejected request gets an in-band ``error`` response,
  leaves the session exactly as it was, and the stream stays open.
- ``control`` CLOSE deletes the session; :attr:`StreamHandler.finished`
  then tells the servicer to end the RPC.

The handler holds its session while the stream lives; the servicer must
call :meth:`StreamHandler.release` in a ``finally`` so a cancelled or failed
stream leaves the session idle and resumable. Anything unexpected
propagates as an ordinary exception (the servicer turns it into INTERNAL).
"""

from __future__ import annotations

import time

from eddy.v1 import inference_pb2 as pb

from ..core.errors import EddyError, FailedPrecondition, InvalidInput
from ..serving.dataplane import DataPlane
from ..serving.sessions import Session
from .status import error_to_proto
from .tensors import array_to_tensor, one_raw_sample, tensor_to_samples

__all__ = ["StreamHandler"]

_Action = pb.Control.Action


class StreamHandler:
    """State and protocol of one ``Stream`` RPC. One message at a time."""

    def __init__(self, plane: DataPlane, *, client_limit: int | None = None, tenant: str = "") -> None:
        self._plane = plane
        self.client_limit = client_limit  # bytes the client receives at most (None: the server's limit)
        self.tenant = tenant  # the authenticated caller ("" without authentication)
        self.session: Session | None = None
        self.finished = False  # the session was closed: the RPC should end
        self.resumed = False
        self.model_name = ""  # as requested (repository key)
        self.model_version = 0
        self.messages = 0  # requests handled, including rejected ones
        self.rejected = 0  # requests answered with an in-band error
        self.samples = 0  # samples predicted by this stream
        self.started_at = 0  # session position when this stream opened it
        self.session_id = "-"
        self._started = time.monotonic()
        self._features = 0  # the open session's feature count
        self._index: tuple[int, ...] = ()  # the calibrated levels (positions) asked for at open

    @property
    def opened(self) -> bool:
        return self.session is not None or self.finished

    @property
    def position(self) -> int:
        """The session's position (samples consumed since it started or was reset)."""
        return self.session.position if self.session is not None else 0

    async def handle(self, request: pb.StreamRequest) -> pb.StreamResponse:
        """The response to one request.

        Raises :class:`EddyError` only for problems that end the RPC (see
        the module docstring); rejected requests come back as ``error``.
        """
        self.messages += 1
        if not self.opened:
            return await self._open(request)
        try:
            return await self._next(request)
        except EddyError as e:
            self.rejected += 1
            return pb.StreamResponse(error=error_to_proto(e))

    async def release(self) -> None:
        """Let go of the session (idle, resumable); safe to call more than once."""
        if self.session is not None:
            session, self.session = self.session, None
            await self._plane.release(session)

    def log_fields(self) -> dict[str, object]:
        """Fields of the stream's close log line."""
        return {"session": self.session_id, "model": self.model_name or "-", "version": self.model_version,
                "resumed": self.resumed, "start": self.started_at, "samples": self.samples,
                "messages": self.messages, "rejected": self.rejected,
                "duration_s": round(time.monotonic() - self._started, 6)}

    # -- internals ----------------------------------------------------------
    async def _open(self, request: pb.StreamRequest) -> pb.StreamResponse:
        kind = request.WhichOneof("kind")
        if kind != "open":
            got = f"`{kind}`" if kind else "an empty request"
            raise FailedPrecondition(f"the first message of a stream must be `open`, got {got}")
        o = request.open
        levels = tuple(o.intervals)
        if levels:  # refused before a session is opened or resumed: a refusal changes nothing
            self._plane.model(o.model, o.version)._interval_index(levels)
        session, existed = await self._plane.open_session(o.model, o.version, o.session_id, o.state,
                                                          resume=o.resume, owner=self, tenant=self.tenant)
        if levels:
            try:
                self._index = session.model._interval_index(levels)  # a resumed session may run another version
            except EddyError:
                await (self._plane.release(session) if existed else self._plane.close_session(session))
                raise
        self.session, self.resumed = session, existed
        self._features = session.model.n_features
        self.session_id, self.started_at = session.id, session.position
        self.model_name, self.model_version = request.open.model, session.model.version
        m = session.model
        return pb.StreamResponse(opened=pb.StreamOpened(
            model=request.open.model, version=m.version, features=m.features, targets=m.targets,
            session_id=session.id, position=session.position, resumed=existed, interval_levels=m.interval_levels))

    async def _next(self, request: pb.StreamRequest) -> pb.StreamResponse:
        kind = request.WhichOneof("kind")
        session = self.session
        if kind == "open":
            raise FailedPrecondition(f"stream is already open on session {self.session_id}; "
                                     "open a new stream instead")
        if session is None:
            raise FailedPrecondition(f"session {self.session_id} was closed; open a new stream")
        if kind == "samples":
            tensor = request.samples
            x = one_raw_sample(tensor, self._features)  # the common case: [1, F], no copy
            if x is None:
                x, encoding = tensor_to_samples(tensor, self._features, check=self._plane.check_samples)  # [n, F]
            else:
                encoding = "raw"
            offset = session.position
            if self._index:
                f = await self._plane.forecast(session, x, self._index, client_limit=self.client_limit)
                self.samples += len(x)
                return pb.StreamResponse(predictions=pb.Predictions(
                    offset=offset, outputs=array_to_tensor(f.y, encoding),
                    intervals=[pb.Interval(level=level, lower=array_to_tensor(f.lower[level], encoding),
                                           upper=array_to_tensor(f.upper[level], encoding)) for level in f.lower]))
            y = await self._plane.push(session, x, client_limit=self.client_limit)  # [n, O]; advances on success
            self.samples += len(x)
            return pb.StreamResponse(predictions=pb.Predictions(offset=offset, outputs=array_to_tensor(y, encoding)))
        if kind == "control":
            return await self._control(request.control.action, session)
        raise InvalidInput("empty request: carries neither `samples` nor `control`")

    async def _control(self, action: int, session: Session) -> pb.StreamResponse:
        plane = self._plane
        state, position = b"", session.position
        if action == _Action.RESET:
            await plane.reset(session)
        elif action == _Action.EXPORT_STATE:
            state = plane.export_state(session, self.tenant)
        elif action == _Action.CLOSE:
            await plane.close_session(session)
            self.session, self.finished = None, True
        else:
            raise InvalidInput(f"control action {action} is not one of RESET, CLOSE, EXPORT_STATE")
        if action != _Action.CLOSE:
            position = session.position
        return pb.StreamResponse(control_done=pb.ControlDone(action=action, position=position, state=state))
