"""Per-model-version inference statistics, always kept (what the OIP's ``ModelStatistics`` reports).

Prometheus metrics (:mod:`~eddy.runtime.serving.metrics`) are off unless
asked for and are per method or per model name; Triton dashboards and
perf_analyzer instead ask the server for per-model, per-version counters.
:class:`Statistics` keeps those, in plain integers (a few additions per
request), for every model version that ran something. What each figure is,
measured where eddy does the work:

- ``inference_count``: samples predicted (one step of one sequence is one
  inference; a chunk of n samples is n); ``execution_count``: onnxruntime
  calls that ran them (a batch of single steps of B sessions is one call, a
  chunk is one call of the sequence graph, a ``Predict`` is one call).
- ``success`` / ``fail``: requests that reached the data plane (a stream
  message's or OIP request's samples, a ``Predict``) and were answered, or
  failed there (answer over the size limit, a store error, the caller gone),
  with their time in the data plane (queue + compute), in ns. Input refused
  earlier at the protocol edge (bad shape, NaN, an unknown sequence) does
  not reach a model and is counted only in ``eddy_stream_messages_total`` /
  ``eddy_rpcs_total``.
- ``queue``: per request run by the batcher, the time from joining its queue to
  the start of the call that ran it (0 for a request run at once, alone).
- ``compute_input`` / ``compute_infer`` / ``compute_output``: per request,
  the three phases of the call that ran it (every request of a batch is
  charged the whole call, as Triton does): preparing the call's inputs
  (gathering the sessions' state rows, stacking their samples), the
  onnxruntime call (with the model's normalisation), and handing back its
  results (writing the new state rows, splitting the answers). Their counts
  are always equal (perf_analyzer refuses statistics where they are not).
  A durable store's write is in none of them (it is in ``success``).
- ``batch_stats``: per batch size (sessions in one call), the calls made and
  the time of each phase.
- ``last_inference``: wall-clock ms since the epoch of the last success.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..core.model import Model

__all__ = ["ModelStats", "Statistics"]


@dataclass
class ModelStats:
    """Counters of one model version (see the module docstring for what each one is)."""

    name: str
    version: int
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0  # wall clock, ms since the epoch; 0: never
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    queue_count: int = 0
    queue_ns: int = 0
    compute_count: int = 0  # requests charged a call (the same count for the three phases)
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0
    batches: dict[int, list[int]] = field(default_factory=dict)  # sessions per call -> [calls, input, infer, output ns]

    def executed(self, requests: int, samples: int, *, input_ns: int = 0, infer_ns: int, output_ns: int = 0,
                 queue_ns: int = 0, batch: int = 0) -> None:
        """One onnxruntime call ran ``requests`` requests (``samples`` samples in all).

        ``input_ns`` / ``infer_ns`` / ``output_ns``: the call's three phases (see the module docstring);
        ``queue_ns``: the requests' summed wait for the call; ``batch``: sessions (or sequences) in the call,
        if not ``requests``.
        """
        self.execution_count += 1
        self.inference_count += samples
        self.queue_count += requests
        self.queue_ns += queue_ns
        self.compute_count += requests
        self.input_ns += input_ns * requests
        self.infer_ns += infer_ns * requests
        self.output_ns += output_ns * requests
        batch = batch or requests
        b = self.batches.get(batch)
        if b is None:
            self.batches[batch] = [1, input_ns, infer_ns, output_ns]
        else:
            b[0] += 1
            b[1] += input_ns
            b[2] += infer_ns
            b[3] += output_ns

    def finished(self, ok: bool, ns: int) -> None:
        """A request that reached the data plane was answered (``ok``) or failed, after ``ns``."""
        if ok:
            self.success_count += 1
            self.success_ns += ns
            self.last_inference_ms = time.time_ns() // 1_000_000
        else:
            self.fail_count += 1
            self.fail_ns += ns


class Statistics:
    """:class:`ModelStats` per model name and version, created on first use (one event loop).

    Keyed by name and version, not by the loaded :class:`Model`: a version
    reloaded from disk keeps counting where it was, and an unloaded model
    (its onnxruntime sessions) is not kept alive by its counters.
    """

    def __init__(self) -> None:
        self._by_version: dict[tuple[str, int], ModelStats] = {}

    def of(self, model: Model) -> ModelStats:
        """The counters of ``model`` (a served version)."""
        stats = self._by_version.get((model.name, model.version))
        if stats is None:
            stats = self._by_version[model.name, model.version] = ModelStats(model.name, model.version)
        return stats

    def get(self, name: str, version: int) -> ModelStats:
        """The counters of ``name`` at ``version``, zero if it never ran anything."""
        return self._by_version.get((name, version)) or ModelStats(name, version)
