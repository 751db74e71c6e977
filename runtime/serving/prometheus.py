"""Prometheus metrics for one server, in a private registry (metrics on).

The implementation of :class:`~eddy.runtime.serving.metrics.Metrics` that
keeps figures. Imported by the server only when metrics are enabled.
Each :class:`PrometheusMetrics` owns its own ``CollectorRegistry`` (never the global
one), so several servers can run in one process (tests, benchmarks) without
clashing, and :meth:`PrometheusMetrics.serve` exposes exactly this server's figures.

Series (all prefixed ``eddy_``):

==================================  =========  ==================================================
name                                type       labels / meaning
==================================  =========  ==================================================
``rpcs_total``                      counter    ``method``, ``code``: RPCs finished, by final status
``stream_messages_total``           counter    ``model``, ``code``: stream messages answered
                                               (OK or the in-band error's code)
``samples_total``                   counter    ``model``: samples predicted (streams and Predict)
``request_latency_seconds``         histogram  ``method``: unary RPC time; for ``Stream``, the time
                                               to answer one message
``open_streams``                    gauge      streams in progress (eddy.v1 Stream + OIP ModelStreamInfer)
``live_sessions``                   gauge      sessions held in memory (busy or idle)
``batch_size``                      histogram  sessions per onnxruntime call of the batcher
``session_evictions_total``         counter    idle sessions dropped after the TTL
``live_rmse``                       gauge      ``model``, ``version``, ``predictor`` (model, persistence,
                                               seasonal_naive): live RMSE over the version's sessions
                                               here, exponentially weighted over the last 1,000 actuals
``live_error_ratio``                gauge      ``model``, ``version``: the model's live RMSE over the
                                               best baseline's (below 1: the model wins)
``interval_coverage``               gauge      ``model``, ``version``, ``level``: fraction of actuals
                                               inside the interval issued for them
``drift``                           gauge      ``model``, ``version``: 1 while the drift alarm is raised
==================================  =========  ==================================================

The live series are per model version, never per session (bounded
cardinality); a version appears once one of its actuals has been scored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..core.live import LiveFigures
from .metrics import Metrics

__all__ = ["PrometheusMetrics"]

_LATENCY_BUCKETS = (50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1, 0.25, 0.5, 1.0,
                    2.5, 10.0)  # seconds; a step costs tens of microseconds, a round trip ~0.5 ms
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class PrometheusMetrics(Metrics):
    """The metric families of one server and, optionally, their HTTP endpoint."""

    enabled = True

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._rpcs = Counter("eddy_rpcs", "RPCs finished, by method and final status code.",
                             ["method", "code"], registry=r)
        self._stream_messages = Counter("eddy_stream_messages", "Stream messages answered, by model and status "
                                        "code (OK or the in-band error).", ["model", "code"], registry=r)
        self._samples = Counter("eddy_samples", "Samples predicted, by model.", ["model"], registry=r)
        self._latency = Histogram("eddy_request_latency_seconds", "Unary RPC latency; for Stream, the time to "
                                  "answer one message.", ["method"], buckets=_LATENCY_BUCKETS, registry=r)
        self._open_streams = Gauge("eddy_open_streams", "Streams in progress (eddy.v1 Stream and OIP "
                                   "ModelStreamInfer).", registry=r)
        self._live_sessions = Gauge("eddy_live_sessions", "Sessions held in memory (busy or idle).", registry=r)
        self._batch_size = Histogram("eddy_batch_size", "Sessions per onnxruntime call of the batcher.",
                                     buckets=_BATCH_BUCKETS, registry=r)
        self._evictions = Counter("eddy_session_evictions", "Idle sessions evicted after the TTL.", registry=r)
        self._observe: dict[str, Callable[[float], None]] = {}  # method -> its latency child's observe
        self._count: dict[tuple[str, str], Callable[[], None]] = {}  # (method, code) -> its RPC counter's inc
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def track_sessions(self, count: Callable[[], int]) -> None:
        """Read the live-session gauge from ``count()`` at every scrape."""
        self._live_sessions.set_function(lambda: float(count()))

    def track_live(self, figures: Callable[[], list[tuple[str, int, LiveFigures]]]) -> None:
        """Export every model version's pooled live accuracy at each scrape."""
        self.registry.register(_LiveCollector(figures))

    def batch(self, size: int) -> None:
        self._batch_size.observe(size)

    def evicted(self, n: int) -> None:
        self._evictions.inc(n)

    def samples(self, model: str) -> Callable[[int], None]:
        return self._samples.labels(model).inc

    def latency(self, method: str) -> Callable[[float], None]:
        observe = self._observe.get(method)  # labels() takes a lock and builds a key: once per method, not per RPC
        if observe is None:
            observe = self._observe[method] = self._latency.labels(method).observe
        return observe

    def stream_messages(self, model: str, code: str) -> Callable[[], None]:
        return self._stream_messages.labels(model, code).inc

    def rpc(self, method: str, code: str) -> None:
        inc = self._count.get((method, code))
        if inc is None:
            inc = self._count[method, code] = self._rpcs.labels(method, code).inc
        inc()

    def stream_opened(self) -> None:
        self._open_streams.inc()

    def stream_closed(self) -> None:
        self._open_streams.dec()

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` over HTTP on ``host:port`` (0: a free port) in a thread; returns the port."""
        if self._http is not None:
            raise RuntimeError("metrics endpoint already started")
        self._http, self._thread = start_http_server(port, addr=host.strip("[]"), registry=self.registry)
        return int(self._http.server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint, if started. Idempotent."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._http = self._thread = None


class _LiveCollector(Collector):
    """The live-accuracy gauges, read from the data plane at each scrape."""

    def __init__(self, figures: Callable[[], list[tuple[str, int, LiveFigures]]]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rmse = GaugeMetricFamily("eddy_live_rmse", "Live RMSE over a model version's sessions (exponentially weighted "
                                 "over its last 1000 actuals), by predictor.", labels=["model", "version", "predictor"])
        ratio = GaugeMetricFamily("eddy_live_error_ratio", "The model's live RMSE over the best naive baseline's "
                                  "(below 1: the model wins).", labels=["model", "version"])
        coverage = GaugeMetricFamily("eddy_interval_coverage", "Fraction of actuals inside the prediction interval "
                                     "issued for them, by level.", labels=["model", "version", "level"])
        drift = GaugeMetricFamily("eddy_drift", "1 while the drift alarm of a model version is raised.",
                                  labels=["model", "version"])
        for name, version, f in self._figures():
            if not f.actuals:
                continue
            v = str(version)
            for predictor, value in f.rmse.items():
                rmse.add_metric([name, v, predictor], value)
            if f.error_ratio is not None:
                ratio.add_metric([name, v], f.error_ratio)
            for level, value in f.coverage.items():
                coverage.add_metric([name, v, f"{level:g}"], value)
            drift.add_metric([name, v], float(f.drift))
        yield from (rmse, ratio, coverage, drift)
