"""How long until the server notices a peer that vanished without closing its connection.

Not a test. Run from the repository root::

    .venv/bin/python bench/bench_dead_peer.py                       # the defaults (keepalive 10 s + 5 s)
    .venv/bin/python bench/bench_dead_peer.py --keepalive-time 20 --keepalive-timeout 10 --repeat 1

A client opens a stream through a loopback TCP relay, pushes a sample, and
then the relay goes silent: it stops moving bytes both ways but keeps both
sockets open, as a powered-off device or a NAT that dropped its mapping
would (no FIN, no RST ever reaches the server). The script then asks the
server, over a direct connection, for the session's state every 0.1 s: it
is FAILED_PRECONDITION (held by a stream) until the server gives up on the
silent peer, ends its stream and releases the session. The figure is the
time from going silent to the first successful answer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class SilentRelay:
    """A loopback TCP relay to ``target`` that can go silent (stop relaying, keep sockets open)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.silent = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while not self.silent.is_set():
                data = await src.read(65536)
                if not data or self.silent.is_set():
                    break
                dst.write(data)
                await dst.drain()
            await asyncio.Event().wait()  # silent: hold both sockets open forever

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def measure(models: Path, keepalive_time: float, keepalive_timeout: float) -> float:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import ThreadedServer

    from eddy.runtime.client import Client
    from eddy.runtime.core.errors import EddyError
    from eddy.runtime.serving.config import ServeConfig

    config = ServeConfig(keepalive_time=keepalive_time, keepalive_timeout=keepalive_timeout,
                         stream_idle_timeout=None)  # only keepalive may end the stream here
    server = ThreadedServer(models, config)
    relay = SilentRelay(server.port)
    sid = f"device-{time.monotonic_ns()}"
    try:
        victim = Client(f"127.0.0.1:{relay.port}")
        stream = victim.stream("sunspots", session_id=sid)
        stream.push(42.0)
        relay.silent.set()
        t0 = time.monotonic()
        with Client(server.address) as direct:
            while True:
                try:
                    direct.session_state(sid)
                    return time.monotonic() - t0
                except EddyError as e:
                    if e.code != "FAILED_PRECONDITION":
                        raise
                time.sleep(0.1)
    finally:
        server.stop()  # the relay's sockets die with the process


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--keepalive-time", type=float, default=None, help="default: ServeConfig's")
    p.add_argument("--keepalive-timeout", type=float, default=None, help="default: ServeConfig's")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    from eddy.runtime.serving.config import ServeConfig

    d = ServeConfig()
    kt = args.keepalive_time if args.keepalive_time is not None else d.keepalive_time
    ko = args.keepalive_timeout if args.keepalive_timeout is not None else d.keepalive_timeout
    times = [measure(args.models, kt, ko) for _ in range(args.repeat)]
    print(f"keepalive_time {kt:g} s, keepalive_timeout {ko:g} s: vanished peer detected after "
          f"{', '.join(f'{t:.1f}' for t in times)} s (median {statistics.median(times):.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
