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


def signed(header: object, payload: bytes = b"", keys: StateKeys = KEYS, raw_header: bytes | None = None) -> bytes:
    """Bytes a key holder could make: any header and payload, framed and MAC'd correctly."""
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(h)) + h + payload
    return body + keys.sign(body)


def _header(m, **over: object) -> dict:
    spec = m.state_spec[0]
    h = {"model": m.name, "version": m.version, "position": 5, "tenant": "",
         "state": [{"name": spec.name, "shape": list(spec.shape)}], "dtype": "<f4"}
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
                        ({"state": []}, "state"), ({"dtype": "<f8"}, "dtype")):
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
       fields=st.dictionaries(st.sampled_from(["model", "version", "position", "tenant", "state", "dtype"]),
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
