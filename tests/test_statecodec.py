"""Authenticated state bytes: HMAC, tenants, key rotation, bounded fields, and a bounded fuzz of the decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eddy.runtime.core.errors import EddyError, FailedPrecondition, InvalidInput, PermissionDenied, Unauthenticated
from eddy.runtime.core.statecodec import _PREFIX, FORMAT_VERSION, MAGIC, MAX_POSITION, StateKeys, decode_state, encode_state

KEYS = StateKeys((b"k" * 32,))
OTHER_KEYS = StateKeys((b"o" * 32,))
ALLOWED = (InvalidInput, Unauthenticated, PermissionDenied)  # what decode_state may raise, whatever the bytes
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def signed(header: object, payload: bytes = b"", keys: StateKeys = KEYS, raw_header: bytes | None = None,
           fmt: int = FORMAT_VERSION) -> bytes:
    """Bytes a key holder could make: any header and payload, framed and MAC'd correctly."""
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    body = _PREFIX.pack(MAGIC, fmt, len(h)) + h + payload
    return body + keys.sign(body)


def _header(m, **over: object) -> dict:
    spec = m.state_spec[0]
    h = {"model": m.name, "version": m.version, "position": 5, "tenant": "",
         "state": [{"name": spec.name, "shape": list(spec.shape)}], "dtype": "<f4",
         "monitor": {"layout": m.monitor.layout, "values": 0}}
    return {**h, **over}


def test_round_trip_with_tenant_and_rotation(model):
    state = model.zero_state(1)
    blob = encode_state(model, 7, state, keys=KEYS, tenant="acme")
    d = decode_state(blob, keys=KEYS, tenant="acme")
    assert (d.model, d.version, d.position, d.tenant) == (model.name, model.version, 7, "acme")
    assert all(np.array_equal(d.state[k], v[0]) for k, v in state.items())
    rotated = StateKeys((b"n" * 32, b"k" * 32))  # new key signs, the old one still verifies
    assert decode_state(blob, keys=rotated, tenant="acme").position == 7
    assert decode_state(encode_state(model, 1, state, keys=rotated), keys=rotated).position == 1
    with pytest.raises(Unauthenticated, match="state key"):
        decode_state(encode_state(model, 1, state, keys=rotated), keys=KEYS)  # KEYS never knew the new key


def test_forged_other_tenant_and_unbounded_blobs_are_refused(model):
    blob = encode_state(model, 7, model.zero_state(1), keys=KEYS, tenant="acme")
    with pytest.raises(Unauthenticated):
        decode_state(blob, keys=OTHER_KEYS)
    with pytest.raises(PermissionDenied, match="another tenant"):
        decode_state(blob, keys=KEYS, tenant="globex")
    payload = b"\0" * 4 * int(np.prod(model.state_spec[0].shape))
    for over, words in (({"position": 2**64}, "position"), ({"position": MAX_POSITION + 1}, "position"),
                        ({"position": -1}, "position"), ({"position": 1.5}, "position"),
                        ({"version": 2**40}, "version"), ({"state": [{"name": "h0", "shape": [2**40, 2**40]}]}, "shape"),
                        ({"state": []}, "state"), ({"dtype": "<f8"}, "dtype"),
                        ({"monitor": {"layout": "x", "values": -1}}, "monitor"), ({"monitor": None}, "monitor"),
                        ({"monitor": {"layout": "x" * 300, "values": 1}}, "monitor")):
        with pytest.raises(InvalidInput, match=words):
            decode_state(signed(_header(model, **over), payload), keys=KEYS)
    for raw in (b'{"position": Infinity}', b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b"[1, 2]"):
        with pytest.raises(InvalidInput, match="header"):
            decode_state(signed(None, payload, raw_header=raw), keys=KEYS)
    with pytest.raises(InvalidInput, match="payload"):
        decode_state(signed(_header(model), payload[:-4]), keys=KEYS)
    with pytest.raises(InvalidInput, match="position"):
        encode_state(model, MAX_POSITION + 1, model.zero_state(1), keys=KEYS)


