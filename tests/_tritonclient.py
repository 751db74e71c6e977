"""The real tritonclient, run in ``.venv-compat`` as a worker process the tests send commands to."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from _compat_venv import compat_python

__all__ = ["TritonWorker", "decode", "encode"]

WORKER = Path(__file__).with_name("_triton_worker.py")


def encode(x: np.ndarray) -> dict[str, Any]:
    """An array as the worker's ``x``/``shape``/``dtype`` fields (bytes kept exactly)."""
    x = np.asarray(x)
    dtype = x.dtype.newbyteorder("<") if x.dtype.byteorder == ">" else x.dtype
    return {"x": base64.b64encode(np.ascontiguousarray(x, dtype).tobytes()).decode(), "shape": list(x.shape),
            "dtype": dtype.str}


def decode(answer: dict[str, Any]) -> np.ndarray:
    """The float32 output of a successful worker answer."""
    assert answer["ok"], answer
    return np.frombuffer(base64.b64decode(answer["y"]), "<f4").reshape(answer["shape"])


class TritonWorker:
    """``_triton_worker.py`` under the compat venv's Python; :meth:`send` one command, get its answer."""

    def __init__(self, url: str, python: Path | None = None) -> None:
        self.proc = subprocess.Popen([str(python or compat_python()), str(WORKER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.send(op="connect", url=url)

    def send(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"tritonclient worker died (exit {self.proc.wait()}); see stderr above")
        return json.loads(line)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A client method's return value (``as_json=True`` for protobuf answers); raises on an error answer."""
        answer = self.send(op="call", method=method, args=list(args), kwargs=kwargs)
        assert answer["ok"], answer
        return answer["value"]

    def infer(self, model: str, x: np.ndarray, **params: Any) -> dict[str, Any]:
        """One unary ``infer``: ``params`` are ``sequence_id``/``sequence_start``/``sequence_end``/``datatype``/..."""
        return self.send(op="infer", model=model, **encode(x), **params)

    def stream(self, model: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``requests`` (each ``encode(x)`` plus sequence params) over one stream, one at a time; their answers."""
        answer = self.send(op="stream", model=model, requests=requests)
        assert answer["ok"], answer
        return answer["answers"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(op="exit")
            except (BrokenPipeError, RuntimeError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
