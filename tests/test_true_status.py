"""A client process killed mid-stream is counted and logged CANCELLED, not OK; an honest half-close stays OK.

Both protocols: eddy.v1 ``Stream`` and OIP ``ModelStreamInfer``.

The client runs in a real subprocess that the test SIGKILLs: its OS closes the
connections cleanly, which grpc.aio shows the server as the end of the request
stream, exactly like a half-close.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable

from _serving import served
from conftest import MODEL, ROOT

from eddy.runtime.client import Client

KILLED = 3  # streams the killed client holds open, each on its own connection

def _run_then_kill(source: str, address: str, wait_open: Callable[[], None] = lambda: None) -> None:
    """Run ``source`` in a subprocess until it prints ``ready`` and ``wait_open()`` returns, then SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", source, address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line == "ready\n", line + proc.stderr.read()
        wait_open()
    finally:
        proc.kill()  # SIGKILL: no cancel, no GOAWAY; the kernel closes the sockets
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


_CLIENT = f"""
import sys, threading
import numpy as np
from eddy.runtime.client import Client

address = sys.argv[1]
x = np.array([[40.0], [41.0], [42.0]], np.float32)
with Client(address) as honest, honest.stream({MODEL!r}, session_id="honest") as s:
    s.push(x)  # all answers received, then a normal half-close
clients = [Client(address) for _ in range({KILLED})]  # one channel (connection) each
streams = [c.stream({MODEL!r}, session_id=f"killed-{{i}}") for i, c in enumerate(clients)]
for s in streams:
    s.push(x)
print("ready", flush=True)
threading.Event().wait()  # until SIGKILL
"""


def test_a_killed_client_is_cancelled_and_a_half_close_is_ok(models_dir, caplog):
    caplog.set_level(logging.INFO, logger="eddy.streams")
    with served(models_dir, metrics_port=0) as s:
        _run_then_kill(_CLIENT, s.address, lambda: s.until(lambda: s.server.plane.sessions.busy_count == KILLED))
        s.until(lambda: s.server.plane.sessions.busy_count == 0)  # every killed stream ended on the server
        text = s.server.metrics.render().decode()
        with Client(s.address) as c:  # the killed streams' sessions are idle and resumable where they were
            assert [c.session_state(f"killed-{i}").position for i in range(KILLED)] == [3] * KILLED
    assert f'eddy_rpcs_total{{code="CANCELLED",method="Stream"}} {KILLED:.1f}' in text, text
    assert 'eddy_rpcs_total{code="OK",method="Stream"} 1.0' in text, text  # the honest half-close only
    closes = {m.split("session=")[1].split()[0]: m.split("status=")[1].split()[0]
              for m in (r.getMessage() for r in caplog.records) if "event=stream_close" in m}
    assert closes == {"honest": "OK", **{f"killed-{i}": "CANCELLED" for i in range(KILLED)}}, closes


_OIP_CLIENT = f"""
import queue, sys, threading
import grpc
import numpy as np
from eddy.runtime.grpc.oip import OIP_SERVICE
from eddy.v1 import oip_pb2 as pb

address = sys.argv[1]


def request(sid, start):
    x = np.array([[40.0]], np.float32)
    inp = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)
    params = {{"sequence_id": pb.InferParameter(string_param=sid), "sequence_start": pb.InferParameter(bool_param=start)}}
    return pb.ModelInferRequest(model_name={MODEL!r}, inputs=[inp], parameters=params,
                                raw_input_contents=[x.tobytes()])


def open_stream(channel, requests):
    rpc = channel.stream_stream(f"/{{OIP_SERVICE}}/ModelStreamInfer",
                                request_serializer=pb.ModelInferRequest.SerializeToString,
                                response_deserializer=pb.ModelStreamInferResponse.FromString)
    return rpc(requests)


with grpc.insecure_channel(address) as honest:  # every answer received, then a normal half-close
    answers = list(open_stream(honest, iter([request("honest", True), request("honest", False)])))
    assert len(answers) == 2 and not any(a.error_message for a in answers), answers
calls = []
for i in range({KILLED}):  # one channel (connection) each, kept open until SIGKILL
    q = queue.SimpleQueue()
    q.put(request(f"killed-{{i}}", True))
    call = open_stream(grpc.insecure_channel(address), iter(q.get, None))
    assert not next(call).error_message
    calls.append((q, call))
print("ready", flush=True)
threading.Event().wait()  # until SIGKILL
"""


def test_a_killed_oip_client_is_cancelled_and_a_half_close_is_ok(models_dir, caplog):
    with served(models_dir, metrics_port=0) as s:
        _run_then_kill(_OIP_CLIENT, s.address)  # "ready" follows each stream's first answer: all are open
        method = 'method="ModelStreamInfer"'
        s.until(lambda: f'eddy_rpcs_total{{code="CANCELLED",{method}}} {KILLED:.1f}' in s.server.metrics.render().decode())
        text = s.server.metrics.render().decode()
        with Client(s.address) as c:  # the killed sequences are idle and resumable where they were
            assert [c.session_state(f"killed-{i}").position for i in range(KILLED)] == [1] * KILLED
    assert f'eddy_rpcs_total{{code="OK",{method}}} 1.0' in text, text  # the honest half-close only
