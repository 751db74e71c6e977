"""What the CLI says when a connection cannot be made: one line saying what is wrong and what to do.

gRPC reports a failed connection as text meant for its developers (``failed to connect to all addresses; last
error: UNAVAILABLE: ipv4:127.0.0.1:50061: Socket closed``), and an address without a port silently dials 443.
So the CLI checks the address and the TLS files before dialing or binding (:func:`server_address`,
:func:`check_client_tls`, :func:`check_server_tls`), and explains a failed connection by probing the address
once with the standard library's ``socket`` and ``ssl`` (:func:`explain_connect_failure`): nothing listening,
TLS against plaintext either way, a certificate that does not verify, a client certificate required or refused.
A failed bind is explained the same way (:func:`explain_bind_failure`). Only the CLI does this; the client
library raises gRPC's status as it is.
"""

from __future__ import annotations

import argparse
import errno
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eddy.runtime.core.errors import EddyError, Unavailable
from eddy.runtime.serving.config import DEFAULT_PORT

from .errors import UsageError

__all__ = ["add_client_flags", "check_client_tls", "check_server_tls", "connected", "explain_bind_failure",
           "explain_connect_failure", "server_address"]

_PROBE_TIMEOUT = 3.0  # seconds for the probe's connect, handshake and first read
_CONNECT_FAILURE = ("failed to connect to all addresses", "socket closed", "handshake")  # in gRPC's details


def server_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT`` for IPv6) as ``(host, port)``; :class:`UsageError` naming what is missing."""
    host, sep, port = text.rpartition(":")
    if text.startswith("[") and "]" in text:  # [::1]:50051
        inside, _, rest = text[1:].partition("]")
        host, sep, port = inside, rest[:1], rest[1:]
        if rest and sep != ":":
            raise UsageError(f"--server {text}: expected [IPV6]:PORT")
    elif text.count(":") > 1:
        raise UsageError(f"--server {text}: an IPv6 address goes in brackets with a port, e.g. [::1]:{DEFAULT_PORT}")
    if not sep:
        name = text.strip("[]") if text.startswith("[") else text
        shown = f"[{name}]" if ":" in name else name
        raise UsageError(f"no port in --server {text}: did you mean {shown}:{DEFAULT_PORT}? "
                         f"(eddy serve's default port)")
    if not host:
        raise UsageError(f"--server {text}: no host before the port, e.g. 127.0.0.1{text}")
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--server {text}: the port must be a number from 1 to 65535, got {port!r}")
    return host, int(port)


def check_client_tls(ca: Path | None, cert: Path | None, key: Path | None) -> None:
    """Refuse client TLS files that gRPC would only reject at the first call, in words (:class:`UsageError`)."""
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    _check_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), ca, cert, key, ("--tls-ca", "--tls-cert", "--tls-key"))


def check_server_tls(cert: Path, key: Path, client_ca: Path | None) -> None:
    """Refuse server TLS files before binding (gRPC says only "Failed to bind"), in words (:class:`UsageError`)."""
    _check_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), client_ca, cert, key,
                ("--tls-client-ca", "--tls-cert", "--tls-key"))


def add_client_flags(parser: argparse.ArgumentParser | Any) -> None:
    """``--tls``, ``--tls-ca``, ``--tls-cert``, ``--tls-key`` and ``--token``: how a command reaches a server (one help
    text for every command that does)."""
    parser.add_argument("--tls", action="store_true",
                        help="connect with TLS, trusting the system's CAs (implied by --tls-ca/--tls-cert) "
                             "(default: off)")
    parser.add_argument("--tls-ca", type=Path, metavar="PEM",
                        help="CA that signed the server's certificate (default: none)")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM",
                        help="client certificate, for servers that require one (mTLS) (default: none)")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="private key of --tls-cert (default: none)")
    parser.add_argument("--token", default=None,
                        help="bearer token for the server (default: $EDDY_TOKEN; none if unset)")


@contextmanager
def connected(args: argparse.Namespace) -> Iterator[Any]:
    """A :class:`~eddy.runtime.client.Client` to ``args.server`` with the flags of :func:`add_client_flags`, the
    address and TLS files checked first and a failed connection explained (:func:`explain_connect_failure`)."""
    from eddy.runtime.client import Client

    server_address(args.server)  # a missing port would dial 443
    check_client_tls(args.tls_ca, args.tls_cert, args.tls_key)
    tls = args.tls or any(f is not None for f in (args.tls_ca, args.tls_cert, args.tls_key))
    try:
        with Client(args.server, tls=args.tls, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                    token=args.token) as client:
            yield client
    except EddyError as e:
        raise explain_connect_failure(e, args.server, tls=tls, ca=args.tls_ca, cert=args.tls_cert,
                                      key=args.tls_key) from None


def explain_connect_failure(error: EddyError, target: str, *, tls: bool, ca: Path | None = None,
                            cert: Path | None = None, key: Path | None = None) -> Exception:
    """The error to report for ``error``, a failed call to ``target``: a connection failure gRPC describes in its
    own terms becomes one line saying what is wrong and what to do (the exit status follows: a flag that does not
    match the server is bad usage, a server that is not there is UNAVAILABLE); anything else is ``error``."""
    if error.code not in ("UNAVAILABLE", "UNKNOWN") or not any(s in error.message.lower() for s in _CONNECT_FAILURE):
        return error
    try:
        host, port = server_address(target)
    except UsageError:
        return error
    try:
        sock = socket.create_connection((host, port), timeout=_PROBE_TIMEOUT)
    except ConnectionRefusedError:
        return Unavailable(f"nothing listens on {target} (connection refused): is eddy serve running there, "
                           "on that port?")
    except OSError as e:
        return Unavailable(f"cannot reach {target}: {e.strerror or e}")
    with sock:
        speaks_tls = _handshakes(sock, host)
    if not tls and speaks_tls:
        return UsageError(f"{target} speaks TLS and this connection was plaintext: pass --tls (and --tls-ca PEM "
                          "when its certificate is signed by a CA the system does not trust)")
    if tls and not speaks_tls:
        return UsageError(f"{target} speaks plaintext, not TLS: drop --tls, --tls-ca, --tls-cert and --tls-key "
                          "(or start eddy serve with --tls-cert and --tls-key)")
    if tls:
        return _verify(error, target, host, port, ca, cert, key)
    return error


def explain_bind_failure(error: OSError, host: str, port: int) -> OSError:
    """A failed bind of ``host:port`` in words (gRPC says "Failed to bind ..."), found by binding it here."""
    if port == 0:
        return error
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host.strip("[]"), port))
    except OSError as e:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        why = {errno.EADDRINUSE: "another process listens on it (another eddy serve?): stop it or pick another "
                                 "--port",
               errno.EACCES: "permission denied (ports below 1024 need privileges): pick another --port",
               errno.EADDRNOTAVAIL: f"{host} is not an address of this machine: check --host"}.get(e.errno)
        return OSError(f"cannot listen on {address}: {why or e.strerror or e}")
    return error


def _handshakes(sock: socket.socket, host: str) -> bool:
    """True if the server at ``sock`` completes a TLS handshake (certificate not checked)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with context.wrap_socket(sock, server_hostname=host):
            return True
    except (ssl.SSLError, OSError):  # a plaintext HTTP/2 server answers the ClientHello with a frame or a close
        return False


