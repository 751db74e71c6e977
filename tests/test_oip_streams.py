"""OIP ModelStreamInfer under the same stream guards as eddy.v1 Stream, on a real server with raw grpc stubs.

``--max-streams`` and ``--max-streams-per-tenant`` count the streams of both
protocols together, ``--stream-idle-timeout`` ends an OIP stream that sends
nothing, and a request that does not parse ends the stream with
INVALID_ARGUMENT, counted as such. Every case checks afterwards that an honest
sequence is where it was and its next answer exact.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from _serving import reference, served
from conftest import MODEL, ThreadedServer

from eddy.runtime.client import Client
from eddy.runtime.core.errors import EddyError
from eddy.runtime.grpc.oip import OIP_SERVICE
from eddy.runtime.grpc.security import Security, TokenTable, new_token, token_digest
from eddy.runtime.serving.config import ServeConfig
from eddy.v1 import oip_pb2 as pb

HONEST = "honest-oip"


def _request(x: np.ndarray, sid: str, *, start: bool = False, end: bool = False) -> pb.ModelInferRequest:
    inp = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=x.shape)
    params = {"sequence_id": pb.InferParameter(string_param=sid), "sequence_start": pb.InferParameter(bool_param=start),
              "sequence_end": pb.InferParameter(bool_param=end)}
    return pb.ModelInferRequest(model_name=MODEL, inputs=[inp], parameters=params,
                                raw_input_contents=[x.astype("<f4").tobytes()])


def _y(r: pb.ModelInferResponse) -> np.ndarray:
    return np.frombuffer(r.raw_output_contents[0], "<f4").reshape(-1, 1)


def _infer(address: str, request: pb.ModelInferRequest, token: str | None = None) -> pb.ModelInferResponse:
    with grpc.insecure_channel(address) as channel:
        rpc = channel.unary_unary(f"/{OIP_SERVICE}/ModelInfer", request_serializer=pb.ModelInferRequest.SerializeToString,
                                  response_deserializer=pb.ModelInferResponse.FromString)
        return rpc(request, timeout=30, metadata=_auth(token))


def _auth(token: str | None) -> list[tuple[str, str]] | None:
    return [("authorization", f"Bearer {token}")] if token else None


class OpenStream:
    """A ModelStreamInfer call kept open: :meth:`send` bytes or a request, :meth:`answer` the next response."""

    def __init__(self, address: str, token: str | None = None) -> None:
        self._channel = grpc.insecure_channel(address)
        self._out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        rpc = self._channel.stream_stream(f"/{OIP_SERVICE}/ModelStreamInfer",
                                          response_deserializer=pb.ModelStreamInferResponse.FromString)
        self.call = rpc(self._requests(), timeout=60, metadata=_auth(token))

    def _requests(self) -> Iterator[bytes]:
        while (data := self._out.get()) is not None:
            yield data

    def send(self, request: pb.ModelInferRequest | bytes) -> None:
        self._out.put(request if isinstance(request, bytes) else request.SerializeToString())

    def answer(self) -> pb.ModelStreamInferResponse:
        return next(self.call)

    def error(self) -> grpc.RpcError:
        """How the call ended (it must end with an error status)."""
        with pytest.raises(grpc.RpcError) as e:
            for _ in self.call:
                pass
        self._out.put(None)  # lets the request thread go
        self._channel.close()
        return e.value

    def close(self) -> None:
        self._out.put(None)  # half-close: the server answers what is left and ends the call OK
        for _ in self.call:
            pass
        self._channel.close()


def _start_honest(address: str, series: np.ndarray, token: str | None = None) -> None:
    _infer(address, _request(series[:3], HONEST, start=True), token)


def _check_honest(server: ThreadedServer, model, series: np.ndarray, token: str | None = None,
                  tenant: str = "") -> None:
    """The honest sequence (of ``tenant``) is idle at position 3 and its next step is exact."""
    def idle_at_3() -> bool:
        info = server.server.plane.sessions.get(HONEST, tenant)
        return info is not None and not info.busy and info.position == 3

    server.until(idle_at_3)
    y = _y(_infer(server.address, _request(series[3:5], HONEST, end=True), token))
    assert np.array_equal(y, reference(model, [series[:3], series[3:5]])[1])


def _metric(text: str, method: str, code: str) -> float:
    for line in text.splitlines():
        if line.startswith("eddy_rpcs_total{") and f'method="{method}"' in line and f'code="{code}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_both_protocols_share_max_streams(models_dir, model, series):
    with served(models_dir, max_streams=2, metrics_port=0) as s, Client(s.address) as c:
        _start_honest(s.address, series)
        v1 = c.stream(MODEL)  # one eddy.v1 stream ...
        oip = OpenStream(s.address)  # ... and one OIP stream: the limit
        oip.send(_request(series[:1], "ms-a", start=True))
        assert not oip.answer().error_message
        refused = OpenStream(s.address)
        e = refused.error()
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-streams 2" in e.details()
        with pytest.raises(EddyError) as ee:
            c.stream(MODEL)  # an eddy.v1 stream counts against the same limit
        assert ee.value.code == "RESOURCE_EXHAUSTED"
        oip.close()
        again = OpenStream(s.address)  # a slot is free again
        again.send(_request(series[1:2], "ms-a"))
        assert np.array_equal(_y(again.answer().infer_response), reference(model, [series[:1], series[1:2]])[1])
        again.close()
        v1.close()
        s.until(lambda: s.server.plane.sessions.busy_count == 0)
        text = s.server.metrics.render().decode()
        _check_honest(s, model, series)
    assert _metric(text, "ModelStreamInfer", "RESOURCE_EXHAUSTED") == 1
    assert _metric(text, "Stream", "RESOURCE_EXHAUSTED") == 1
    assert _metric(text, "ModelStreamInfer", "OK") == 2
    assert "eddy_open_streams 0.0" in text


def test_max_streams_per_tenant_counts_oip_streams(models_dir, tmp_path, model, series):
    toks = {"alpha": new_token(), "beta": new_token()}
    (tmp_path / "tokens").write_text("".join(f"{t} {token_digest(k)}\n" for t, k in toks.items()))
    s = ThreadedServer(models_dir, ServeConfig(max_streams_per_tenant=1), Security(tokens=TokenTable(tmp_path / "tokens")))
    try:
        _start_honest(s.address, series, toks["beta"])
        a = OpenStream(s.address, toks["alpha"])
        a.send(_request(series[:1], "pt-a", start=True))
        assert not a.answer().error_message
        e = OpenStream(s.address, toks["alpha"]).error()  # alpha's second stream, on either protocol
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-streams-per-tenant 1" in e.details()
        with Client(s.address, token=toks["alpha"]) as c, pytest.raises(EddyError) as ee:
            c.stream(MODEL)
        assert ee.value.code == "RESOURCE_EXHAUSTED"
        b = OpenStream(s.address, toks["beta"])  # beta is not held back by alpha
        b.send(_request(series[:1], "pt-b", start=True, end=True))
        assert not b.answer().error_message
        b.close()
        a.close()
        _check_honest(s, model, series, toks["beta"], "beta")
    finally:
        s.stop()


def test_idle_oip_stream_ends_with_deadline_exceeded_and_stays_resumable(models_dir, model, series):
    with served(models_dir, stream_idle_timeout=0.3, metrics_port=0) as s:
        _start_honest(s.address, series)
        sleepy = OpenStream(s.address)
        sleepy.send(_request(series[:2], "oip-sleepy", start=True))
        assert not sleepy.answer().error_message
        e = sleepy.error()  # nothing more is sent: the server ends it
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "--stream-idle-timeout" in e.details()
        s.until_idle("oip-sleepy")
        y = _y(_infer(s.address, _request(series[2:4], "oip-sleepy")))
        assert np.array_equal(y, reference(model, [series[:2], series[2:4]])[1])
        s.until(lambda: _metric(s.server.metrics.render().decode(), "ModelStreamInfer", "DEADLINE_EXCEEDED") == 1)
        assert "eddy_open_streams 0.0" in s.server.metrics.render().decode()
        _check_honest(s, model, series)


def test_malformed_request_mid_stream_ends_it_invalid_argument_counted_as_such(models_dir, model, series):
    with served(models_dir, metrics_port=0) as s:
        _start_honest(s.address, series)
        st = OpenStream(s.address)
        st.send(_request(series[:1], "mm", start=True))
        st.send(b"\x0a\xff\xff\xff\x0f")  # does not parse
        st.send(_request(series[1:2], "mm"))  # never read: the stream ends at the bad request
        first = st.answer()  # what came before the bad request is answered
        e = st.error()
        assert not first.error_message and np.array_equal(_y(first.infer_response), reference(model, [series[:1]])[0])
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.details() == "malformed request: 5 byte(s) do not parse as inference.ModelInferRequest"
        s.until_idle("mm")
        assert s.server.plane.sessions.get("mm").position == 1  # the request after it did not run
        s.until(lambda: _metric(s.server.metrics.render().decode(), "ModelStreamInfer", "INVALID_ARGUMENT") == 1)
        text = s.server.metrics.render().decode()
        assert _metric(text, "ModelStreamInfer", "INTERNAL") == 0
        _check_honest(s, model, series)
