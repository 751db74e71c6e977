"""Drive a server with the real ``tritonclient.grpc``, one JSON command per stdin line, one JSON answer per line.

Runs inside ``.venv-compat`` (tritonclient needs protobuf < 7; see
``_compat_venv.py``); the tests talk to it through :class:`TritonWorker` in
``_tritonclient.py``. Arrays travel as base64 little-endian bytes so answers
can be compared bit for bit. Commands (``op``):

- ``connect`` ``url``; ``call`` ``method`` ``args`` ``kwargs``: any client method
  (``as_json=True`` for proto answers);
- ``infer``: one ``client.infer`` (``model``, ``x``, ``shape``, ``datatype``,
  ``sequence_id``/``sequence_start``/``sequence_end``, ``outputs``, ``input_name``);
- ``stream``: ``start_stream``, then each of ``requests`` sent by
  ``async_stream_infer`` only after the previous one was answered, then ``stop_stream``;
- ``selftest``: import eddy's generated modules and tritonclient in this one process, and build
  eddy's reflection pool (which declares ``inference.GRPCInferenceService`` too) next to them.

Errors come back as ``{"ok": false, "status": ..., "message": ...}``.
"""

from __future__ import annotations

import base64
import json
import queue
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

_client: tc.InferenceServerClient | None = None


def _array(spec: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(spec.get("dtype", "<f4"))
    return np.frombuffer(base64.b64decode(spec["x"]), dtype=dtype).reshape(spec["shape"])


def _inputs(spec: dict[str, Any]) -> list[tc.InferInput]:
    x = _array(spec)
    inp = tc.InferInput(spec.get("input_name", "x"), list(x.shape), spec.get("datatype", "FP32"))
    inp.set_data_from_numpy(x)
    return [inp]


def _outputs(spec: dict[str, Any]) -> list[tc.InferRequestedOutput] | None:
    names = spec.get("outputs")
    return None if names is None else [tc.InferRequestedOutput(n) for n in names]


def _sequence(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: spec[k] for k in ("sequence_id", "sequence_start", "sequence_end") if k in spec}


def _result(result: tc.InferResult) -> dict[str, Any]:
    response = result.get_response()
    out = response.outputs[0]
    y = result.as_numpy(out.name)
    return {"ok": True, "name": out.name, "datatype": out.datatype, "shape": list(y.shape),
            "y": base64.b64encode(np.ascontiguousarray(y, "<f4").tobytes()).decode(),
            "model_name": response.model_name, "model_version": response.model_version, "id": response.id,
            "raw_outputs": len(response.raw_output_contents)}


def _error(e: InferenceServerException) -> dict[str, Any]:
    return {"ok": False, "status": e.status(), "message": e.message()}


def _stream(cmd: dict[str, Any]) -> list[dict[str, Any]]:
    answers: queue.Queue[dict[str, Any]] = queue.Queue()

    def callback(result: tc.InferResult | None, error: InferenceServerException | None) -> None:
        answers.put(_error(error) if error is not None else _result(result))

    _client.start_stream(callback=callback)
    try:
        out = []
        for i, req in enumerate(cmd["requests"]):
            _client.async_stream_infer(cmd["model"], _inputs(req), outputs=_outputs(req), request_id=str(i),
                                       **_sequence(req))
            out.append(answers.get(timeout=60))
        return out
    finally:
        _client.stop_stream()


def _selftest() -> dict[str, Any]:
    import google.protobuf
    from tritonclient.grpc import service_pb2

    from eddy.runtime.grpc import oip  # noqa: F401  (the servicer module imports in the same process)
    from eddy.runtime.grpc.oip_service import reflection_pool
    from eddy.v1 import inference_pb2, oip_pb2
    reflected = reflection_pool(["eddy.v1.Inference", "inference.GRPCInferenceService"])  # eddy's own pool
    return {"ok": True, "protobuf": google.protobuf.__version__, "eddy": inference_pb2.DESCRIPTOR.package,
            "eddy_oip": oip_pb2.DESCRIPTOR.package, "triton": service_pb2.DESCRIPTOR.package,
            "reflected": reflected.FindServiceByName("inference.GRPCInferenceService").methods_by_name[
                "ModelInfer"].input_type.full_name,
            "triton_service": service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name}


def handle(cmd: dict[str, Any]) -> Any:
    global _client
    op = cmd["op"]
    try:
        if op == "connect":
            _client = tc.InferenceServerClient(cmd["url"])
            return {"ok": True}
        if op == "call":
            return {"ok": True, "value": getattr(_client, cmd["method"])(*cmd.get("args", []), **cmd.get("kwargs", {}))}
        if op == "infer":
            result = _client.infer(cmd["model"], _inputs(cmd), outputs=_outputs(cmd), request_id=cmd.get("id", ""),
                                   **_sequence(cmd))
            return _result(result)
        if op == "stream":
            return {"ok": True, "answers": _stream(cmd)}
        if op == "selftest":
            return _selftest()
    except InferenceServerException as e:
        return _error(e)
    return {"ok": False, "status": "worker", "message": f"unknown op {op!r}"}


def main() -> None:
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "exit":
            break
        print(json.dumps(handle(cmd)), flush=True)
    if _client is not None:
        _client.close()


if __name__ == "__main__":
    main()
