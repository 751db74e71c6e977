"""``eddy serve``: the gRPC server over a model repository (flags read their defaults from ServeConfig)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from eddy.runtime.core.layout import PRECISIONS
from eddy.runtime.serving.config import DEFAULT_HOST, DEFAULT_PORT, TENANT_STREAM_SHARE, ServeConfig

from .errors import UsageError

if TYPE_CHECKING:
    from eddy.runtime.grpc.security import Security

__all__ = ["add_parser", "run"]

_SERVE_EPILOG = """\
sessions: a stream may name a session id and resume it later (also from
another connection); idle sessions live --session-ttl seconds. One stream at
a time per session. See docs/guides/serving.md.

security: a non-loopback --host needs --tls-cert/--tls-key and --auth-tokens
(or --insecure), a non-loopback --metrics-host --insecure. Tokens: `eddy token
TENANT` prints one and the line for the tokens file (which others must not
be able to write); SIGHUP re-reads the file and ends the open streams of
tokens it no longer lists (UNAUTHENTICATED). A --state-key file must not be
open to other users (chmod 600). See docs/guides/security.md.

shutdown: SIGINT/SIGTERM turns health NOT_SERVING, refuses new RPCs, answers
open streams for up to --grace seconds, then cancels what is left.
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``eddy`` subcommands."""
    d = ServeConfig()
    s = sub.add_parser("serve", help="serve every model of a repository over gRPC",
                       description="Serve every model version under --models over gRPC: eddy.v1.Inference\n"
                                   "(streams with resumable sessions, Predict), on the same port the Open\n"
                                   "Inference Protocol inference.GRPCInferenceService (KServe v2; Triton's\n"
                                   "sequence_id/start/end map onto the same sessions, so tritonclient works),\n"
                                   "grpc.health.v1 (overall, each service and eddy.v1.Inference/<model>) and\n"
                                   "server reflection; optional Prometheus metrics over HTTP.",
                       epilog=_SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--models", type=Path, default=Path(os.environ.get("EDDY_MODELS", "models")),
                   help="model repository, holding NAME/VERSION/manifest.json (default: $EDDY_MODELS or ./models)")
    s.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind, for gRPC and metrics (default: {DEFAULT_HOST}, loopback only)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port to bind; 0 picks a free one (default: {DEFAULT_PORT})")
    s.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="graphs to serve: float32, or the int8 twins written by `eddy train --quantize int8` "
                        "(versions without them are skipped, with the reason in the log; int8 outputs are not "
                        f"bit-exact across chunking) (default: {d.precision})")
    s.add_argument("--session-ttl", type=float, default=d.session_ttl, metavar="SECONDS",
                   help=f"evict sessions idle longer than this (default: {d.session_ttl:g})")
    s.add_argument("--max-sessions", type=int, default=d.max_sessions, metavar="N",
                   help=f"live sessions at most (with --session-store: in the store, shared by its replicas); new "
                        f"ones past it get RESOURCE_EXHAUSTED, live ones are never evicted for room "
                        f"(default: {d.max_sessions})")
    s.add_argument("--max-sessions-per-tenant", type=int, default=d.max_sessions_per_tenant, metavar="N",
                   help="live sessions per tenant (token) at most; more are RESOURCE_EXHAUSTED "
                        "(default: only --max-sessions)")
    s.add_argument("--max-batch", type=int, default=d.max_batch, metavar="N",
                   help=f"sessions per onnxruntime call when batching (default: {d.max_batch})")
    s.add_argument("--max-delay-us", type=int, default=d.max_delay_us, metavar="US",
                   help="microseconds a batch may keep collecting the other active sessions' steps while the "
                        "event loop is busy (it runs once all are queued or the loop is idle); 0 batches what is "
                        f"queued after one loop turn (default: {d.max_delay_us})")
    s.add_argument("--batching", choices=("on", "off"), default="on" if d.batching else "off",
                   help="batch steps of different sessions into one onnxruntime call (default: on)")
    s.add_argument("--no-batching", dest="batching", action="store_const", const="off",
                   help="same as --batching off (default: batching on)")
    s.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes, metavar="BYTES",
                   help="largest gRPC message received or sent; a larger request ends the RPC with "
                        "RESOURCE_EXHAUSTED, and a request whose answer would be larger is refused (same status) "
                        f"before it runs (default: {d.max_message_bytes})")
    s.add_argument("--max-samples-per-message", type=int, default=d.max_samples_per_message, metavar="N",
                   help="samples per stream message, or B*T per Predict; more is RESOURCE_EXHAUSTED "
                        f"(default: {d.max_samples_per_message})")
    s.add_argument("--keepalive-time", type=float, default=d.keepalive_time, metavar="SECONDS",
                   help=f"ping connections with open streams this often (default: {d.keepalive_time:g})")
    s.add_argument("--keepalive-timeout", type=float, default=d.keepalive_timeout, metavar="SECONDS",
                   help="a peer that does not answer a ping within this is gone: its streams end and their "
                        f"sessions become resumable (default: {d.keepalive_timeout:g})")
    s.add_argument("--stream-idle-timeout", type=float, default=d.stream_idle_timeout, metavar="SECONDS",
                   help="end a stream (eddy.v1 or OIP) that sent nothing for this long with DEADLINE_EXCEEDED "
                        f"(its session stays resumable); 0 never (default: {d.stream_idle_timeout:g})")
    s.add_argument("--max-streams", type=int, default=d.max_streams, metavar="N",
                   help=f"open streams at most, eddy.v1 and OIP together; more are RESOURCE_EXHAUSTED "
                        f"(default: {d.max_streams})")
    s.add_argument("--max-streams-per-tenant", type=int, default=d.max_streams_per_tenant, metavar="N",
                   help="open streams per tenant (token) at most; more are RESOURCE_EXHAUSTED (default: "
                        f"--max-streams / {TENANT_STREAM_SHARE} per token's tenant, so no tenant takes every slot; "
                        "without --auth-tokens every caller is one tenant, held only to --max-streams)")
    s.add_argument("--grace", type=float, default=d.grace, metavar="SECONDS",
                   help=f"seconds open streams get to finish on SIGINT/SIGTERM (default: {d.grace:g})")
    s.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics; 0 picks a free port "
                        "(default: off)")
    s.add_argument("--session-store", default=d.session_store, metavar="URL",
                   help="keep sessions in a Redis/Valkey server shared by replicas and workers, e.g. "
                        "redis://127.0.0.1:6379/0 or unix:///run/valkey.sock: every answer is written there "
                        "first, so sessions survive a crash and resume on any replica (needs eddy-rnn[redis]) "
                        "(default: this process's memory)")
    s.add_argument("--lease-s", type=float, default=d.lease_s, metavar="SECONDS",
                   help="with --session-store: a stream's lease on its session; a crashed replica's sessions "
                        f"can be resumed elsewhere after this (default: {d.lease_s:g})")
    s.add_argument("--store-timeout", type=float, default=d.store_timeout, metavar="SECONDS",
                   help=f"with --session-store: wait this long for the store, then UNAVAILABLE; a write the "
                        f"store runs later changes nothing (default: {d.store_timeout:g})")
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="serve from N processes sharing the port (SO_REUSEPORT), to use N cores; needs "
                        "--session-store, since each process has its own memory (default: 1)")
    s.add_argument("--share-port", action="store_true", default=d.share_port,
                   help="let other processes bind the same --port (SO_REUSEPORT; what --workers does) (default: "
                        "a port in use is an error, never silently shared)")
    s.add_argument("--poll-models", type=float, default=d.poll_models, metavar="SECONDS",
                   help="rescan --models this often: new versions are served without a restart, removed ones "
                        "take no new sessions (their open sessions carry on) (default: 0, off)")
    s.add_argument("--metrics-host", default=d.metrics_host, metavar="ADDR",
                   help=f"address the metrics endpoint binds; non-loopback needs --insecure, as /metrics has no "
                        f"TLS or tokens (default: {d.metrics_host}, loopback only)")
    s.add_argument("--tls-cert", type=Path, metavar="PEM",
                   help="server certificate chain; with --tls-key serves TLS only (default: plaintext)")
    s.add_argument("--tls-key", type=Path, metavar="PEM", help="private key of --tls-cert (default: none)")
    s.add_argument("--tls-client-ca", type=Path, metavar="PEM",
                   help="require client certificates signed by this CA (mTLS; needs --tls-cert) (default: none)")
    s.add_argument("--auth-tokens", type=Path, metavar="FILE",
                   help="require `authorization: Bearer TOKEN`; FILE has lines `TENANT SHA256-HEX-OF-TOKEN`, "
                        "re-read on SIGHUP, which ends the open streams of removed tokens (default: no "
                        "authentication)")
    s.add_argument("--state-key", type=Path, metavar="FILE",
                   help="HMAC-SHA256 keys for exported state bytes, one per line (>= 32 characters; the first "
                        "signs, all verify); replicas that exchange state share it (default: a random key per "
                        "process, so state bytes are valid only in this process; --workers share one)")
    s.add_argument("--no-reflection", dest="reflection", action="store_false",
                   help="do not serve gRPC server reflection (default: served)")
    s.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without TLS and tokens, and a non-loopback --metrics-host "
                        "(/metrics has neither) (default: refuse to start)")
    s.add_argument("--log-level", default="INFO", help="logging level on stderr (default: INFO)")
    return s


def run(args: argparse.Namespace) -> int:
    """Run ``eddy serve``; returns the exit status (errors propagate to :func:`eddy.cli.errors.report`)."""
    from eddy.runtime.grpc.security import InsecureBind
    from eddy.runtime.grpc.server import serve  # grpc import only when serving

    try:
        config = ServeConfig(session_ttl=args.session_ttl, max_sessions=args.max_sessions,
                             batching=args.batching == "on", max_batch=args.max_batch,
                             max_delay_us=args.max_delay_us, max_message_bytes=args.max_message_bytes,
                             max_samples_per_message=args.max_samples_per_message, grace=args.grace,
                             metrics_port=args.metrics_port, session_store=args.session_store,
                             lease_s=args.lease_s, store_timeout=args.store_timeout, poll_models=args.poll_models,
                             precision=args.precision, metrics_host=args.metrics_host,
                             stream_idle_timeout=args.stream_idle_timeout or None, max_streams=args.max_streams,
                             keepalive_time=args.keepalive_time, keepalive_timeout=args.keepalive_timeout,
                             max_streams_per_tenant=args.max_streams_per_tenant,
                             max_sessions_per_tenant=args.max_sessions_per_tenant, share_port=args.share_port)
    except ValueError as e:
        raise UsageError(str(e)) from None
    security = _security(args)
    try:
        security.check_bind(args.host, config.metrics_bind)  # before any worker starts: the refusal comes first
    except InsecureBind as e:
        raise UsageError(str(e)) from None
    if args.workers > 1:
        return _workers(args)
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return serve(args.models, args.host, args.port, config=config, security=security)
    except OSError as e:
        if not str(e).startswith("cannot listen on"):
            raise
        from .connect import explain_bind_failure

        raise explain_bind_failure(e, args.host, args.port) from None


def _workers(args: argparse.Namespace) -> int:
    """``--workers N``: N ``eddy serve`` processes on one port (SO_REUSEPORT); signals are passed on."""
    import signal
    import subprocess

    if not args.session_store:
        raise UsageError("--workers > 1 needs --session-store: with the memory store each worker has its own "
                          "sessions, and a client's next connection may land on another worker")
    if args.port == 0:
        raise UsageError("--workers > 1 needs a fixed --port (with 0 every worker would pick its own)")
    argv, skip = [], False
    for arg in args.argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            argv.append(arg)
    key_dir = None
    if args.state_key is None:  # the workers share one key, so state bytes made by one verify on the others
        import secrets
        import tempfile

        key_dir = tempfile.TemporaryDirectory(prefix="eddy-workers-")
        key_file = Path(key_dir.name) / "state.key"
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_hex(32) + "\n")
        argv += ["--state-key", str(key_file)]
    procs = []
    for i in range(args.workers):
        extra = [] if args.metrics_port in (None, 0) else ["--metrics-port", str(args.metrics_port + i)]
        procs.append(subprocess.Popen([sys.executable, "-m", "eddy.cli", *argv, "--share-port", *extra]))
    print(f"eddy: {args.workers} workers (pids {', '.join(str(p.pid) for p in procs)}) on "
          f"{args.host}:{args.port}", file=sys.stderr, flush=True)

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: each worker re-reads --auth-tokens
        signal.signal(sig, forward)
    codes = [p.wait() for p in procs]
    if key_dir is not None:
        key_dir.cleanup()
    return max(codes, key=abs)


def _security(args: argparse.Namespace) -> Security:
    """The :class:`~eddy.runtime.grpc.security.Security` the flags ask for (UsageError naming a bad flag)."""
    from eddy.runtime.core.statecodec import StateKeys
    from eddy.runtime.grpc.security import Security, TlsFiles, TokenTable

    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    if args.tls_cert is not None:
        from .connect import check_server_tls

        check_server_tls(args.tls_cert, args.tls_key, args.tls_client_ca)  # gRPC would only say "Failed to bind"
    try:
        tokens = TokenTable(args.auth_tokens) if args.auth_tokens is not None else None
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"--auth-tokens: {e}") from None
    try:
        keys = StateKeys.from_file(args.state_key) if args.state_key is not None else None
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"--state-key: {e}") from None
    tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert is not None else None
    return Security(tls=tls, tokens=tokens, reflection=args.reflection, insecure=args.insecure, state_keys=keys)
