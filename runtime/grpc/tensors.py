"""The eddy.v1 ``Tensor`` <-> numpy codec.

Pure functions, no I/O: the servicer, the stream handler and the client all
go through them, so every tensor wire-format rule lives here.

A :class:`Tensor` carries float32 data in exactly one of two encodings:
``values`` (packed ``repeated float``) or ``raw`` (little-endian float32
bytes, row-major). Samples are shaped ``[n, F]``; a response uses the same
encoding as the request it answers.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from eddy.v1 import inference_pb2 as pb

from ..core.errors import InvalidInput
from ..core.samples import FLOAT32_LE, not_finite

__all__ = ["ENCODINGS", "Encoding", "SampleCheck", "array_to_tensor", "decode_float32", "one_raw_sample",
           "tensor_to_bounds", "tensor_to_fleet", "tensor_to_samples", "tensor_to_sequences"]

Encoding = Literal["raw", "values"]
ENCODINGS: tuple[Encoding, ...] = ("raw", "values")
SampleCheck = Callable[[int], None]  # raises (e.g. RESOURCE_EXHAUSTED) for a sample count it refuses

_NATIVE_LE = sys.byteorder == "little"  # raw bytes are then float32 as they are (no byte swap, no copy)
_FAST_FEATURES = 64  # one sample of up to this many features is checked with Python floats


def tensor_to_samples(tensor: pb.Tensor, n_features: int, *,
                      check: SampleCheck | None = None) -> tuple[np.ndarray, Encoding]:
    """Decode and validate a samples tensor: float32 ``[n, F]`` and its encoding.

    Raises :class:`InvalidInput` naming the problem: not 2-D, ``n < 1``, wrong
    feature count, data length not matching the shape, both or neither
    encoding used, NaN or infinity. ``check``: called with the sample count
    the shape claims before anything is decoded (see :func:`decode_float32`).
    """
    return _decode(tensor, n_features, ("n",), "samples", check)


def one_raw_sample(tensor: pb.Tensor, n_features: int) -> np.ndarray | None:
    """The per-message fast path: ``[1, F]`` float32 if ``tensor`` is one valid ``raw`` sample, else None.

    None means "not this simple case": the caller then takes
    :func:`tensor_to_samples`, which also names any problem. The array is a
    read-only view of the message's bytes; its values are exactly what
    :func:`tensor_to_samples` would return.
    """
    raw = tensor.raw
    if (not _NATIVE_LE or n_features > _FAST_FEATURES or len(raw) != 4 * n_features or tensor.values
            or tensor.shape != [1, n_features]):
        return None
    x = np.frombuffer(raw, np.float32).reshape(1, n_features)
    for v in x[0].tolist():
        if not math.isfinite(v):
            return None  # the full decoder names the sample and feature
    return x


def tensor_to_bounds(intervals: Sequence[pb.Interval],
                     shape: tuple[int, ...]) -> tuple[dict[float, np.ndarray], dict[float, np.ndarray]]:
    """An answer's ``Interval`` messages as ``level -> lower`` and ``level -> upper`` float32 arrays, each
    shaped like the predictions they go with (``shape``: ``[n, O]``, or a fleet's ``[N, k, O]``, whose failed rows
    are NaN). Raises :class:`InvalidInput` for a malformed tensor or another shape."""
    lower: dict[float, np.ndarray] = {}
    upper: dict[float, np.ndarray] = {}
    lead = ("n",) if len(shape) == 2 else ("N", "k")
    for interval in intervals:
        for side, tensor, out in (("lower", interval.lower, lower), ("upper", interval.upper, upper)):
            a, _ = decode_float32(list(tensor.shape), tensor.values, tensor.raw, shape[-1], lead=lead,
                                  what=f"{side} bounds", finite=False)
            if a.shape != tuple(shape):
                raise InvalidInput(f"{side} bounds shaped {list(a.shape)} for predictions shaped {list(shape)}")
            out[interval.level] = a
    return lower, upper


def tensor_to_sequences(tensor: pb.Tensor, n_features: int, *,
                        check: SampleCheck | None = None) -> tuple[np.ndarray, Encoding]:
    """Decode and validate whole sequences: float32 ``[B, T, F]`` and its encoding.

    Same rules as :func:`tensor_to_samples`, with ``B`` and ``T`` at least 1 (``check`` gets ``B * T``).
    """
    return _decode(tensor, n_features, ("B", "T"), "inputs", check)


def tensor_to_fleet(tensor: pb.Tensor, n_features: int, *,
                    check: SampleCheck | None = None) -> tuple[np.ndarray, Encoding]:
    """Decode a fleet message's samples: float32 ``[N, k, F]`` and its encoding.

    Same rules as :func:`tensor_to_samples` but for finiteness: a non-finite
    value fails only its session's entry, which the data plane judges.
    ``check`` gets k, the samples per session the shape claims, before
    anything is decoded. Raw little-endian data of the right size comes back
    as a read-only view of the message's bytes (no copy).
    """
    shape, raw = tensor.shape, tensor.raw
    if check is not None and len(shape) == 3:
        check(max(int(shape[1]), 0))
    if _NATIVE_LE and len(shape) == 3 and shape[0] > 0 and shape[1] > 0 and shape[2] == n_features \
            and len(raw) == 4 * shape[0] * shape[1] * n_features and not tensor.values:
        return np.frombuffer(raw, np.float32).reshape(shape[0], shape[1], n_features), "raw"  # the hot path
    return decode_float32(list(shape), tensor.values, raw, n_features, lead=("N", "k"), what="samples",
                          finite=False)


def _decode(tensor: pb.Tensor, n_features: int, lead: tuple[str, ...], what: str,
            check: SampleCheck | None) -> tuple[np.ndarray, Encoding]:
    return decode_float32(list(tensor.shape), tensor.values, tensor.raw, n_features, lead=lead, what=what,
                          check=check)


def decode_float32(shape: list[int], values: Sequence[float], raw: bytes, n_features: int, *,
                   lead: tuple[str, ...] = ("n",), what: str = "samples",
                   fields: tuple[str, str] = ("`values`", "`raw`"),
                   check: SampleCheck | None = None, finite: bool = True) -> tuple[np.ndarray, Encoding]:
    """The tensor rules on plain parts: float32 ``[*lead, F]`` from packed ``values`` or little-endian ``raw``.

    Shared by every protocol (eddy.v1 ``Tensor``, the Open Inference
    Protocol's ``fp32_contents`` / ``raw_input_contents``); ``fields`` names
    the two encodings in messages. ``check`` (e.g. the server's
    ``--max-samples-per-message``) is called first with the samples the
    shape claims (the product of all but the last dimension), so a limit is
    enforced before a large payload is converted. Raises
    :class:`InvalidInput` naming the problem: wrong rank, an empty leading
    dimension, wrong feature count, data length not matching the shape, both
    or neither encoding used, NaN or infinity (unless ``finite`` is False:
    the caller judges values row by row, as a fleet does per session).
    """
    # On the per-message hot path: plain Python checks first, numpy only on the data.
    if check is not None:
        check(math.prod(max(int(d), 0) for d in shape[:-1]) if len(shape) >= 2 else 0)
    has_values, has_raw = len(values) > 0, len(raw) > 0
    if has_values and has_raw:
        raise InvalidInput(f"tensor sets both {fields[0]} and {fields[1]}; use exactly one encoding")
    if len(shape) != len(lead) + 1:
        raise InvalidInput(f"{what} must have shape [{', '.join(lead)}, {n_features}], got shape {shape}")
    if any(d < 1 for d in shape[:-1]):
        if len(lead) == 1:
            raise InvalidInput(f"samples shape {shape} holds no samples: n must be at least 1")
        raise InvalidInput(f"{what} shape {shape} is empty: {' and '.join(lead)} must be at least 1")
    if shape[-1] != n_features:
        raise InvalidInput(f"expected {n_features} feature(s) per sample, got shape {shape}")
    expected = math.prod(shape)
    if has_raw:
        if len(raw) != expected * FLOAT32_LE.itemsize:
            raise InvalidInput(f"{fields[1]} holds {len(raw)} bytes; shape {shape} needs "
                               f"{expected * FLOAT32_LE.itemsize} (little-endian float32)")
        arr = np.frombuffer(raw, dtype=FLOAT32_LE).astype(np.float32)  # copy, native order
        encoding: Encoding = "raw"
    elif has_values:
        if len(values) != expected:
            raise InvalidInput(f"{fields[0]} holds {len(values)} floats; shape {shape} needs {expected}")
        arr = np.array(values, dtype=np.float32)
        encoding = "values"
    else:
        raise InvalidInput(f"tensor has no data: shape {shape} needs {expected} float(s) in "
                           f"{fields[0]} or {fields[1]}")
    flat = arr.reshape(-1, n_features)  # [n, F]
    if finite and not np.isfinite(flat).all():
        raise not_finite(flat)
    return arr.reshape(shape), encoding


def array_to_tensor(array: np.ndarray, encoding: Encoding = "raw") -> pb.Tensor:
    """Encode a float array (any shape) as a :class:`Tensor` in ``encoding``."""
    if encoding == "raw" and _NATIVE_LE and type(array) is np.ndarray and array.dtype == np.float32:
        return pb.Tensor(shape=array.shape, raw=array.tobytes())  # the answer's hot path: already wire order
    arr = np.asarray(array, dtype=np.float32)
    if encoding == "raw":
        return pb.Tensor(shape=arr.shape, raw=arr.astype(FLOAT32_LE, copy=False).tobytes(order="C"))
    if encoding == "values":
        return pb.Tensor(shape=arr.shape, values=arr.ravel().tolist())
    raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