@FUZZ
@given(data=st.binary(max_size=600))
def test_fuzz_random_bytes(data):
    for blob in (data, MAGIC + data):
        with pytest.raises(ALLOWED):
            decode_state(blob, keys=KEYS)


@FUZZ
@given(header=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=6), max_leaves=30),
       fields=st.dictionaries(st.sampled_from(["model", "version", "position", "tenant", "state", "dtype", "monitor"]),
                              st.integers(-2**70, 2**70) | st.text(max_size=4) | st.lists(
                                  st.fixed_dictionaries({"name": st.text(max_size=3),
                                                         "shape": st.lists(st.integers(-3, 2**40), max_size=3)}),
                                  max_size=3), max_size=6),
       payload=st.binary(max_size=256))
def test_fuzz_signed_headers(model, header, fields, payload):
    """A key holder's arbitrary (signed) headers: refused cleanly or decoded into something for_model vets."""
    for h in (header, _header(model, **fields)):
        try:
            raw = json.dumps(h).encode()
        except (ValueError, TypeError):
            continue
        try:
            d = decode_state(signed(None, payload, raw_header=raw), keys=KEYS)
        except ALLOWED:
            continue
        assert 0 <= d.position <= MAX_POSITION
        try:
            d.for_model(model)
        except (InvalidInput, FailedPrecondition):
            pass


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
       cut=st.integers(0, 10_000))
def test_fuzz_mutated_blob(model, flips, cut):
    good = encode_state(model, 3, model.zero_state(1), keys=KEYS)
    blob = bytearray(good)
    for i, x in flips:
        blob[i % len(blob)] ^= x
    for data in (bytes(blob), bytes(blob[:cut % len(blob)])):
        if data == good:  # the flips cancelled out
            continue
        with pytest.raises(EddyError) as e:
            decode_state(data, keys=KEYS)
        assert isinstance(e.value, ALLOWED)


def test_the_monitor_row_travels_and_format_2_still_reads(model, series):
    """Format 3 carries the session's monitor row (online widths, live accuracy) bit for bit; format 2 bytes (no row)
    and bytes of another monitor layout still resume, with a fresh row."""
    from eddy.runtime.core.monitor import MONITOR

    stream = model.stream()
    stream.push(series[:50])
    state = {k: v[None] for k, v in stream.state.items()} | {MONITOR: stream._monitor_state[None]}
    d = decode_state(encode_state(model, 50, state, keys=KEYS), keys=KEYS)
    assert np.array_equal(d.monitor, stream._monitor_state) and d.monitor_layout == model.monitor.layout
    assert np.array_equal(d.for_model(model)[MONITOR][0], stream._monitor_state)
    assert np.array_equal(decode_state(encode_state(model, 0, model.zero_state(1), keys=KEYS), keys=KEYS).monitor,
                          model.monitor.fresh(1)[0])  # no row given: a fresh one
    graph = b"".join(np.asarray(state[s.name], "<f4").tobytes() for s in model.state_spec)
    v2 = {k: v for k, v in _header(model, position=50).items() if k != "monitor"}
    v2["state"] = [{"name": s.name, "shape": list(s.shape)} for s in model.state_spec]
    old = decode_state(signed(v2, graph, fmt=2), keys=KEYS)
    assert old.monitor is None and old.position == 50
    assert np.array_equal(old.for_model(model)[MONITOR][0], model.monitor.fresh(1)[0])
    assert np.array_equal(old.for_model(model)["h0"], state["h0"])
    other = {**v2, "monitor": {"layout": "eddy.monitor/1", "values": 2}}  # the layout before normalised scores
    moved = decode_state(signed(other, graph + np.zeros(2, "<f8").tobytes()), keys=KEYS)
    assert np.array_equal(moved.for_model(model)[MONITOR][0], model.monitor.fresh(1)[0])
    with pytest.raises(InvalidInput, match="format 1; this server reads formats 2, 3"):
        decode_state(signed(v2, graph, fmt=1), keys=KEYS)
