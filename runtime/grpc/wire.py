"""Registering eddy.v1.Inference so that malformed protobuf is a client fault, not a server error.

grpc's generated ``add_InferenceServicer_to_server`` parses requests with
``FromString``; bytes that do not parse raise inside grpc, which answers
UNKNOWN with the parser's text and logs a traceback per request. Here every
request deserializer returns a :class:`Malformed` marker instead, and the
servicer answers it with INVALID_ARGUMENT and a short message (see
:func:`is_malformed`), logged through a :class:`RateLimitedLog` without a
traceback: a client that sends garbage in a loop cannot fill the log.
:class:`MalformedGuard` does the same for every other service on the port
(the Open Inference Protocol, health, reflection).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import message_factory

from eddy.v1 import inference_pb2 as pb

__all__ = ["Malformed", "MalformedGuard", "RateLimitedLog", "add_inference_service", "is_malformed", "safe_parser"]

_SERVICE = pb.DESCRIPTOR.services_by_name["Inference"]


class Malformed:
    """Stands for a request whose bytes did not parse as ``type_name``."""

    __slots__ = ("size", "type_name")

    def __init__(self, type_name: str, size: int) -> None:
        self.type_name = type_name
        self.size = size

    @property
    def message(self) -> str:
        return f"malformed request: {self.size} byte(s) do not parse as {self.type_name}"


def is_malformed(request: object) -> bool:
    """True for the marker a bad request's bytes became."""
    return type(request) is Malformed


def safe_parser(cls: Any, name: str = "") -> Callable[[bytes], Any]:
    """A request deserializer for message class ``cls`` that returns a :class:`Malformed` marker instead of raising.

    ``name``: the message name the marker reports (default: ``cls``'s full name). Handlers registered with
    it handle the marker themselves; :class:`MalformedGuard` leaves them alone.
    """
    parse, name = cls.FromString, name or cls.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:  # DecodeError, RecursionError (deep nesting), anything the parser raises
            return Malformed(name, len(data))

    deserialize.handles_malformed = True  # type: ignore[attr-defined]

    return deserialize