def _verify(error: EddyError, target: str, host: str, port: int, ca: Path | None, cert: Path | None,
            key: Path | None) -> Exception:
    """The TLS server at ``target`` checked as the client's flags ask: its certificate, then the client's."""
    context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT) as sock, \
                context.wrap_socket(sock, server_hostname=host) as conn:
            first = conn.recv(1)  # TLS 1.3: a refused client certificate closes the connection after the handshake
    except ssl.SSLCertVerificationError as e:
        trusted = f"--tls-ca {ca}" if ca is not None else "the system's CAs"
        return UsageError(f"{target}'s TLS certificate does not verify against {trusted}: {e.verify_message}: "
                          + ("connect by a name or address the certificate lists" if "mismatch" in str(e.verify_message)
                             else "pass --tls-ca with the CA that signed it"))
    except (ssl.SSLError, OSError):
        return error
    if first:
        return error
    if cert is None:
        return UsageError(f"{target} requires a client certificate (mTLS): pass --tls-cert PEM --tls-key PEM, "
                          "signed by the CA the server trusts")
    return UsageError(f"{target} refused the client certificate --tls-cert {cert}: use one signed by the CA the "
                      "server trusts (its --tls-client-ca)")


def _check_pair(context: ssl.SSLContext, ca: Path | None, cert: Path | None, key: Path | None,
                flags: tuple[str, str, str]) -> None:
    """Load ``ca`` and the ``cert``/``key`` pair into ``context``; :class:`UsageError` naming the flag at fault."""
    ca_flag, cert_flag, key_flag = flags
    certificate, private_key = (b"-----BEGIN CERTIFICATE-----", "certificate (-----BEGIN CERTIFICATE)"), \
        (b"PRIVATE KEY-----", "private key (-----BEGIN ... PRIVATE KEY)")
    for flag, path, (marker, what) in ((ca_flag, ca, certificate), (cert_flag, cert, certificate),
                                       (key_flag, key, private_key)):
        if path is None:
            continue
        try:
            text = Path(path).read_bytes()
        except OSError as e:
            raise UsageError(f"{flag} {path}: {e.strerror}") from None
        if marker not in text:
            raise UsageError(f"{flag} {path}: no PEM {what} in it")
    try:
        if ca is not None:
            context.load_verify_locations(cafile=str(ca))
        if cert is not None and key is not None:
            context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise UsageError(f"{key_flag} {key} is not the private key of {cert_flag} {cert}") from None
        raise UsageError(f"{ca_flag} {ca}, {cert_flag} {cert}, {key_flag} {key}: unreadable PEM "
                         f"({e.reason or e})") from None
