"""The layers hold: each import, run in a fresh interpreter, loads nothing from a layer above or beside it.

core <- serving <- grpc; the data plane knows no wire and no metrics library.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import ROOT

WIRE = ("grpc", "grpc_health", "grpc_reflection", "google.protobuf", "eddy.v1")
METRICS = ("prometheus_client",)
HEAVY = ("tensorflow", "keras", "tf2onnx", "eddy.trainer", "eddy.cli")


def _loaded(module: str, prefixes: tuple[str, ...]) -> list[str]:
    """Modules starting with one of ``prefixes`` that ``import module`` loads in a fresh interpreter."""
    script = textwrap.dedent(f"""
        import sys
        import {module}
        hits = sorted(m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in {prefixes!r}))
        print(",".join(hits))
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [m for m in r.stdout.strip().split(",") if m]


SERVING = ["eddy.runtime.serving.dataplane", "eddy.runtime.serving.repository", "eddy.runtime.serving.sessions",
           "eddy.runtime.serving.batcher", "eddy.runtime.serving.config", "eddy.runtime.serving.metrics",
           "eddy.runtime.serving.sequences", "eddy.runtime.serving.store.memory"]  # all but prometheus and redis


def test_serving_imports_no_wire_and_no_metrics_library():
    """The data plane and everything it uses: no grpc, protobuf, eddy.v1 or prometheus_client."""
    assert _loaded(", ".join(SERVING), (*WIRE, *METRICS, "eddy.runtime.grpc", "eddy.runtime.client", *HEAVY)) == []


def test_core_imports_nothing_above_it():
    assert _loaded("eddy.runtime", (*WIRE, *METRICS, "eddy.runtime.serving", "eddy.runtime.grpc",
                                    "eddy.runtime.client", *HEAVY)) == []


def test_server_without_metrics_does_not_load_prometheus():
    """prometheus_client is loaded only by the Prometheus implementation, when metrics are on."""
    assert _loaded("eddy.runtime.grpc.server", METRICS) == []
    assert "prometheus_client" in _loaded("eddy.runtime.serving.prometheus", METRICS)  # the check can see it


def test_client_imports_without_onnxruntime():
    """``eddy.runtime.client`` validates samples with numpy alone: onnxruntime may be absent."""
    code = ("import sys; sys.modules['onnxruntime'] = None; import eddy.runtime.client; "
            "from eddy.runtime.client import Client; print(Client.__name__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "Client", r.stderr
    assert _loaded("eddy.runtime.client", ("onnxruntime", "eddy.runtime.serving.dataplane", *HEAVY)) == []


def test_runtime_package_loads_onnxruntime_on_first_use():
    script = ("import sys, eddy.runtime as er; before = 'onnxruntime' in sys.modules; "
              "print(before, er.load.__module__, er.Model.__name__, 'onnxruntime' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["False", "eddy.runtime.core.model", "Model", "True"], r.stderr