def add_inference_service(servicer: object, server: grpc.aio.Server) -> None:
    """Register ``servicer``'s eddy.v1.Inference methods with parse-safe request deserializers."""
    handlers = {}
    for method in _SERVICE.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        kind = {(False, False): grpc.unary_unary_rpc_method_handler,
                (False, True): grpc.unary_stream_rpc_method_handler,
                (True, False): grpc.stream_unary_rpc_method_handler,
                (True, True): grpc.stream_stream_rpc_method_handler}[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(getattr(servicer, method.name), request_deserializer=safe_parser(request_cls),
                                     response_serializer=response_cls.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(_SERVICE.full_name, handlers)


class RateLimitedLog:
    """At most ``burst`` lines per ``window`` seconds per key; then one line saying how many were dropped."""

    def __init__(self, logger: logging.Logger, burst: int = 5, window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.burst, self.window, self.clock = logger, burst, window, clock
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window start, lines in it)

    def warning(self, key: str, msg: str, *args: object) -> None:
        """Log ``msg % args`` at WARNING unless ``key`` already used its burst in this window."""
        self.log(logging.WARNING, key, msg, *args)

    def error(self, key: str, msg: str, *args: object, exc_info: BaseException | None = None) -> None:
        """Log ``msg % args`` (and ``exc_info``'s traceback) at ERROR unless ``key`` used its burst."""
        self.log(logging.ERROR, key, msg, *args, exc_info=exc_info)

    def log(self, level: int, key: str, msg: str, *args: object, exc_info: BaseException | None = None) -> None:
        """Log ``msg % args`` at ``level`` unless ``key`` already used its burst in this window."""
        now = self.clock()
        start, n = self._windows.get(key, (now, 0))
        if now - start >= self.window:
            if n > self.burst:
                self.logger.warning("%s: %d similar line(s) suppressed in the last %.0fs", key, n - self.burst,
                                    now - start)
            start, n = now, 0
        n += 1
        self._windows[key] = (start, n)
        if n <= self.burst:
            self.logger.log(level, msg, *args, exc_info=exc_info)
        if len(self._windows) > 1024:  # keys are few (method names, codes); never let them grow unbounded
            self._windows.clear()


class MalformedGuard:
    """Parse-safe deserializers for every other service on the port (OIP, health, reflection).

    A request whose bytes do not parse ends its RPC with INVALID_ARGUMENT and a
    short message (logged rate-limited, no traceback) instead of grpc's
    UNKNOWN with the parser's text. Handlers registered with a
    :func:`safe_parser` (eddy.v1.Inference, OIP's ModelStreamInfer) handle
    the marker themselves, so they are left alone here.

    The handlers are wrapped once, when they are registered through
    :meth:`registrar`, not per call: a grpc.aio server interceptor, even one
    that passes every call through, cost 12-14 % of a minimal server's unary
    throughput here (bench/oip_ceiling.py --interceptor).
    """

    def __init__(self, log: RateLimitedLog) -> None:
        self._log = log

    def registrar(self, server: grpc.aio.Server) -> _GuardedRegistrar:
        """What to pass as ``server`` to a generated ``add_XServicer_to_server``: it registers guarded handlers."""
        return _GuardedRegistrar(server, self)

    def wrap(self, method: str, handler: Any) -> Any:
        """``handler`` (an ``RpcMethodHandler`` of ``/pkg.Service/Method``) with a parse-safe deserializer."""
        if handler is None or handler.request_deserializer is None or \
                getattr(handler.request_deserializer, "handles_malformed", False):
            return handler
        parse = handler.request_deserializer

        def deserialize(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception:
                return Malformed(method.rsplit("/", 1)[-1] + " request", len(data))

        async def refuse(request: Malformed, context: grpc.aio.ServicerContext) -> None:
            self._log.warning("malformed", "%s: %s (peer %s)", method, request.message, context.peer())
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)

        async def checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for r in requests:
                if is_malformed(r):
                    await refuse(r, context)
                yield r

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if is_malformed(request):
                    await refuse(request, context)
                return await inner_uu(request, context)

            return handler._replace(request_deserializer=deserialize, unary_unary=unary_unary)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream
            if not inspect.isasyncgenfunction(inner_us):  # reader/writer style (context.write), e.g. Health.Watch
                async def unary_stream_rw(request: Any, context: grpc.aio.ServicerContext) -> Any:
                    if is_malformed(request):
                        await refuse(request, context)
                    return await inner_us(request, context)

                return handler._replace(request_deserializer=deserialize, unary_stream=unary_stream_rw)

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if is_malformed(request):
                    await refuse(request, context)
                async for r in inner_us(request, context):
                    yield r

            return handler._replace(request_deserializer=deserialize, unary_stream=unary_stream)
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            async def stream_unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                return await inner_su(checked(requests, context), context)

            return handler._replace(request_deserializer=deserialize, stream_unary=stream_unary)
        inner_ss = handler.stream_stream
        if not inspect.isasyncgenfunction(inner_ss):  # reader/writer style
            async def stream_stream_rw(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
                return await inner_ss(checked(requests, context), context)

            return handler._replace(request_deserializer=deserialize, stream_stream=stream_stream_rw)

        async def stream_stream(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for r in inner_ss(checked(requests, context), context):
                yield r

        return handler._replace(request_deserializer=deserialize, stream_stream=stream_stream)


class _GuardedRegistrar:
    """Stands in for the server while services register: every handler is wrapped by the guard first."""

    def __init__(self, server: grpc.aio.Server, guard: MalformedGuard) -> None:
        self._server, self._guard = server, guard

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_GuardedGeneric(h, self._guard) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self._server.add_registered_method_handlers(
            service, {name: self._guard.wrap(f"/{service}/{name}", h) for name, h in handlers.items()})


class _GuardedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose method handlers come out wrapped (once per method)."""

    def __init__(self, inner: grpc.GenericRpcHandler, guard: MalformedGuard) -> None:
        self._inner, self._guard = inner, guard
        self._wrapped: dict[str, tuple[Any, Any]] = {}  # method -> (inner handler, wrapped)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            if len(self._wrapped) > 256:  # methods are few; never let an odd handler grow this
                self._wrapped.clear()
            cached = self._wrapped[method] = (handler, self._guard.wrap(method, handler))
        return cached[1]

