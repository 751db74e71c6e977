"""Transport security and authentication for ``eddy serve``: TLS, mTLS, bearer tokens, tenants.

- **TLS** (:func:`server_credentials`): ``--tls-cert``/``--tls-key`` (PEM);
  with ``--tls-client-ca`` every client must present a certificate signed by
  that CA (mTLS), checked during the handshake.
- **Tokens** (:class:`TokenTable`): ``--auth-tokens FILE`` holds one line per
  token, ``TENANT SHA256-HEX-OF-TOKEN``; blank lines and ``#`` comments are
  allowed. The file never holds a token, only its digest, so reading it does
  not let anyone call the server. ``eddy token TENANT`` prints a fresh token
  and the line to add. :meth:`TokenTable.reload` re-reads it (``eddy serve``
  does on SIGHUP); a file that no longer parses keeps the previous table.
  Refused: a file that users other than its owner may write (whoever can
  write it can give themselves a tenant: sshd's rule for
  ``authorized_keys``), and a digest listed under two tenants. Said once: a
  file others may read (the digest of a guessable hand-made token can be
  guessed offline; ``eddy token``'s 256-bit tokens cannot), and a file
  without any token (every call but health checks is UNAUTHENTICATED).
- **Interceptor** (:class:`AuthInterceptor`): every RPC except
  ``grpc.health.v1.Health`` needs ``authorization: Bearer <token>`` metadata
  naming a listed token, else UNAUTHENTICATED. The caller's tenant is put in
  :data:`TENANT` (a contextvar, which grpc.aio carries from interceptors to
  the handler); without tokens configured every caller is tenant ``""``.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:  # the client imports this module for TLS credentials: no onnxruntime through statecodec
    from ..core.statecodec import StateKeys

__all__ = ["CREDENTIAL", "TENANT", "AuthInterceptor", "InsecureBind", "Security", "TlsFiles", "TokenTable",
           "client_credentials", "is_loopback", "new_token", "server_credentials", "token_digest", "valid_tenant"]

log = logging.getLogger("eddy.security")

TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("eddy_tenant", default="")
CREDENTIAL: contextvars.ContextVar[str] = contextvars.ContextVar("eddy_credential", default="")  # token digest
_TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # tenant names: short, printable, no spaces
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)  # load balancers probe health without credentials


def token_digest(token: str) -> str:
    """The SHA-256 hex digest of a token, as written in the tokens file."""
    return hashlib.sha256(token.encode()).hexdigest()


def valid_tenant(name: str) -> bool:
    """True for a usable tenant name: 1-64 of letters, digits, ``._-``, starting with a letter or digit."""
    return _TENANT_RE.fullmatch(name) is not None


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


class TokenTable:
    """Tenants by token digest, read from a tokens file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tenants: dict[str, str] = self._read()  # digest -> tenant; ValueError/OSError on a bad file

    def _read(self) -> dict[str, str]:
        mode = os.stat(self.path).st_mode
        if os.name == "posix" and mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ValueError(f"{self.path} is writable by other users (mode {stat.S_IMODE(mode):04o}): whoever can "
                             f"write it can add a token; `chmod 600 {self.path}` (or 644)")
        tenants: dict[str, str] = {}
        lines: dict[str, int] = {}  # digest -> the line that listed it
        text = self.path.read_text(encoding="utf-8")
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2 or not _TENANT_RE.fullmatch(parts[0]) or not _DIGEST_RE.fullmatch(parts[1].lower()):
                raise ValueError(f"{self.path} line {lineno}: expected `TENANT SHA256-HEX` (tenant: letters, digits, "
                                 "._-, at most 64; digest: 64 hex digits), not a token")
            tenant, digest = parts[0], parts[1].lower()
            if tenants.get(digest, tenant) != tenant:
                raise ValueError(f"{self.path} line {lineno}: this digest is tenant {tenants[digest]}'s already (line "
                                 f"{lines[digest]}); a token belongs to one tenant: give {tenant} a token of its own")
            tenants[digest], lines[digest] = tenant, lineno
        if os.name == "posix" and mode & stat.S_IROTH:
            log.warning("tokens file %s is readable by other users (mode %04o): the digest of a guessable token can "
                        "be guessed offline (`eddy token` makes unguessable ones); `chmod 600 %s`", self.path,
                        stat.S_IMODE(mode), self.path)
        if not tenants:
            log.warning("tokens file %s lists no token: every call but health checks will be refused "
                        "(UNAUTHENTICATED); add one with `eddy token TENANT`", self.path)
        return tenants

    def reload(self) -> bool:
        """Re-read the file; on any problem keep the current table and log why. True if reloaded."""
        try:
            self._tenants = self._read()
        except (OSError, ValueError, UnicodeDecodeError) as e:
            log.error("tokens file not reloaded, keeping the previous %d token(s): %s", len(self._tenants), e)
            return False
        log.info("tokens file %s reloaded: %d token(s), %d tenant(s)", self.path, len(self._tenants),
                 len(set(self._tenants.values())))
        return True

    def tenant(self, token: str) -> str | None:
        """The tenant a token belongs to, or None."""
        return self._tenants.get(token_digest(token))  # a digest reveals nothing about the stored tokens

    def tenant_of(self, digest: str) -> str | None:
        """The tenant a token digest is listed under now, or None (e.g. removed since: see ``Server.reload_tokens``)."""
        return self._tenants.get(digest)

    def __len__(self) -> int:
        return len(self._tenants)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED unless ``authorization: Bearer <token>`` names a token of ``tokens``.

    Sets :data:`TENANT` and :data:`CREDENTIAL` (the token's digest, so a stream can be ended when its token is removed).
    """

    def __init__(self, tokens: TokenTable, on_reject: Callable[[str], None] | None = None) -> None:
        self.tokens = tokens
        self.on_reject = on_reject  # called with the method name of each refused call (metrics)

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails],
                                                             Awaitable[grpc.RpcMethodHandler]],
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if method.startswith(_OPEN_PREFIXES):
            return await continuation(handler_call_details)
        tenant, why, digest = self._tenant(handler_call_details.invocation_metadata or ())
        if tenant is None:
            if self.on_reject is not None:
                self.on_reject(method)
            handler = await continuation(handler_call_details)
            return _refusal(handler, why)
        TENANT.set(tenant)
        CREDENTIAL.set(digest)
        return await continuation(handler_call_details)

    def _tenant(self, metadata: object) -> tuple[str | None, str, str]:
        values = [v for k, v in metadata if k == "authorization"]  # type: ignore[attr-defined]
        if not values:
            return None, "no `authorization: Bearer <token>` metadata (this server requires a token)", ""
        value = values[0] if isinstance(values[0], str) else ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "`authorization` metadata must be `Bearer <token>`", ""
        digest = token_digest(token.strip())
        tenant = self.tokens.tenant_of(digest)
        return (tenant, "", digest) if tenant is not None else (None, "invalid token", "")


def _refusal(handler: grpc.RpcMethodHandler | None, why: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that only aborts with UNAUTHENTICATED."""
    async def abort_unary(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)

    async def abort_stream(request: object, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
        yield  # pragma: no cover  (makes this an async generator)

    # Requests are never parsed for a refused call: keep them as bytes.
    if handler is None or (not handler.request_streaming and not handler.response_streaming):
        return grpc.unary_unary_rpc_method_handler(abort_unary)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_stream)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort_unary)
    return grpc.unary_stream_rpc_method_handler(abort_stream)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for server TLS; ``client_ca`` set means mTLS (client certificates required)."""

    cert: Path  # server certificate chain
    key: Path  # its private key
    client_ca: Path | None = None  # CA that signs client certificates; None: no client certificates


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """grpc server credentials from PEM files (OSError naming the file that cannot be read)."""
    cert, key = tls.cert.read_bytes(), tls.key.read_bytes()
    ca = tls.client_ca.read_bytes() if tls.client_ca is not None else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def client_credentials(ca: str | Path | None = None, cert: str | Path | None = None,
                       key: str | Path | None = None) -> grpc.ChannelCredentials:
    """Channel credentials: trust ``ca`` (None: the system roots); ``cert``/``key`` for mTLS."""
    if (cert is None) != (key is None):
        raise ValueError("a client certificate needs both cert and key")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes() if ca is not None else None,
        private_key=Path(key).read_bytes() if key is not None else None,
        certificate_chain=Path(cert).read_bytes() if cert is not None else None)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a name or a wildcard ("0.0.0.0" parses; "" or a host name does not)


class InsecureBind(OSError):
    """A non-loopback bind without TLS and tokens, and no ``--insecure``: the server refuses to start."""


@dataclass(frozen=True)
class Security:
    """Who may connect and call: TLS files, the token table, reflection, the ``--insecure`` override."""

    tls: TlsFiles | None = None  # None: plaintext
    tokens: TokenTable | None = None  # None: no authentication, every caller is tenant ""
    reflection: bool = True  # gRPC server reflection (grpcurl list/describe)
    state_keys: StateKeys | None = None  # HMAC keys of state bytes (--state-key); None: a random per-process key
    insecure: bool = False  # allow a non-loopback bind without TLS and tokens

    def check_bind(self, host: str, metrics_host: str | None = None) -> None:
        """Raise :class:`InsecureBind` with a one-line reason if ``host`` (gRPC) or ``metrics_host`` (the
        Prometheus endpoint, if served) may not be bound this way.

        One rule for both: a non-loopback address needs TLS and tokens, or the ``--insecure`` opt-in. The
        metrics endpoint has neither, so only the opt-in opens it beyond loopback.
        """
        if metrics_host is not None and not (is_loopback(metrics_host) or self.insecure):
            raise InsecureBind(f"refusing to serve metrics on non-loopback address {metrics_host}: /metrics has no "
                               "TLS or tokens; keep it on loopback (scrape it through a sidecar or a tunnel), or pass "
                               "--insecure to expose it")
        if is_loopback(host) or self.insecure or (self.tls is not None and self.tokens is not None):
            return
        missing = " and ".join(n for n, v in (("TLS (--tls-cert/--tls-key)", self.tls),
                                              ("tokens (--auth-tokens)", self.tokens)) if v is None)
        raise InsecureBind(f"refusing to listen on non-loopback address {host} without {missing}; "
                           "add them, or pass --insecure to serve an open, unencrypted server")
