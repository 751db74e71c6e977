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
from collections.abc import Sequence
from typing import Literal

import numpy as np

from eddy.v1 import inference_pb2 as pb

from ..core.errors import InvalidInput

__all__ = ["ENCODINGS", "Encoding", "array_to_tensor", "decode_float32", "one_raw_sample", "sample_count",
           "tensor_to_samples", "tensor_to_sequences"]

Encoding = Literal["raw", "values"]
ENCODINGS: tuple[Encoding, ...] = ("raw", "values")

_LE_F32 = np.dtype("<f4")  # wire dtype of Tensor.raw
_NATIVE_LE = sys.byteorder == "little"  # raw bytes are then float32 as they are (no byte swap, no copy)
_FAST_FEATURES = 64  # one sample of up to this many features is checked with Python floats


def tensor_to_samples(tensor: pb.Tensor, n_features: int) -> tuple[np.ndarray, Encoding]:
    """Decode and validate a samples tensor: float32 ``[n, F]`` and its encoding.

    Raises :class:`InvalidInput` naming the problem: not 2-D, ``n < 1``, wrong
    feature count, data length not matching the shape, both or neither
    encoding used, NaN or infinity.
    """
    return _decode(tensor, n_features, ("n",), "samples")


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


def tensor_to_sequences(tensor: pb.Tensor, n_features: int) -> tuple[np.ndarray, Encoding]:
    """Decode and validate whole sequences: float32 ``[B, T, F]`` and its encoding.

    Same rules as :func:`tensor_to_samples`, with ``B`` and ``T`` at least 1.
    """
    return _decode(tensor, n_features, ("B", "T"), "inputs")


def sample_count(tensor: pb.Tensor) -> int:
    """Samples a tensor claims to hold (product of all but the last dimension), before decoding it.

    Lets a limit be enforced before a large payload is converted.
    """
    count = 1
    for d in list(tensor.shape)[:-1]:
        count *= max(int(d), 0)
    return count if len(tensor.shape) >= 2 else 0


def _decode(tensor: pb.Tensor, n_features: int, lead: tuple[str, ...], what: str) -> tuple[np.ndarray, Encoding]:
    return decode_float32(list(tensor.shape), tensor.values, tensor.raw, n_features, lead=lead, what=what)


def decode_float32(shape: list[int], values: Sequence[float], raw: bytes, n_features: int, *,
                   lead: tuple[str, ...] = ("n",), what: str = "samples",
                   fields: tuple[str, str] = ("`values`", "`raw`")) -> tuple[np.ndarray, Encoding]:
    """The tensor rules on plain parts: float32 ``[*lead, F]`` from packed ``values`` or little-endian ``raw``.

    Shared by every protocol (eddy.v1 ``Tensor``, the Open Inference
    Protocol's ``fp32_contents`` / ``raw_input_contents``); ``fields`` names
    the two encodings in messages. Raises :class:`InvalidInput` naming the
    problem: wrong rank, an empty leading dimension, wrong feature count,
    data length not matching the shape, both or neither encoding used, NaN
    or infinity.
    """
    # On the per-message hot path: plain Python checks first, numpy only on the data.
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
        if len(raw) != expected * _LE_F32.itemsize:
            raise InvalidInput(f"{fields[1]} holds {len(raw)} bytes; shape {shape} needs "
                               f"{expected * _LE_F32.itemsize} (little-endian float32)")
        arr = np.frombuffer(raw, dtype=_LE_F32).astype(np.float32)  # copy, native order
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
    if not np.isfinite(flat).all():
        row, col = (int(i) for i in np.argwhere(~np.isfinite(flat))[0])
        raise InvalidInput(f"sample {row}, feature {col} is {float(flat[row, col])}: values must be finite")
    return arr.reshape(shape), encoding


def array_to_tensor(array: np.ndarray, encoding: Encoding = "raw") -> pb.Tensor:
    """Encode a float array (any shape) as a :class:`Tensor` in ``encoding``."""
    if encoding == "raw" and _NATIVE_LE and type(array) is np.ndarray and array.dtype == np.float32:
        return pb.Tensor(shape=array.shape, raw=array.tobytes())  # the answer's hot path: already wire order
    arr = np.asarray(array, dtype=np.float32)
    if encoding == "raw":
        return pb.Tensor(shape=arr.shape, raw=arr.astype(_LE_F32, copy=False).tobytes(order="C"))
    if encoding == "values":
        return pb.Tensor(shape=arr.shape, values=arr.ravel().tolist())
    raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
