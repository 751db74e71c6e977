"""``eddy serve``: the grpc.aio server with eddy.v1, health, reflection and metrics.

One asyncio event loop serves every stream (docs/architecture.md: grpc.aio is the faster
Python stack, and the batcher sees every pending step). On the same port:

- ``eddy.v1.Inference`` (:mod:`~eddy.runtime.grpc.servicer`);
- ``inference.GRPCInferenceService``, the Open Inference Protocol (KServe v2)
  with Triton's sequence extension (:mod:`~eddy.runtime.grpc.oip`), over the
  same data plane: tritonclient and other KServe clients work unchanged;
- ``grpc.health.v1.Health``: SERVING for the overall server (``""``), for
  ``eddy.v1.Inference``, ``inference.GRPCInferenceService`` and for each model as ``eddy.v1.Inference/<model>``;
  all NOT_SERVING as soon as shutdown starts;
- gRPC server reflection, so ``grpcurl -plaintext HOST:PORT list`` works (both inference services).

Prometheus metrics (:mod:`~eddy.runtime.serving.prometheus`) are kept and
served over HTTP on ``ServeConfig.metrics_port`` when it is set; otherwise
the server records nothing and prometheus_client is not imported.

Shutdown (:meth:`Server.stop`, SIGINT/SIGTERM under :func:`serve`): health
goes NOT_SERVING first, new RPCs are refused (UNAVAILABLE), open streams keep
being answered until they end or ``grace`` seconds pass, then the rest are
cancelled (their sessions stay resumable until the process exits).

In-process use (tests, benchmarks, embedding)::

    server, port = await start_server("models", port=0, config=ServeConfig(max_batch=64))
    ...
    await server.stop(grace=None)   # None: cancel open RPCs at once
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer as AsyncReflectionServicer  # what it registers on aio

from ..serving.config import DEFAULT_HOST, DEFAULT_PORT, ServeConfig
from ..serving.dataplane import DataPlane
from ..serving.metrics import Metrics
from ..serving.repository import ModelRepository
from .lifecycle import StreamGate
from .oip import OIP_SERVICE, OipServicer
from .oip_service import add_oip_to_server, reflection_pool
from .security import AuthInterceptor, Security, server_credentials
from .servicer import SERVICE_NAME, InferenceServicer
from .wire import MalformedGuard, RateLimitedLog, add_inference_service

__all__ = ["DEFAULT_GRACE", "DEFAULT_HOST", "DEFAULT_PORT", "Server", "format_address", "health_service",
           "serve", "start_server"]

log = logging.getLogger("eddy.server")

DEFAULT_GRACE = ServeConfig.grace  # seconds open RPCs get to finish on shutdown

_SERVING = health_pb2.HealthCheckResponse.SERVING
_HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def format_address(host: str, port: int) -> str:
    """``host:port``, bracketing IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def health_service(model: str) -> str:
    """The grpc.health.v1 service name reporting one model: ``eddy.v1.Inference/<model>``."""
    return f"{SERVICE_NAME}/{model}"


