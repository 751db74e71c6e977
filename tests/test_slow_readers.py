"""Clients that send but do not read their answers, on a real server, both protocols.

The client below disables HTTP/2 BDP probing, so its receive window stays at
64 KiB: a few 16 KiB answers fill it and the server's next write waits for a
read that does not come. In that state:

- ``--stream-idle-timeout`` still ends the stream; the client gets the answers
  written before and then DEADLINE_EXCEEDED (before, the server logged the
  stream OK and the client never got a final status), the server counts and
  logs DEADLINE_EXCEEDED, and the session is resumable where it stopped;
- a client that cancels is counted and logged CANCELLED (before: OK);
- an OIP stream holds a bounded number of requests and unsent answers (before,
  every request was read into an unbounded queue of answers): past the bound
  it stops reading, and flow control stops the client.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from _serving import reference, served
from conftest import MODEL

from eddy.runtime.client import Client
from eddy.runtime.grpc.oip import OIP_SERVICE
from eddy.runtime.grpc.tensors import array_to_tensor
from eddy.v1 import inference_pb2 as pb
from eddy.v1 import oip_pb2 as oip

CHUNK = 4096  # samples per request: a 16 KiB answer
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]  # the client's receive window stays 64 KiB
# Bound on a wait that needs tens of 4096-sample requests computed (an OIP stream reads on while they run, and is
# idle only once every one it read is answered): seconds on a loaded machine; well inside the clients' 60 s deadline.
WAIT_S = 40.0


class Unread:
    """A stream of either protocol whose client sends ``n`` chunks of ``x`` and reads nothing until asked."""

    def __init__(self, address: str, protocol: str, session: str, x: np.ndarray, n: int) -> None:
        self.protocol, self.session = protocol, session
        self._channel = grpc.insecure_channel(address, options=SMALL_WINDOW)
        self._more: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.sent = 0  # requests gRPC took from the client's iterator (it takes the next once one is sent)
        if protocol == "eddy.v1":
            first = pb.StreamRequest(open=pb.OpenStream(model=MODEL, session_id=session)).SerializeToString()
            chunk = pb.StreamRequest(samples=array_to_tensor(x)).SerializeToString()
            self.call = self._channel.stream_stream("/eddy.v1.Inference/Stream", response_deserializer=(
                pb.StreamResponse.FromString))(self._requests([first] + [chunk] * n), timeout=60)
        else:
            inp = oip.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)
            def request(start: bool) -> bytes:
                return oip.ModelInferRequest(model_name=MODEL, inputs=[inp], raw_input_contents=[x.tobytes()], parameters={
                    "sequence_id": oip.InferParameter(string_param=session),
                    "sequence_start": oip.InferParameter(bool_param=start)}).SerializeToString()
            self.call = self._channel.stream_stream(f"/{OIP_SERVICE}/ModelStreamInfer", response_deserializer=(
                oip.ModelStreamInferResponse.FromString))(self._requests([request(True)] + [request(False)] * n),
                                                          timeout=60)

    def _requests(self, messages: list[bytes]) -> Iterator[bytes]:
        for m in messages:
            self.sent += 1
            yield m
        while self._more.get() is not None:  # stays open (no half-close) until the test lets go
            pass

    def read_all(self) -> tuple[int, grpc.RpcError]:
        """Read every answer; the number of answers carrying predictions and how the call ended (an error)."""
        answered = 0
        with pytest.raises(grpc.RpcError) as e:
            for r in self.call:
                answered += r.WhichOneof("kind") == "predictions" if self.protocol == "eddy.v1" else \
                    not r.error_message
        self.close()
        return answered - (self.protocol != "eddy.v1"), e.value  # OIP: the first answer is the START chunk's

    def close(self) -> None:
        self._more.put(None)
        self._channel.close()


def _metric(text: str, method: str, code: str) -> float:
    for line in text.splitlines():
        if line.startswith("eddy_rpcs_total{") and f'method="{method}"' in line and f'code="{code}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _method(protocol: str) -> str:
    return "Stream" if protocol == "eddy.v1" else "ModelStreamInfer"


@pytest.fixture()
def stream_logs(caplog):
    with caplog.at_level(logging.INFO, logger="eddy.streams"):
        yield caplog


@pytest.mark.parametrize("protocol", ["eddy.v1", "OIP"])
def test_idle_timeout_while_blocked_writing_gives_the_client_its_final_status(models_dir, model, protocol,
                                                                              stream_logs):
    x = np.full((CHUNK, 1), 50.0, np.float32)
    # 2 s: the idle clock starts with the stream, and a loaded machine can stall this process (the client's sending
    # thread with it) for most of a second between the open message and the first samples; the stream then ends idle
    # before it is ever blocked writing, which is not what this test is about
    with served(models_dir, stream_idle_timeout=2.0, metrics_port=0) as s:
        # 256 KiB of answers, four times the 64 KiB window (flow control, not time, stops the server: 3-4 answers get
        # through); an OIP stream reads and computes every request it is sent, so the fewer, the faster
        unread = Unread(s.address, protocol, "unread", x, n=16)
        s.until(lambda: _metric(s.server.metrics.render().decode(), _method(protocol), "DEADLINE_EXCEEDED") == 1,
                timeout=WAIT_S)
        s.until_idle("unread")  # released at once, not when the client reads
        answered, e = unread.read_all()  # the answers written before the timeout, then the final status
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "--stream-idle-timeout" in e.details(), e
        assert 0 < answered < 16
        text = s.server.metrics.render().decode()
        assert "eddy_open_streams 0.0" in text and _metric(text, _method(protocol), "OK") == 0
        position = s.server.plane.sessions.get("unread").position
        assert position >= answered * CHUNK  # every answer the client got was applied (and maybe more)
        with Client(s.address) as c, c.stream(MODEL, session_id="unread", resume=True) as rs:
            y = rs.push(x[:2])
    chunks = [x] * (position // CHUNK) + [x[:2]]
    assert np.array_equal(y, reference(model, chunks)[-1])  # resumable exactly where the server stopped
    closes = [r.getMessage() for r in stream_logs.records if "event=stream_close" in r.getMessage()]
    assert len(closes) == 2 and closes[0].endswith("status=DEADLINE_EXCEEDED"), closes


@pytest.mark.parametrize("protocol", ["eddy.v1", "OIP"])
def test_a_client_cancel_while_blocked_writing_is_cancelled(models_dir, protocol, stream_logs):
    x = np.full((CHUNK, 1), 50.0, np.float32)
    with served(models_dir, stream_idle_timeout=None, metrics_port=0) as s:
        unread = Unread(s.address, protocol, "cancelled", x, n=40)
        s.until(lambda: any(c.writing for c in s.server.gate.calls)
                and s.server.plane.sessions.get("cancelled") is not None
                and s.server.plane.sessions.get("cancelled").position >= 4 * CHUNK)  # 4 answers: > the 64 KiB window
        unread.call.cancel()
        s.until(lambda: _metric(s.server.metrics.render().decode(), _method(protocol), "CANCELLED") == 1)
        s.until_idle("cancelled")
        text = s.server.metrics.render().decode()
        unread.close()
    assert _metric(text, _method(protocol), "OK") == 0 and "eddy_open_streams 0.0" in text
    closes = [r.getMessage() for r in stream_logs.records if "event=stream_close" in r.getMessage()]
    assert len(closes) == 1 and closes[0].endswith("status=CANCELLED"), closes


def test_an_oip_client_that_never_reads_holds_a_bounded_amount_and_is_pushed_back(models_dir):
    x = np.full((CHUNK, 1), 50.0, np.float32)
    limit = 128 * 1024  # --max-message-bytes: a stream holds at most twice that (15 requests of 16 KiB, each computed)
    n = 4000  # 64 MiB of requests: more than every HTTP/2 window between the client and eddy
    # the idle timeout must not end the stream before it fills up: a loaded machine can stall this process (the
    # client's sending thread with it) for a second, after which the server finds it idle at once
    with served(models_dir, max_message_bytes=limit, stream_idle_timeout=3.0, max_streams=1, metrics_port=0) as s:
        unread = Unread(s.address, "OIP", "hoard", x, n=n)
        held, ended = None, False

        def full() -> bool:
            nonlocal held, ended
            calls = s.server.gate.calls
            ended = held is not None and not calls  # it was open, and is gone
            held = calls[0].held() if calls else held
            return ended or (held is not None and held.full)

        s.until(full, timeout=WAIT_S)  # it stopped reading: the bound, not the client, decides
        assert not ended, f"the stream ended before it stopped reading; it held {held}"
        assert 0 < held.bytes <= 2 * limit and held.peak_bytes <= 2 * limit and held.messages < 16, held
        assert unread.sent < n / 2, unread.sent  # flow control held the client back
        refused = Unread(s.address, "OIP", "second", x, n=1)  # --max-streams still counts it
        assert refused.read_all()[1].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        s.until(lambda: _metric(s.server.metrics.render().decode(), "ModelStreamInfer", "DEADLINE_EXCEEDED") == 1,
                timeout=WAIT_S)
        assert not s.server.gate.calls  # --stream-idle-timeout ended it: nothing held any more
        answered, e = unread.read_all()
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and answered < 16
        with Client(s.address) as c, c.stream(MODEL, session_id="hoard", resume=True) as rs:  # the slot is free
            assert rs.position > 0
