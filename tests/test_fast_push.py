"""Stream.push's per-sample fast path (pre-bound buffers, Python-float normalisation) is bit-exact.

The reference is the batched primitive the server uses, ``Model._run_step``
(``InferenceSession.run`` with numpy normalisation), chained sample by sample.
"""

from __future__ import annotations

import numpy as np
import pytest

from eddy.runtime import InvalidInput


def _reference(model, xs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    state, ys = model.zero_state(1), []
    for x in xs:  # [F]
        y, state = model._run_step(x[None].astype(np.float32), state)  # [1, O]
        ys.append(y)
    return np.concatenate(ys), state


@pytest.mark.parametrize("kind", [float, int, np.float32, np.float64, "row", "list"])
def test_single_sample_push_is_bit_exact(model, series, kind):
    values = series[:, 0].astype(np.float64) + (0 if kind is int else 0.123456789)  # not float32-exact
    if kind is int:
        values = np.round(values)
    want, want_state = _reference(model, values.astype(np.float32)[:, None])
    stream = model.stream()
    convert = {"row": lambda v: np.array([v]), "list": lambda v: [[v]]}.get(kind, kind)
    got = np.concatenate([stream.push(convert(v)) for v in values])
    assert np.array_equal(got, want)
    assert all(np.array_equal(stream.state[k], want_state[k][0]) for k in want_state)
    assert stream.position == len(values)


def test_fast_and_chunked_pushes_interleave(model, series):
    """Chunks between single samples: each equals the batched primitive on the same chunking."""
    chunks = [float(series[0, 0]), series[1:40], float(series[40, 0]), series[41:42], series[42:]]
    stream, state = model.stream(), model.zero_state(1)
    for chunk in chunks:
        x = np.asarray(chunk, np.float32).reshape(1, -1, 1)  # [1, n, F]
        want, state = model._advance(x, state)
        assert np.array_equal(stream.push(chunk), want[0])
    assert all(np.array_equal(stream.state[k], state[k][0]) for k in state)  # every tensor the manifest names


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e39, -1e39, 10**400, True, "1"])
def test_bad_scalar_rejected_state_unchanged(model, bad):
    stream = model.stream()
    stream.push(12.0)
    before = stream.state
    with pytest.raises(InvalidInput):
        stream.push(bad)
    assert stream.position == 1
    assert stream.state.keys() == before.keys()
    assert all(np.array_equal(stream.state[k], before[k]) for k in before)
    twin = model.stream()
    twin.push(12.0)
    assert np.array_equal(stream.push(3.0), twin.push(3.0))


def test_state_setter_and_reset_drive_the_fast_path(model, series):
    a, b = model.stream(), model.stream()
    for v in series[:20, 0]:
        a.push(float(v))
    b.state = a.state
    assert np.array_equal(b.push(7.5), a.push(7.5))
    snapshot = a.state
    snapshot["h0"][:] = 99.0  # a copy: the stream is unaffected
    assert not np.array_equal(a.state["h0"], snapshot["h0"])
    with pytest.raises(InvalidInput, match="finite"):
        a.state = {**a.state, "h0": np.full(model.state_spec[0].shape, np.nan, np.float32)}  # complete but not finite
    assert all(np.array_equal(a.state[k], b.state[k]) for k in b.state)
    a.reset()
    assert a.position == 0 and not any(v.any() for v in a.state.values())
    assert np.array_equal(a.push(7.5), model.stream().push(7.5))


@pytest.mark.parametrize("bad", [1e39, [[-1e39]]])
def test_beyond_float32_named_as_such(model, bad):
    """A finite number too large for float32 is not called 'not finite': the message says what is wrong."""
    with pytest.raises(InvalidInput, match="outside float32's range"):
        model.stream().push(bad)
