"""Python clients for ``eddy serve``: synchronous (:class:`Client`) and asyncio (:class:`AsyncClient`).

::

    from eddy.runtime.client import Client
    with Client("127.0.0.1:50051") as client:
        print(client.list_models())                 # {"sunspots": [1]}
        with client.stream("sunspots") as stream:   # same push/close as a local Stream
            y = stream.push(42.0)                   # [1, O] raw-unit predictions

``client.fleet(name)`` drives many sessions per message (``fleet.push(ids, x[N, k, F])``,
see :mod:`eddy.runtime.client.fleet`). The asyncio client has the same methods, awaited (``async with client.stream(...)
as s: y = await s.push(42.0)``), on grpc.aio without extra threads; see
:mod:`eddy.runtime.client.aio`.

Errors come back as the :mod:`eddy.runtime.core.errors` class matching the status
(INVALID_ARGUMENT -> :class:`InvalidInput`, NOT_FOUND -> :class:`NotFound`,
UNAVAILABLE -> :class:`Unavailable`, ...), whether the server sent them in-band or
ended the RPC with them. Codes without their own class (INTERNAL, ...) raise a plain
:class:`EddyError` whose ``code`` is the status name.
"""

from __future__ import annotations

from ..grpc.headers import SESSION_HEADER
from .aio import AsyncClient, AsyncRemoteStream
from .client import Client
from .fleet import AsyncRemoteFleet, FleetResult, RemoteFleet
from .stream import RemoteStream

__all__ = ["SESSION_HEADER", "AsyncClient", "AsyncRemoteFleet", "AsyncRemoteStream", "Client", "FleetResult",
           "RemoteFleet", "RemoteStream"]