class Server:
    """An eddy gRPC server over one :class:`ModelRepository`. Create, then ``await start()``."""

    def __init__(self, repository: ModelRepository, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 config: ServeConfig | None = None, security: Security | None = None) -> None:
        self.repository = repository
        self.config = config or ServeConfig()
        self.security = security or Security()
        self.security.check_bind(host, self.config.metrics_bind)  # InsecureBind (an OSError) before anything starts
        self.host = host
        self.requested_port = port
        self.port = 0  # the bound port, once started
        self.metrics_port: int | None = None  # the bound metrics port, once started (if enabled)
        self.metrics = _metrics(self.config)
        self.plane = DataPlane(repository, self.config, self.metrics, state_keys=self.security.state_keys)
        self.health = health.aio.HealthServicer()
        tokens = self.security.tokens
        # No interceptor unless tokens need one: even a pass-through interceptor costs grpc.aio 12-14 % per call.
        interceptors = None if tokens is None else [AuthInterceptor(tokens, self.metrics.unauthenticated)]
        self._server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.max_receive_message_length", self.config.max_message_bytes),
            ("grpc.max_send_message_length", self.config.max_message_bytes),  # answers are sized to fit first
            # Ping every connection with open streams so a peer that vanished without closing (power loss, NAT
            # timeout, a cable pulled) is detected within keepalive_time + keepalive_timeout (measured:
            # bench/bench_dead_peer.py) and its streams' sessions become resumable again; keep pinging while
            # the peer sends no data (gRPC's default stops after 2 pings).
            ("grpc.keepalive_time_ms", int(self.config.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.config.keepalive_timeout * 1000)),
            ("grpc.http2.ping_timeout_ms", int(self.config.keepalive_timeout * 1000)),  # else 60 s (measured)
            ("grpc.http2.max_pings_without_data", 0),
            # gRPC sets SO_REUSEPORT by default: a second server on a port in use would start and silently
            # take part of its connections. Only --workers processes share a port on purpose.
            ("grpc.so_reuseport", int(self.config.share_port)),
        ])
        # Every streaming call on the port, both protocols: one --max-streams, idle timeout, list of open calls
        self.gate = gate = StreamGate.from_config(self.config, self.metrics)
        add_inference_service(InferenceServicer(self.plane, gate), self._server)  # malformed -> INVALID_ARGUMENT
        guarded = MalformedGuard(RateLimitedLog(log)).registrar(self._server)  # the others: malformed -> same
        add_oip_to_server(OipServicer(self.plane, ready=lambda: not self._stopping, gate=gate), guarded)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, guarded)
        if self.security.reflection:  # from a pool of its own, with OIP under its wire name (oip_service.py)
            services = [SERVICE_NAME, OIP_SERVICE, _HEALTH_SERVICE, reflection.SERVICE_NAME]
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server(  # what enable_server_reflection does
                AsyncReflectionServicer(services, pool=reflection_pool(services)), guarded)
        self._stopping = False
        self._poller: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    async def start(self) -> int:
        """Bind and start serving; returns the bound port.

        Raises ``OSError`` if binding fails and :class:`~eddy.runtime.core.errors.Unavailable`
        if a configured session store cannot be reached.
        """
        await self.plane.check()  # a shared store that is down: refuse to start, say so
        target = format_address(self.host, self.requested_port)
        tls = self.security.tls
        try:
            port = self._server.add_secure_port(target, server_credentials(tls)) if tls is not None \
                else self._server.add_insecure_port(target)
        except RuntimeError as e:  # grpc raises RuntimeError("Failed to bind ...")
            raise OSError(f"cannot listen on {target}: {e}") from None
        if port == 0:
            raise OSError(f"cannot listen on {target} (address in use or not available)")
        self.port = port
        if self.config.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self.config.metrics_host, self.config.metrics_port)  # OSError if taken
        self.plane.start()
        await self._server.start()
        for service in ("", SERVICE_NAME, OIP_SERVICE, *map(health_service, self.repository.names())):
            await self.health.set(service, _SERVING)
        if self.config.poll_models > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll_models(self.config.poll_models))
        for name in self.repository.unavailable():  # every version failed to load: say so, serve the rest
            await self.health.set(health_service(name), health_pb2.HealthCheckResponse.NOT_SERVING)
        log.info("listening on %s (%s, %s)%s", self.address, "plaintext" if tls is None else
                 ("mTLS" if tls.client_ca is not None else "TLS"),
                 "tokens" if self.security.tokens is not None else "no authentication",
                 f", metrics on {self.config.metrics_host}:{self.metrics_port}" if self.metrics_port is not None else "")
        return port

    async def stop(self, grace: float | None = DEFAULT_GRACE) -> None:
        """NOT_SERVING, refuse new RPCs, give open ones ``grace`` seconds (None: none), then stop. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        await self.health.enter_graceful_shutdown()  # every service NOT_SERVING, watchers told first
        await self._server.stop(grace)
        await self.plane.close()
        self.metrics.close()

    def reload_tokens(self) -> bool:
        """Re-read the tokens file (``eddy serve`` does on SIGHUP); True if it was reloaded.

        Every open stream whose token is no longer listed (or now names another
        tenant) ends at once with UNAUTHENTICATED, both protocols; its sessions
        stay resumable by a token of their tenant. New calls with the token are
        refused by the interceptor.
        """
        tokens = self.security.tokens
        if tokens is None or not tokens.reload():
            return False
        ended = self.gate.stop_where(lambda c: bool(c.credential) and tokens.tenant_of(c.credential) != c.tenant,
                                     grpc.StatusCode.UNAUTHENTICATED, "the token this stream was opened with was "
                                     "revoked (tokens file reloaded); reconnect with a valid token")
        if ended:
            log.info("ended %d open stream(s) whose token is no longer listed", ended)
        return True

    async def reload_models(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """Rescan the repository now (``--poll-models`` does it periodically); returns (added, removed).

        Health follows: a model name that appears is SERVING, one whose last
        version was removed is NOT_SERVING (its open sessions still run).
        """
        before = set(self.repository.names())
        added, removed = await self.plane.reload()  # loading runs off the loop; unused removed versions unloaded
        after = set(self.repository.names())
        for name in sorted(after - before):
            await self.health.set(health_service(name), _SERVING)
        for name in sorted(before - after):
            await self.health.set(health_service(name), health_pb2.HealthCheckResponse.NOT_SERVING)
        if added or removed:
            log.info("models reloaded: added %s, removed %s", [f"{n}/{v}" for n, v in added] or "none",
                     [f"{n}/{v}" for n, v in removed] or "none")
        return added, removed

    async def _poll_models(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload_models()
            except Exception:  # an unreadable directory must not stop polling
                log.exception("model repository rescan failed")

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


def _metrics(config: ServeConfig) -> Metrics:
    """Prometheus metrics when ``metrics_port`` is set (imported only then), else the no-op recorder."""
    if config.metrics_port is None:
        return Metrics()
    from ..serving.prometheus import PrometheusMetrics

    return PrometheusMetrics()


async def start_server(models: ModelRepository | str | Path, host: str = DEFAULT_HOST, port: int = 0,
                       *, config: ServeConfig | None = None, security: Security | None = None) -> tuple[Server, int]:
    """Start a server in the running event loop; returns it and its bound port."""
    config = config or ServeConfig()
    repository = models if isinstance(models, ModelRepository) else ModelRepository(models, precision=config.precision)
    server = Server(repository, host, port, config, security)
    return server, await server.start()


def serve(models_dir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          *, config: ServeConfig | None = None, security: Security | None = None) -> int:
    """Serve ``models_dir`` until SIGINT/SIGTERM; returns an exit status.

    Prints ``eddy: serving N model(s) on HOST:PORT`` on stdout once the
    server accepts connections, with the bound port (so ``--port 0`` can be
    read by scripts), then ``eddy: metrics on http://HOST:PORT/metrics`` if
    enabled. SIGHUP re-reads the tokens file (:meth:`Server.reload_tokens`). Raises
    :class:`~eddy.runtime.core.errors.NotFound` if ``models_dir`` does not exist and
    ``OSError`` if a port cannot be bound (:class:`InsecureBind` for a
    non-loopback address without TLS and tokens).
    """
    config = config or ServeConfig()
    security = security or Security()
    security.check_bind(host, config.metrics_bind)  # before loading models: the refusal is the first thing said
    repository = ModelRepository(models_dir, precision=config.precision)
    return asyncio.run(_serve(repository, host, port, config, security))


async def _serve(repository: ModelRepository, host: str, port: int, config: ServeConfig, security: Security) -> int:
    server, _ = await start_server(repository, host, port, config=config, security=security)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if security.tokens is not None:
        loop.add_signal_handler(signal.SIGHUP, server.reload_tokens)
    # One write per line: --workers processes share this pipe, and print() writes the text and the newline
    # separately when stdout is unbuffered (PYTHONUNBUFFERED), so their lines could interleave.
    sys.stdout.write(f"eddy: serving {len(repository)} model(s) on {server.address}\n")
    sys.stdout.flush()
    if server.metrics_port is not None:
        print(f"eddy: metrics on http://{format_address(config.metrics_host, server.metrics_port)}/metrics",
              flush=True)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    print(f"eddy: shutting down (grace {config.grace:g}s)", file=sys.stderr, flush=True)
    await server.stop(config.grace)
    return 0
