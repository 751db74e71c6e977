"""perf_analyzer (Triton's C++ load generator) drives a real `eddy serve` unchanged: no --shape, server-side table.

Needs ``.venv-perf-analyzer`` (``make bench-triton`` builds it; see
``tests/_perf_analyzer.py``); skipped with the reason when it is not there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from _perf_analyzer import PerfAnalyzer, PerfAnalyzerUnavailable, errors, find, server_side
from _serving import eddy_process
from conftest import MODEL


@pytest.fixture(scope="module")
def perf_analyzer() -> PerfAnalyzer:
    try:
        return find()
    except PerfAnalyzerUnavailable as e:
        pytest.skip(f"perf_analyzer is not available: {e}")


@pytest.fixture(scope="module")
def eddy_serve(models_dir) -> Iterator[str]:
    """`eddy serve` on a free port, as a process of its own; its address."""
    with eddy_process("serve", "--models", str(models_dir), "--port", "0") as proc:
        line = proc.stdout.readline()
        match = re.search(r"on (\S+:\d+)", line)
        assert match, line + proc.stderr.read()
        yield match.group(1)
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "streaming"])
def test_perf_analyzer_runs_sequences_against_eddy_and_shows_its_server_side_table(perf_analyzer, eddy_serve,
                                                                                   series, tmp_path, streaming):
    steps = tmp_path / "steps.json"  # the series' first 20 samples, one per request, x shaped [F] (no --shape)
    steps.write_text(json.dumps({"data": [[{"x": [float(v) for v in row]} for row in series[:20]]]}))
    first_id = 1_000_000 if streaming else 2_000_000  # fresh ids, never reused (no end to the range)
    r = perf_analyzer.run("-m", MODEL, "-u", eddy_serve, "-i", "grpc", "--input-data", str(steps),
                          "--sequence-length", "20", "--sequence-length-variation", "0",
                          "--sequence-id-range", str(first_id), "--concurrency-range", "2:2", "--serial-sequences",
                          "--measurement-interval", "500", "-s", "999", "--max-trials", "3",
                          *(["--streaming"] if streaming else []))
    assert r.returncode == 0 and not errors(r.stdout + r.stderr), r.stdout + r.stderr
    server = server_side(r.stdout)
    assert server is not None, r.stdout  # ServerMetadata lists `statistics`; perf_analyzer accepted the counts
    # one sample per request: the counts differ only by requests in flight when perf_analyzer took its two
    # snapshots (computed, not answered yet), at most one per sequence at each
    assert server["success_count"] > 0 and abs(server["inference_count"] - server["success_count"]) <= 2
    assert 0 < server["execution_count"] <= server["inference_count"]  # steps of both sequences may share a call
    assert server["compute_infer_us"] > 0 and server["request_us"] >= server["compute_infer_us"], r.stdout
