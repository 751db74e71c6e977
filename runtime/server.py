"""``eddy serve``: the grpc.aio server with the eddy.v1 and health services.

One asyncio event loop serves every stream (DESIGN.md: grpc.aio is the faster
Python stack and lets a later batcher see every pending step). The standard
``grpc.health.v1.Health`` service runs on the same port and reports SERVING
for the overall server (``""``) and for ``eddy.v1.Inference``.

In-process use (tests, embedding)::

    server, port = await start_server("models", port=0)   # 0: pick a free port
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .proto.eddy.v1 import inference_pb2_grpc as pb_grpc
from .repository import ModelRepository
from .servicer import SERVICE_NAME, InferenceServicer

__all__ = ["DEFAULT_GRACE", "DEFAULT_HOST", "DEFAULT_PORT", "Server", "format_address", "serve", "start_server"]

log = logging.getLogger("eddy.server")

DEFAULT_HOST = "127.0.0.1"  # loopback unless asked otherwise
DEFAULT_PORT = 50051
DEFAULT_GRACE = 5.0  # seconds open RPCs get to finish on shutdown

_SERVING = health_pb2.HealthCheckResponse.SERVING


def format_address(host: str, port: int) -> str:
    """``host:port``, bracketing IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class Server:
    """An eddy gRPC server over one :class:`ModelRepository`. Create, then ``await start()``."""

    def __init__(self, repository: ModelRepository, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.repository = repository
        self.host = host
        self.requested_port = port
        self.port = 0  # the bound port, once started
        self.health = health.aio.HealthServicer()
        self._server = grpc.aio.server()
        pb_grpc.add_InferenceServicer_to_server(InferenceServicer(repository), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    async def start(self) -> int:
        """Bind and start serving; returns the bound port. Raises ``OSError`` if binding fails."""
        target = format_address(self.host, self.requested_port)
        try:
            port = self._server.add_insecure_port(target)
        except RuntimeError as e:  # grpc raises RuntimeError("Failed to bind ...")
            raise OSError(f"cannot listen on {target}: {e}") from None
        if port == 0:
            raise OSError(f"cannot listen on {target} (address in use or not available)")
        self.port = port
        await self._server.start()
        for service in ("", SERVICE_NAME):
            await self.health.set(service, _SERVING)
        log.info("listening on %s", self.address)
        return port

    async def stop(self, grace: float | None = DEFAULT_GRACE) -> None:
        """Report NOT_SERVING, refuse new RPCs, give open ones ``grace`` seconds, then stop."""
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


async def start_server(
    models: ModelRepository | str | Path, host: str = DEFAULT_HOST, port: int = 0
) -> tuple[Server, int]:
    """Start a server in the running event loop; returns it and its bound port."""
    repository = models if isinstance(models, ModelRepository) else ModelRepository(models)
    server = Server(repository, host, port)
    return server, await server.start()


def serve(models_dir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          *, grace: float = DEFAULT_GRACE) -> int:
    """Serve ``models_dir`` until SIGINT/SIGTERM; returns an exit status.

    Prints ``eddy: serving N model(s) on HOST:PORT`` on stdout once the
    server accepts connections, with the bound port (so ``--port 0`` can be
    read by scripts). Raises :class:`~runtime.errors.NotFound` if
    ``models_dir`` does not exist and ``OSError`` if the port cannot be bound.
    """
    repository = ModelRepository(models_dir)
    return asyncio.run(_serve(repository, host, port, grace))


async def _serve(repository: ModelRepository, host: str, port: int, grace: float) -> int:
    server = Server(repository, host, port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"eddy: serving {len(repository)} model(s) on {server.address}", flush=True)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print(f"eddy: shutting down (grace {grace:g}s)", file=sys.stderr, flush=True)
    await server.stop(grace)
    return 0
