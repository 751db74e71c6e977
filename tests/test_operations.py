"""Operations over a real server: health, reflection, metrics, shutdown, limits, deadlines, logs."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
import urllib.request

import grpc
import numpy as np
import pytest
from _serving import OTHER, eddy_process, make_repo, reference, served
from conftest import MODEL
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

import eddy.runtime as runtime
from eddy.runtime.client import Client
from eddy.runtime.core.errors import EddyError, InvalidInput, ResourceExhausted
from eddy.runtime.grpc.server import health_service
from eddy.v1 import inference_pb2 as pb

_SERVING, _NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def repo(models_dir, tmp_path_factory):
    return make_repo(models_dir, tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def model(repo) -> runtime.Model:
    return runtime.load(repo / MODEL / "2")


def test_health_per_model_and_not_serving_first_on_shutdown(repo):
    with served(repo) as live:
        channel = grpc.insecure_channel(live.address)
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "eddy.v1.Inference", health_service(MODEL), health_service(OTHER)):
            assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == _SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=health_service(MODEL)), timeout=30)
        assert next(watch).status == _SERVING
        stopping = asyncio.run_coroutine_threadsafe(live.server.stop(grace=10), live.loop)
        assert next(watch).status == _NOT_SERVING  # before the server stops answering
        watch.cancel()
        stopping.result(timeout=30)
        channel.close()


def test_reflection_lists_the_services(repo):
    with served(repo) as live, grpc.insecure_channel(live.address) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert {"eddy.v1.Inference", "grpc.health.v1.Health"} <= set(services)


def test_metrics_endpoint(repo, series):
    with served(repo, metrics_port=0) as live, Client(live.address) as client:
        port = live.server.metrics_port
        assert port and port != live.port
        with client.stream(MODEL, session_id="m1") as rs:
            rs.push(series[:3])
            rs._send_raw(pb.StreamRequest(samples=pb.Tensor(shape=[1, 1], values=[float("nan")])))
        client.predict(MODEL, series[None, :10])
        with pytest.raises(EddyError):
            client.metadata("nope")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in ('eddy_rpcs_total{code="OK",method="Stream"} 1.0',
                 'eddy_rpcs_total{code="OK",method="Predict"} 1.0',
                 'eddy_rpcs_total{code="NOT_FOUND",method="GetModelMetadata"} 1.0',
                 f'eddy_stream_messages_total{{code="OK",model="{MODEL}"}} 1.0',
                 f'eddy_stream_messages_total{{code="INVALID_ARGUMENT",model="{MODEL}"}} 1.0',
                 f'eddy_samples_total{{model="{MODEL}"}} 13.0',
                 "eddy_live_sessions 1.0", "eddy_open_streams 0.0", "eddy_batch_size_count 1.0",
                 "eddy_session_evictions_total 0.0", 'eddy_request_latency_seconds_count{method="Stream"} 3.0'):
        assert line in body, line


def test_graceful_shutdown_lets_open_streams_finish(repo, model, series):
    with served(repo) as live:
        streams = [Client(live.address).stream(MODEL, session_id=f"g{i}") for i in range(3)]
        firsts = [s.push(series[:4]) for s in streams]
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(live.address))
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == _SERVING
        t0 = time.monotonic()
        stopping = asyncio.run_coroutine_threadsafe(live.server.stop(grace=20), live.loop)
        assert next(watch).status == _NOT_SERVING
        watch.cancel()
        with pytest.raises(EddyError) as refused:  # no new streams while draining
            Client(live.address).stream(MODEL)
        assert refused.value.code == "UNAVAILABLE"
        for s, first in zip(streams, firsts):  # open streams are still answered
            second = s.push(series[4:7])
            want = reference(model, [series[:4], series[4:7]])
            assert np.array_equal(first, want[0]) and np.array_equal(second, want[1])
            s.close()
        stopping.result(timeout=30)
        assert time.monotonic() - t0 < 10  # returned when the streams ended, not after the grace period


def test_shutdown_cancels_streams_left_open_after_grace(repo, series):
    with served(repo) as live:
        client = Client(live.address)
        rs = client.stream(MODEL, session_id="stuck")
        rs.push(series[:2])
        asyncio.run_coroutine_threadsafe(live.server.stop(grace=0.2), live.loop).result(timeout=30)
        with pytest.raises(EddyError):
            rs.push(series[2:3])
        assert live.call(lambda: not live.server.plane.sessions.get("stuck").busy)  # released in the finally
        client.close()


def test_too_many_samples_in_band_and_too_large_message_ends_rpc(repo, model, series):
    with served(repo, max_samples_per_message=100, max_message_bytes=2048) as live, Client(live.address) as c:
        with c.stream(MODEL, session_id="lim") as rs:
            rs.push(series[:3])
            with pytest.raises(ResourceExhausted, match="limit is 100"):
                rs.push(series[:101])
            assert np.array_equal(rs.push(series[3:5]), reference(model, [series[:3], series[3:5]])[1])
        rs = c.stream(MODEL, session_id="lim", resume=True)
        with pytest.raises(ResourceExhausted):
            rs.push(np.zeros((600, 1), np.float32))  # 2.4 kB: refused by gRPC, the RPC ends
        live.until_idle("lim")
        with c.stream(MODEL, session_id="lim", resume=True) as rs:
            assert rs.position == 5
            assert np.array_equal(rs.push(series[5:8]), reference(model, [series[:5], series[5:8]])[1])
        with pytest.raises(ResourceExhausted):
            c.predict(MODEL, np.zeros((2, 60, 1), np.float32))  # B*T = 120 > 100


def test_deadlines_are_honoured(repo, model, series):
    with served(repo) as live, Client(live.address) as client:
        rs = client.stream(MODEL, session_id="dl", timeout=0.5)
        rs.push(series[:3])
        time.sleep(0.6)  # let the stream's deadline pass
        with pytest.raises(EddyError) as e:
            rs.push(series[3:4])
        assert e.value.code == "DEADLINE_EXCEEDED"
        live.until_idle("dl")
        with client.stream(MODEL, session_id="dl", resume=True) as again:
            assert again.position == 3
        client.timeout = 0.005
        with pytest.raises(EddyError) as e:  # 40k recurrent steps: ~40 ms even with the native RNN op, >> 5 ms
            client.predict(MODEL, np.full((1, 40_000, 1), 50.0, np.float32))
        assert e.value.code == "DEADLINE_EXCEEDED"


def test_one_log_line_per_stream_open_and_close(live_logs, repo, series):
    with served(repo) as live, Client(live.address) as client:
        with client.stream(MODEL, session_id="logged") as rs:
            rs.push(series[:5])
            with pytest.raises(InvalidInput):
                rs.push(np.zeros((1, 1), np.float32) * np.nan)
        live.until_idle("logged")
    lines = [r.getMessage() for r in live_logs.records if r.name == "eddy.streams"]
    assert lines[0] == f"event=stream_open tenant=- session=logged model={MODEL} version=2 resumed=False position=0"
    assert lines[1].startswith(f"event=stream_close tenant=- session=logged model={MODEL} version=2 resumed=False start=0 "
                               "samples=5 messages=2 rejected=0 duration_s=")
    assert lines[1].endswith(" status=OK") and len(lines) == 2


@pytest.fixture()
def live_logs(caplog):
    with caplog.at_level(logging.INFO, logger="eddy.streams"):
        yield caplog


def test_serve_subprocess_sigterm_drains_open_streams(models_dir, series):
    with eddy_process("serve", "--models", str(models_dir), "--port", "0", "--metrics-port", "0", "--no-batching",
                      "--session-ttl", "30", "--grace", "20", "--log-level", "WARNING") as proc:
        port = int(re.fullmatch(r"eddy: serving \d+ model\(s\) on 127\.0\.0\.1:(\d+)\n", proc.stdout.readline())[1])
        metrics = re.fullmatch(r"eddy: metrics on (http://127\.0\.0\.1:\d+/metrics)\n", proc.stdout.readline())[1]
        assert b"eddy_open_streams" in urllib.request.urlopen(metrics, timeout=10).read()
        local = runtime.load(models_dir / MODEL).stream()
        with Client(f"127.0.0.1:{port}") as client, client.stream(MODEL) as rs:
            assert np.array_equal(rs.push(series[:3]), local.push(series[:3]))
            proc.send_signal(signal.SIGTERM)
            assert proc.stderr.readline() == "eddy: shutting down (grace 20s)\n"
            assert np.array_equal(rs.push(series[3:5]), local.push(series[3:5]))  # still answered
        assert proc.wait(timeout=30) == 0  # exits as soon as the stream ended


def test_a_port_in_use_is_an_error_unless_shared_on_purpose(models_dir):
    from eddy.runtime.grpc.server import start_server

    async def second(port: int, share: bool) -> str:
        from eddy.runtime.serving.config import ServeConfig

        try:
            server, _ = await start_server(models_dir, "127.0.0.1", port, config=ServeConfig(share_port=share))
        except OSError as e:
            return str(e)
        await server.stop(grace=None)
        return "bound"

    with served(models_dir) as first:  # gRPC's default (SO_REUSEPORT) would let the second take part of its clients
        assert "cannot listen on 127.0.0.1" in asyncio.run(second(first.port, share=False))
    with served(models_dir, share_port=True) as first:  # what --workers does: every process says so
        assert asyncio.run(second(first.port, share=True)) == "bound"
