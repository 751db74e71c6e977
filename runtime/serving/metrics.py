"""What a server records, as a small interface; this base records nothing (metrics off).

The data plane and the gRPC servicer call these methods and never name a
metrics library. With metrics on, the server uses
:class:`~eddy.runtime.serving.prometheus.PrometheusMetrics` (imported only
then, so prometheus_client is not loaded otherwise); off, this no-op base.

Methods that return a callable are looked up once (per stream or per model)
and the callable is then called per message: labelled lookups cost ~7% of
server time when done per message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core.live import LiveFigures

__all__ = ["Metrics"]


def _nop(*_: object) -> None:
    return None


class Metrics:
    """The metrics interface; every method is a no-op here."""

    enabled = False  # True when figures are kept (and can be rendered)

    def unauthenticated(self, method: str) -> None:
        """Count an RPC refused before it reached eddy (no or bad token): ``/pkg.Service/Method`` -> ``Method``."""
        self.rpc(method.rsplit("/", 1)[-1], "UNAUTHENTICATED")

    def track_sessions(self, count: Callable[[], int]) -> None:
        """Read the live-session count from ``count()`` whenever the figures are read."""

    def track_live(self, figures: Callable[[], list[tuple[str, int, LiveFigures]]]) -> None:
        """Read every model version's pooled live accuracy, ``(name, version, figures)``, whenever the figures
        are read."""

    def batch(self, size: int) -> None:
        """One onnxruntime call of the batcher ran ``size`` sessions."""

    def evicted(self, n: int) -> None:
        """``n`` idle sessions were dropped after the TTL."""

    def samples(self, model: str) -> Callable[[int], None]:
        """Counter of samples predicted for ``model``: call it with each count."""
        return _nop

    def latency(self, method: str) -> Callable[[float], None]:
        """Observer of one RPC's (or, for Stream, one message's) seconds."""
        return _nop

    def stream_messages(self, model: str, code: str) -> Callable[[], None]:
        """Counter of stream messages of ``model`` answered with status ``code`` (``"OK"`` or an error's)."""
        return _nop

    def rpc(self, method: str, code: str) -> None:
        """An RPC finished with status ``code``."""

    def stream_opened(self) -> None:
        """A streaming RPC (eddy.v1 Stream or OIP ModelStreamInfer) started."""

    def stream_closed(self) -> None:
        """A streaming RPC ended."""

    def render(self) -> bytes:
        """The figures in the exposition format (empty when off)."""
        return b""

    def serve(self, host: str, port: int) -> int:
        """Serve the figures over HTTP; returns the bound port."""
        raise RuntimeError("metrics are off: there is no endpoint to serve")

    def close(self) -> None:
        """Stop the HTTP endpoint, if any. Idempotent."""
