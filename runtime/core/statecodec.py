"""Portable session state: a small versioned binary format, no pickle.

Exported state lets a session move between replicas serving the same model
version (or survive a restart). Layout, all integers little-endian::

    magic     4 bytes   b"EDDY"
    format    u16       FORMAT_VERSION
    hlen      u32       length of the header
    header    hlen      UTF-8 JSON: {"model", "version", "position",
                        "state": [{"name", "shape"}, ...], "dtype": "<f4"}
    payload   ...       the state tensors in header order, float32 LE,
                        each C-ordered with its per-stream shape
    sha256    32 bytes  over everything before it

:func:`decode_state` checks the framing and the checksum and needs no model
(a server can read which model/version the bytes are for before resolving
it); :meth:`ExportedState.for_model` then checks them against a model.

Errors: anything malformed or corrupted is :class:`InvalidInput`; bytes that
are well formed but belong to another model name or version are
:class:`FailedPrecondition` (the request is valid, this model is not the one
the state was made with), with a message naming both.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import FailedPrecondition, InvalidInput
from .model import Model

__all__ = ["FORMAT_VERSION", "MAGIC", "ExportedState", "decode_state", "encode_state"]

MAGIC = b"EDDY"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sHI")  # magic, format version, header length
_DIGEST = 32  # sha256
_MAX_HEADER = 1 << 20  # a header is a few hundred bytes; refuse absurd lengths early


@dataclass(frozen=True)
class ExportedState:
    """Decoded state bytes: which model they belong to and the tensors."""

    model: str  # manifest name
    version: int  # manifest version
    position: int  # samples consumed when exported
    state: dict[str, np.ndarray]  # name -> float32 [*shape] (no batch dimension)

    def for_model(self, model: Model) -> dict[str, np.ndarray]:
        """The state as ``name -> [1, *shape]`` for ``model``, after checking it fits.

        Raises :class:`FailedPrecondition` when the bytes are for another model
        name or version, :class:`InvalidInput` when names/shapes disagree
        with the model's manifest.
        """
        if (self.model, self.version) != (model.name, model.version):
            raise FailedPrecondition(
                f"state bytes are for model {self.model}/{self.version}, "
                f"but this session uses {model.name}/{model.version}")
        checked = model.check_state(self.state)  # names, shapes, finiteness
        return {k: v[None] for k, v in checked.items()}  # [1, *shape]


def encode_state(model: Model, position: int, state: Mapping[str, np.ndarray]) -> bytes:
    """Serialise one stream's state (``name -> [1, *shape]`` or ``[*shape]``)."""
    specs, chunks = [], []
    for s in model.state_spec:
        a = np.asarray(state[s.name], dtype="<f4").reshape(s.shape)  # [*shape]
        specs.append({"name": s.name, "shape": list(s.shape)})
        chunks.append(np.ascontiguousarray(a).tobytes())
    header = json.dumps({"model": model.name, "version": model.version, "position": int(position),
                         "state": specs, "dtype": "<f4"}, separators=(",", ":")).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header + b"".join(chunks)
    return body + hashlib.sha256(body).digest()


def decode_state(data: bytes) -> ExportedState:
    """Parse and verify state bytes (framing, checksum, header); no model needed.

    Raises :class:`InvalidInput` naming the problem.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInput(f"state must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size + _DIGEST or data[:4] != MAGIC:
        raise InvalidInput("state bytes are not eddy session state (bad magic or too short)")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise InvalidInput("state bytes are corrupted (checksum mismatch)")
    _, fmt, hlen = _PREFIX.unpack_from(body)
    if fmt != FORMAT_VERSION:
        raise InvalidInput(f"state bytes use format {fmt}; this server reads format {FORMAT_VERSION}")
    if hlen > _MAX_HEADER or _PREFIX.size + hlen > len(body):
        raise InvalidInput("state bytes are malformed (header length out of range)")
    try:
        h = json.loads(body[_PREFIX.size:_PREFIX.size + hlen])
        name, version, position = str(h["model"]), int(h["version"]), int(h["position"])
        specs = [(str(s["name"]), tuple(int(d) for d in s["shape"])) for s in h["state"]]
        dtype = h["dtype"]
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidInput(f"state bytes are malformed (bad header: {e})") from None
    if (dtype != "<f4" or position < 0 or len({n for n, _ in specs}) != len(specs)
            or any(d < 1 for _, shape in specs for d in shape)):
        raise InvalidInput("state bytes are malformed (dtype, position, duplicate names or shapes)")
    payload = memoryview(body)[_PREFIX.size + hlen:]
    sizes = [int(np.prod(shape)) * 4 for _, shape in specs]
    if sum(sizes) != len(payload):
        raise InvalidInput(f"state bytes are malformed (payload is {len(payload)} bytes, "
                           f"header describes {sum(sizes)})")
    state, offset = {}, 0
    for (sname, shape), size in zip(specs, sizes):
        state[sname] = np.frombuffer(payload[offset:offset + size], dtype="<f4").reshape(shape).astype(np.float32)
        offset += size
    return ExportedState(model=name, version=version, position=position, state=state)
