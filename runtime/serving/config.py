"""Serving knobs: one frozen dataclass shared by ``eddy serve``, the server and the tests.

Every field has a default that is safe for a laptop and sane for production;
``eddy serve --help`` documents the same values (the CLI reads them from
here, so the two cannot drift).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.layout import PRECISIONS

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "TENANT_STREAM_SHARE", "ServeConfig"]

DEFAULT_HOST = "127.0.0.1"  # address eddy serve binds unless told otherwise: loopback only
DEFAULT_PORT = 50051  # eddy serve's gRPC port unless told otherwise
TENANT_STREAM_SHARE = 4  # without max_streams_per_tenant, one tenant (token) may hold 1/4 of max_streams


@dataclass(frozen=True)
class ServeConfig:
    """How ``eddy serve`` keeps sessions, batches steps and bounds requests."""

    session_ttl: float = 300.0  # seconds an idle session is kept before eviction
    max_sessions: int = 100_000  # live sessions (held or idle); past it new sessions get RESOURCE_EXHAUSTED
    max_sessions_per_tenant: int | None = None  # live sessions per tenant (token); None: only max_sessions
    eviction_interval: float = 10.0  # seconds between idle-session sweeps (capped at session_ttl)
    batching: bool = True  # run steps of different sessions together (one onnxruntime call)
    max_batch: int = 256  # sessions per onnxruntime call
    max_delay_us: int = 2000  # a batch collects steps this long at most while the loop is busy; 0: one loop turn
    max_message_bytes: int = 4 * 1024 * 1024  # gRPC receive/send limit per message
    max_samples_per_message: int = 65_536  # samples per stream message, or B*T per Predict
    grace: float = 5.0  # seconds open streams get to finish on shutdown
    stream_idle_timeout: float | None = 60.0  # end a stream that sent nothing this long (DEADLINE_EXCEEDED); None: never
    max_streams: int = 10_000  # open streams (eddy.v1 Stream + OIP ModelStreamInfer); more are RESOURCE_EXHAUSTED at once
    keepalive_time: float = 10.0  # seconds between HTTP/2 pings on a connection with open streams
    keepalive_timeout: float = 5.0  # seconds without a ping ack before the peer counts as gone (streams end)
    max_streams_per_tenant: int | None = None  # streams per tenant (token); None: max_streams // 4 (tokens off: max_streams)
    metrics_port: int | None = None  # Prometheus /metrics on this port (0: a free one); None: off
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)  # seconds, for session TTLs
    session_store: str = ""  # "": this process's memory; redis://HOST:PORT/DB or unix:///PATH: a shared Redis/Valkey
    lease_s: float = 5.0  # shared store: a session's lease; a crashed replica's sessions are free again after it
    store_timeout: float = 2.0  # shared store: seconds to wait for an answer before UNAVAILABLE (a later write: void)
    poll_models: float = 0.0  # seconds between scans of the model repository for added/removed versions; 0: off
    precision: str = "float32"  # graphs served: float32, or each version's int8 twins (versions without are skipped)
    metrics_host: str = "127.0.0.1"  # address /metrics binds; loopback unless asked otherwise
    share_port: bool = False  # let other processes bind the same port (SO_REUSEPORT, what --workers uses); else in use: error

    @property
    def metrics_bind(self) -> str | None:
        """The address /metrics binds, or None with metrics off (what the bind rule checks)."""
        return None if self.metrics_port is None else self.metrics_host

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be > 0, got {value}"
            for name, value in (("session_ttl", self.session_ttl), ("eviction_interval", self.eviction_interval),
                                ("lease_s", self.lease_s), ("store_timeout", self.store_timeout),
                                ("max_sessions", self.max_sessions), ("max_batch", self.max_batch),
                                ("max_message_bytes", self.max_message_bytes),
                                ("max_samples_per_message", self.max_samples_per_message),
                                ("max_streams", self.max_streams),
                                ("max_sessions_per_tenant",
                                 1 if self.max_sessions_per_tenant is None else self.max_sessions_per_tenant),
                                ("keepalive_time", self.keepalive_time), ("keepalive_timeout", self.keepalive_timeout),
                                ("stream_idle_timeout", 1 if self.stream_idle_timeout is None else self.stream_idle_timeout),
                                ("max_streams_per_tenant",
                                 1 if self.max_streams_per_tenant is None else self.max_streams_per_tenant))
            if value <= 0
        ]
        if self.session_store and not self.session_store.startswith(("redis://", "rediss://", "unix://")):
            problems.append(f"session_store must be a redis://, rediss:// or unix:// URL, got {self.session_store!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.poll_models < 0:
            problems.append(f"poll_models must be >= 0, got {self.poll_models}")
        if self.max_delay_us < 0 or self.grace < 0:
            problems.append(f"max_delay_us and grace must be >= 0, got {self.max_delay_us}, {self.grace}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            problems.append(f"metrics_port must be 0-65535, got {self.metrics_port}")
        if problems:
            raise ValueError("; ".join(problems))
