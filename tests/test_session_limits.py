"""One contract, both session stores: ALREADY_EXISTS, --max-sessions and --max-sessions-per-tenant, served.

Every case runs against a real server on the memory store and on a real
Valkey store (``--session-store``), so the two cannot drift apart again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from _serving import reference
from _store import Valkey, valkey
from conftest import MODEL, ThreadedServer

from eddy.runtime.client import Client
from eddy.runtime.core.errors import EddyError
from eddy.runtime.grpc.security import Security, TokenTable, new_token, token_digest
from eddy.runtime.serving.config import ServeConfig

TENANTS = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> tuple[dict[str, str], TokenTable]:
    toks = {t: new_token() for t in TENANTS}
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text("".join(f"{t} {token_digest(k)}\n" for t, k in toks.items()))
    return toks, TokenTable(path)


@pytest.fixture(scope="module")
def store_server(tmp_path_factory) -> Iterator[Valkey]:
    with valkey(tmp_path_factory.mktemp("valkey")) as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def serve(request, models_dir, tokens, store_server) -> Iterator:
    """``serve(**config)``: a server on the parametrised store (an emptied Valkey for "redis"), with tokens."""
    started: list[ThreadedServer] = []

    def start(**config: object) -> ThreadedServer:
        if request.param == "redis":
            store_server.client().flushdb()
            config["session_store"] = store_server.url
        started.append(ThreadedServer(models_dir, ServeConfig(**config), Security(tokens=tokens[1])))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def _code(call) -> tuple[str, str]:
    with pytest.raises(EddyError) as e:
        call()
    return e.value.code, e.value.message


def _clients(server: ThreadedServer, tokens) -> dict[str, Client]:
    return {t: Client(server.address, token=tokens[0][t], timeout=10) for t in TENANTS}


def test_a_known_id_without_resume_is_already_exists_held_or_idle(serve, tokens, model, series):
    s = serve()
    c = _clients(s, tokens)["alpha"]
    try:
        with c.stream(MODEL, session_id="m1") as held:
            first = held.push(series[:4])
            assert _code(lambda: c.stream(MODEL, session_id="m1"))[0] == "ALREADY_EXISTS"  # held: never an attach
            code, message = _code(lambda: c.stream(MODEL, session_id="m1", resume=True))
            assert code == "FAILED_PRECONDITION" and "in use" in message  # resume of a held one: busy
            blob = held.export_state()
            assert _code(lambda: c.stream(MODEL, session_id="m1", state=blob))[0] == "ALREADY_EXISTS"
            second = held.push(series[4:6])  # the holder never noticed
        s.until(lambda: s.server.plane.sessions.busy_count == 0)
        assert _code(lambda: c.stream(MODEL, session_id="m1"))[0] == "ALREADY_EXISTS"  # idle: the same
        assert _code(lambda: c.stream(MODEL, session_id="m1", state=blob))[0] == "ALREADY_EXISTS"
        with c.stream(MODEL, session_id="m1", resume=True) as rs:
            assert (rs.position, rs.resumed) == (6, True)
            third = rs.push(series[6:9])
    finally:
        c.close()
    want = reference(model, [series[:4], series[4:6], series[6:9]])
    assert all(np.array_equal(got, w) for got, w in zip((first, second, third), want))


def test_per_tenant_and_overall_limits(serve, tokens, series):
    s = serve(max_sessions=4, max_sessions_per_tenant=2)
    c = _clients(s, tokens)
    try:
        for tenant, sid in (("alpha", "a1"), ("alpha", "a2"), ("beta", "b1")):
            c[tenant].stream(MODEL, session_id=sid).close()
        code, message = _code(lambda: c["alpha"].stream(MODEL, session_id="a3"))
        assert code == "RESOURCE_EXHAUSTED" and "--max-sessions-per-tenant" in message and "2 live" in message
        assert _code(lambda: c["alpha"].stream(MODEL, session_id="a1"))[0] == "ALREADY_EXISTS"  # not a new one
        with c["alpha"].stream(MODEL, session_id="a1", resume=True) as rs:  # resuming is not creating
            rs.push(series[:1])
        blob = c["alpha"].session_state("a1").state
        assert _code(lambda: c["alpha"].stream(MODEL, session_id="a1-copy", state=blob))[0] == "RESOURCE_EXHAUSTED"
        c["beta"].stream(MODEL, session_id="b2").close()  # beta's own room; now 4 live in all
        code, message = _code(lambda: c["gamma"].stream(MODEL, session_id="g1"))
        assert code == "RESOURCE_EXHAUSTED" and "--max-sessions)" in message and "4 live" in message
        with c["beta"].stream(MODEL, session_id="b1", resume=True) as rs:  # full, yet resumable
            assert rs.position == 0
        c["alpha"].delete_session("a2")
        c["gamma"].stream(MODEL, session_id="g1").close()  # the deleted one's place
        assert _code(lambda: c["alpha"].stream(MODEL, session_id="a3"))[0] == "RESOURCE_EXHAUSTED"  # full again
        with c["beta"].stream(MODEL, session_id="b2", resume=True) as rs:
            rs.close_session()  # CLOSE in the stream frees a place too
        c["alpha"].stream(MODEL, session_id="a3").close()
    finally:
        for client in c.values():
            client.close()


def _await_gone(client: Client, session_id: str, deadline: float) -> None:
    """Return once ``session_id`` does not exist (polled until ``deadline``, monotonic; held still counts)."""
    while True:
        try:
            client.session_state(session_id)
        except EddyError as e:
            if e.code == "NOT_FOUND":
                return
            assert e.code == "FAILED_PRECONDITION", e  # its stream's end has not reached the server yet
        assert time.monotonic() < deadline, f"session {session_id} still exists"
        time.sleep(0.05)


def test_expired_sessions_leave_room(serve, tokens):
    ttl = 2.0  # long enough for the refusals below to happen before anything expires on a loaded machine
    s = serve(max_sessions=3, max_sessions_per_tenant=2, session_ttl=ttl)
    c = _clients(s, tokens)
    try:
        c["alpha"].stream(MODEL, session_id="old-1").close()
        c["alpha"].stream(MODEL, session_id="old-2").close()
        assert _code(lambda: c["alpha"].stream(MODEL, session_id="new"))[0] == "RESOURCE_EXHAUSTED"
        c["beta"].stream(MODEL, session_id="b").close()
        assert _code(lambda: c["gamma"].stream(MODEL, session_id="g"))[0] == "RESOURCE_EXHAUSTED"
        deadline = time.monotonic() + ttl + 20
        # alpha has room again once one of its idle sessions expired, gamma once one of the three others did;
        # under load old-2 may expire well after old-1, so each waits for its own room
        for tenant, sid in (("alpha", "new"), ("gamma", "g")):
            opened = None
            while opened is None:
                try:
                    opened = c[tenant].stream(MODEL, session_id=sid)
                except EddyError as e:
                    assert e.code == "RESOURCE_EXHAUSTED" and time.monotonic() < deadline, e
                    time.sleep(0.05)
            opened.close()
        # a room says how many sessions are live, not which expired: each old session is awaited until it is gone,
        # read without touching it (GetSessionState; a resume would restart its TTL); gone, it cannot be resumed
        for sid in ("old-1", "old-2"):
            _await_gone(c["alpha"], sid, deadline)
            assert _code(lambda sid=sid: c["alpha"].stream(MODEL, session_id=sid, resume=True))[0] == "NOT_FOUND"
    finally:
        for client in c.values():
            client.close()
