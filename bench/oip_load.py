"""Closed-loop sequence load over the Open Inference Protocol with tritonclient (run in .venv-compat).

Used by ``bench/bench_triton.py``, which runs it under the tritonclient venv
against eddy and against Triton alike. ``N`` threads, each with its own
``InferenceServerClient`` (own channel) and its own sequence: send one step
``x[1, F]`` (``infer`` with ``sequence_id``/``sequence_start``, or
``async_stream_infer`` on the thread's own stream), wait for the answer,
repeat. ``--mode mux``: one client and one stream carry all ``N`` sequences
(Triton's perf_analyzer style); each answer sends that sequence's next step.
Steps answered inside the measured window count; the window opens after
``--warmup`` seconds. Prints one JSON object: steps, seconds, every
latency in ms (for percentiles across processes), the client's CPU seconds
and, with ``--record K``, the first K outputs of sequence 0 (base64 float32)
for an exactness check.

    python bench/oip_load.py --url 127.0.0.1:8001 --model lstm --mode infer --sequences 16 --duration 5
    python bench/oip_load.py --url 127.0.0.1:8001 --wait-ready 60      # only wait until the server is ready
"""

from __future__ import annotations

import argparse
import base64
import json
import queue
import resource
import sys
import threading
import time

import numpy as np
import tritonclient.grpc as tc


def _inputs(seq: int, features: int, n: int = 256) -> np.ndarray:
    """Deterministic steps for sequence ``seq``: ``[n, 1, F]`` float32, cycled."""
    return np.random.default_rng(seq).standard_normal((n, 1, features)).astype(np.float32)


def _one(inp: np.ndarray) -> list[tc.InferInput]:
    x = tc.InferInput("x", [1, inp.shape[-1]], "FP32")
    x.set_data_from_numpy(inp)
    return [x]


def _worker(args: argparse.Namespace, seq: int, t_start: float, t_end: float, out: dict) -> None:
    client = tc.InferenceServerClient(args.url)
    xs = _inputs(seq, args.features)
    sid = args.id_base + seq
    lat, recorded = [], []
    answers: queue.Queue = queue.Queue()
    if args.mode == "stream":
        client.start_stream(callback=lambda result, error: answers.put((result, error)))

    def step(i: int, start: bool, end: bool) -> np.ndarray:
        inputs = _one(xs[i % len(xs)])
        if args.mode == "infer":
            return client.infer(args.model, inputs, sequence_id=sid, sequence_start=start,
                                sequence_end=end).as_numpy("y")
        client.async_stream_infer(args.model, inputs, sequence_id=sid, sequence_start=start, sequence_end=end)
        result, error = answers.get(timeout=60)
        if error is not None:
            raise error
        return result.as_numpy("y")

    i = 0
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                break
            y = step(i, i == 0, False)
            t1 = time.perf_counter()
            if seq == 0 and len(recorded) < args.record:
                recorded.append(np.ascontiguousarray(y, "<f4").tobytes())
            if t0 >= t_start and t1 <= t_end:
                lat.append((t1 - t0) * 1e3)
            i += 1
        step(i, False, True)  # END: the server drops the sequence (not measured)
    finally:
        if args.mode == "stream":
            client.stop_stream()
        client.close()
    out[seq] = (lat, recorded)


def _mux(args: argparse.Namespace, t_start: float, t_end: float) -> dict:
    """All sequences over one stream: the callback answers each result with that sequence's next step."""
    client = tc.InferenceServerClient(args.url)
    seqs = range(args.first, args.first + args.sequences)
    xs = {q: _inputs(q, args.features) for q in seqs}
    sent, steps, lat, recorded = {}, dict.fromkeys(seqs, 0), {q: [] for q in seqs}, []
    done, failed = threading.Event(), []
    lock = threading.Lock()

    def send(q: int, end: bool = False) -> None:
        i = steps[q]
        sent[q] = time.perf_counter()
        client.async_stream_infer(args.model, _one(xs[q][i % len(xs[q])]), request_id=str(q),
                                  sequence_id=args.id_base + q, sequence_start=i == 0, sequence_end=end)

    def callback(result: tc.InferResult | None, error: Exception | None) -> None:
        if error is not None:
            failed.append(error)
            done.set()
            return
        t1 = time.perf_counter()
        q = int(result.get_response().id)
        with lock:
            t0 = sent[q]
            if q == 0 and len(recorded) < args.record:
                recorded.append(np.ascontiguousarray(result.as_numpy("y"), "<f4").tobytes())
            if t0 >= t_start and t1 <= t_end:
                lat[q].append((t1 - t0) * 1e3)
            steps[q] += 1
            if t1 < t_end:
                send(q)
            else:
                steps[q] = -1
                if all(v < 0 for v in steps.values()):
                    done.set()

    client.start_stream(callback=callback)
    with lock:
        for q in seqs:
            send(q)
    done.wait(args.warmup + args.duration + 60)
    client.stop_stream()
    client.close()
    if failed:
        raise failed[0]
    return {q: (lat[q], recorded if q == 0 else []) for q in seqs}


def _wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client = tc.InferenceServerClient(url)
    while True:
        try:
            if client.is_server_ready():
                return
        except Exception:  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"server at {url} not ready after {timeout:g} s")
        time.sleep(0.2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--model", default="lstm")
    p.add_argument("--mode", choices=["infer", "stream", "mux"], default="infer")
    p.add_argument("--sequences", type=int, default=1, help="concurrent sequences, one thread each (default 1)")
    p.add_argument("--first", type=int, default=0, help="index of this process's first sequence (default 0)")
    p.add_argument("--id-base", type=int, default=1000, help="sequence_id of sequence 0 (default 1000)")
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds after the warm-up (default 8)")
    p.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at (aligns processes)")
    p.add_argument("--record", type=int, default=0, help="return sequence 0's first K outputs (default 0)")
    p.add_argument("--wait-ready", type=float, default=0.0, help="only wait until the server is ready")
    args = p.parse_args()
    if args.wait_ready:
        _wait_ready(args.url, args.wait_ready)
        return 0
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    now = time.perf_counter()
    t_start, t_end = now + args.warmup, now + args.warmup + args.duration
    out: dict = {}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    if args.mode == "mux":
        out = _mux(args, t_start, t_end)
    else:
        threads = [threading.Thread(target=_worker, args=(args, args.first + k, t_start, t_end, out))
                   for k in range(args.sequences)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    if len(out) != args.sequences:
        print(f"oip_load: {args.sequences - len(out)} sequence thread(s) failed (see above)", file=sys.stderr)
        return 1
    lat = [v for lats, _ in out.values() for v in lats]
    recorded = out.get(0, ([], []))[1]
    json.dump({"steps": len(lat), "seconds": args.duration, "latencies_ms": lat,
               "client_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
               "recorded": [base64.b64encode(b).decode() for b in recorded]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
