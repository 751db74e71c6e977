"""Portable session state: a small versioned binary format, authenticated, no pickle.

Exported state lets a session move between replicas serving the same model
version (or survive a restart). Layout, all integers little-endian::

    magic     4 bytes   b"EDDY"
    format    u16       FORMAT_VERSION (3)
    hlen      u32       length of the header
    header    hlen      UTF-8 JSON: {"model", "version", "position", "tenant",
                        "state": [{"name", "shape"}, ...], "dtype": "<f4",
                        "monitor": {"layout", "values"}}
    payload   ...       the state tensors in header order, float32 LE,
                        each C-ordered with its per-stream shape, then the
                        session's monitor row: ``values`` float64 LE
    mac       32 bytes  HMAC-SHA256 over everything before it

The monitor row is the session's online recalibration and live accuracy
(:mod:`eddy.runtime.core.monitor`), so a resumed session issues the intervals
it would have issued without the move. Format 2 (no monitor row) is still
read: such a session's monitor starts afresh, as it does when the bytes carry
another layout than the model's.

The MAC key is the server's (:class:`StateKeys`, ``eddy serve --state-key
FILE``): only a process holding the key makes bytes another one accepts, so a
client can carry its state but cannot forge or edit it. Replicas that should
accept each other's bytes share the key file. Without a key file a process
uses a random key of its own (bytes then outlive neither the process nor
reach another one). Several keys may verify while only the first signs:
that is how a key is rotated.

:func:`decode_state` checks the framing, the MAC, the tenant and the header
and needs no model (a server can read which model/version the bytes are for
before resolving it); :meth:`ExportedState.for_model` then checks them
against a model.

Errors: a bad MAC (forged, edited, corrupted, or signed with a key this
process does not hold) is :class:`Unauthenticated`; bytes made for another
tenant are :class:`PermissionDenied`; anything else malformed or out of range
(position past :data:`MAX_POSITION`, shapes, sizes, header JSON) is
:class:`InvalidInput`; well-formed bytes of another model name or version
are :class:`FailedPrecondition`, with a message naming both. Never anything
else, whatever the bytes.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import stat
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FailedPrecondition, InvalidInput, PermissionDenied, Unauthenticated
from .model import Model
from .monitor import MONITOR
from .samples import FLOAT32_LE, FLOAT64_LE

log = logging.getLogger("eddy.security")

__all__ = ["FORMAT_VERSION", "MAGIC", "MAX_POSITION", "READ_FORMATS", "ExportedState", "StateKeys", "decode_state",
           "encode_state", "reseal"]

MAGIC = b"EDDY"
FORMAT_VERSION = 3  # 1 carried a plain sha256 (forgeable); 2 an HMAC-SHA256; 3 adds the monitor row
READ_FORMATS = (2, 3)  # formats decode_state accepts (2: no monitor row)
MAX_POSITION = 2**53  # samples; far past any real stream, exact in JSON and float64, far from int64 overflow
_PREFIX = struct.Struct("<4sHI")  # magic, format version, header length
_DIGEST = 32  # HMAC-SHA256
_MAX_HEADER = 1 << 16  # a header is a few hundred bytes; refuse absurd lengths early
_MIN_KEY = 32  # bytes of key material at least
_MAX_MONITOR = 1 << 20  # values in a monitor row; a real one holds tens to hundreds


@dataclass(frozen=True)
class StateKeys:
    """HMAC keys for state bytes: ``keys[0]`` signs, every key verifies (rotation)."""

    keys: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys or any(len(k) < _MIN_KEY for k in self.keys):
            raise ValueError(f"state keys must be at least {_MIN_KEY} bytes each")

    @classmethod
    def random(cls) -> StateKeys:
        """A fresh key for this process only."""
        return cls((secrets.token_bytes(32),))

    @classmethod
    def from_file(cls, path: str | Path) -> StateKeys:
        """One key per line (blank lines and ``#`` comments skipped); the first line signs.

        Each line is the key itself, at least 32 characters (e.g. ``openssl
        rand -hex 32``). Raises ``ValueError``/``OSError`` naming the problem.

        The key is a secret, so its file is held to ssh's rule for private
        keys: refused if other users may read or write it (any of the mode's
        "other" bits); a group that may read it is allowed, with a warning
        (e.g. a Kubernetes secret shared through ``fsGroup``).
        """
        mode = os.stat(path).st_mode
        if os.name == "posix" and mode & stat.S_IRWXO:
            raise ValueError(f"{path} is open to other users (mode {stat.S_IMODE(mode):04o}): it holds the key that "
                             f"signs every session's state; `chmod 600 {path}`")
        if os.name == "posix" and mode & stat.S_IRWXG:
            log.warning("state key %s is open to its group (mode %04o): every member can sign state bytes",
                        path, stat.S_IMODE(mode))
        lines = [ln.split("#", 1)[0].strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
        keys = tuple(ln.encode() for ln in lines if ln)
        if not keys:
            raise ValueError(f"{path}: no key (one key per line, at least {_MIN_KEY} characters)")
        short = [i for i, k in enumerate(keys, 1) if len(k) < _MIN_KEY]
        if short:
            raise ValueError(f"{path}: key {short[0]} is shorter than {_MIN_KEY} characters")
        return cls(keys)

    def sign(self, body: bytes) -> bytes:
        return hmac.new(self.keys[0], body, hashlib.sha256).digest()

    def verify(self, body: bytes, mac: bytes) -> bool:
        return any(hmac.compare_digest(hmac.new(k, body, hashlib.sha256).digest(), mac) for k in self.keys)


_PROCESS_KEYS = StateKeys.random()  # used when no keys are given: bytes valid in this process only


@dataclass(frozen=True)
class ExportedState:
    """Decoded state bytes: which model they belong to and the tensors."""

    model: str  # manifest name
    version: int  # manifest version
    position: int  # samples consumed when exported, 0..MAX_POSITION
    state: dict[str, np.ndarray]  # name -> float32 [*shape] (no batch dimension)
    tenant: str = ""  # the tenant whose session the bytes were exported from ("" without authentication)
    monitor: np.ndarray | None = None  # float64 [K]: the session's monitor row (None: format 2)
    monitor_layout: str = ""  # the row's layout tag (:attr:`Monitor.layout <eddy.runtime.core.monitor.Monitor.layout>`)

    def for_model(self, model: Model) -> dict[str, np.ndarray]:
        """The state as ``name -> [1, *shape]`` for ``model``, after checking it fits, with the monitor row
        under :data:`~eddy.runtime.core.monitor.MONITOR` (``[1, K]``; a fresh one when the bytes carry none or
        another layout).

        Raises :class:`FailedPrecondition` when the bytes are for another model
        name or version, :class:`InvalidInput` when names/shapes disagree
        with the model's manifest.
        """
        if (self.model, self.version) != (model.name, model.version):
            raise FailedPrecondition(
                f"state bytes are for model {self.model}/{self.version}, "
                f"but this session uses {model.name}/{model.version}")
        checked = model._check_state(self.state)  # names, shapes, finiteness
        out = {k: v[None] for k, v in checked.items()}  # [1, *shape]
        monitor = model.monitor
        if monitor.width:
            same = self.monitor is not None and self.monitor_layout == monitor.layout and \
                len(self.monitor) == monitor.width
            out[MONITOR] = self.monitor[None].copy() if same else monitor.fresh(1)  # type: ignore[index]
        return out


def encode_state(model: Model, position: int, state: Mapping[str, np.ndarray], *, keys: StateKeys | None = None,
                 tenant: str = "") -> bytes:
    """Serialise and sign one stream's state (``name -> [1, *shape]`` or ``[*shape]``), with its monitor row
    under :data:`~eddy.runtime.core.monitor.MONITOR` (``[1, K]`` or ``[K]``; a fresh row when absent)."""
    if not 0 <= position <= MAX_POSITION:
        raise InvalidInput(f"position {position} is outside 0..{MAX_POSITION}")
    specs, chunks = [], []
    for s in model.state_spec:
        a = np.asarray(state[s.name], dtype=FLOAT32_LE).reshape(s.shape)  # [*shape]
        specs.append({"name": s.name, "shape": list(s.shape)})
        chunks.append(np.ascontiguousarray(a).tobytes())
    monitor = model.monitor
    row = state[MONITOR] if MONITOR in state else monitor.fresh(1)
    chunks.append(np.ascontiguousarray(np.asarray(row, FLOAT64_LE).reshape(monitor.width)).tobytes())
    header = json.dumps({"model": model.name, "version": model.version, "position": int(position),
                         "tenant": tenant, "state": specs, "dtype": FLOAT32_LE.str,
                         "monitor": {"layout": monitor.layout, "values": monitor.width}},
                        separators=(",", ":")).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header + b"".join(chunks)
    return body + (keys or _PROCESS_KEYS).sign(body)


def decode_state(data: bytes, *, keys: StateKeys | None = None, tenant: str | None = None) -> ExportedState:
    """Parse and verify state bytes (framing, MAC, tenant, header); no model needed.

    ``tenant`` given: the bytes must have been exported by that tenant
    (:class:`PermissionDenied` otherwise). See the module docstring for errors.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInput(f"state must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size + _DIGEST or data[:4] != MAGIC:
        raise InvalidInput("state bytes are not eddy session state (bad magic or too short)")
    body, mac = data[:-_DIGEST], data[-_DIGEST:]
    _, fmt, hlen = _PREFIX.unpack_from(body)
    if fmt not in READ_FORMATS:
        raise InvalidInput(f"state bytes use format {fmt}; this server reads formats "
                           f"{', '.join(map(str, READ_FORMATS))}")
    if not (keys or _PROCESS_KEYS).verify(body, mac):
        raise Unauthenticated("state bytes are not signed by this server's state key (forged, altered, "
                              "corrupted, or made by a server with another --state-key)")
    if hlen > _MAX_HEADER or _PREFIX.size + hlen > len(body):
        raise InvalidInput("state bytes are malformed (header length out of range)")
    name, version, position, owner, specs, layout, values = _header(body[_PREFIX.size:_PREFIX.size + hlen], fmt)
    if tenant is not None and owner != tenant:
        raise PermissionDenied("state bytes belong to another tenant")
    payload = memoryview(body)[_PREFIX.size + hlen:]
    sizes = [math.prod(shape) * 4 for _, shape in specs]
    if sum(sizes) + 8 * values != len(payload):
        raise InvalidInput(f"state bytes are malformed (payload is {len(payload)} bytes, "
                           f"header describes {sum(sizes) + 8 * values})")
    state, offset = {}, 0
    for (sname, shape), size in zip(specs, sizes):
        state[sname] = np.frombuffer(payload[offset:offset + size], dtype=FLOAT32_LE).reshape(shape).astype(np.float32)
        offset += size
    monitor = np.frombuffer(payload[offset:], dtype=FLOAT64_LE).astype(np.float64) if fmt >= 3 else None
    return ExportedState(model=name, version=version, position=position, state=state, tenant=owner, monitor=monitor,
                         monitor_layout=layout)


def reseal(data: bytes, *, keys: StateKeys | None = None, tenant: str = "") -> bytes:
    """State bytes made with this process's own key (a store's export) re-signed with ``keys`` for ``tenant``.

    Raises like :func:`decode_state` if ``data`` is not this process's bytes.
    """
    decode_state(data)  # verifies the process key and every field
    _, fmt, hlen = _PREFIX.unpack_from(data)
    header = json.loads(data[_PREFIX.size:_PREFIX.size + hlen])
    header["tenant"] = tenant
    raw = json.dumps(header, separators=(",", ":")).encode()
    body = _PREFIX.pack(MAGIC, fmt, len(raw)) + raw + data[_PREFIX.size + hlen:-_DIGEST]  # the format it was in
    return body + (keys or _PROCESS_KEYS).sign(body)


def _header(raw: bytes, fmt: int) -> tuple[str, int, int, str, Sequence[tuple[str, tuple[int, ...]]], str, int]:
    """The header's fields, every one type- and range-checked (InvalidInput otherwise); format 2 has no monitor."""
    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"state bytes are malformed (header: {why})")

    def refuse_constant(name: str) -> None:
        raise ValueError(f"{name} is not a number")

    try:
        h = json.loads(raw.decode("utf-8"), parse_constant=refuse_constant)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise bad(f"not JSON: {str(e)[:80]}") from None
    if not isinstance(h, dict):
        raise bad("not an object")
    name, version, position, owner = h.get("model"), h.get("version"), h.get("position"), h.get("tenant", "")
    if not isinstance(name, str) or not isinstance(owner, str) or h.get("dtype") != FLOAT32_LE.str:
        raise bad("model, tenant and dtype must be strings, dtype '<f4'")
    for label, v, hi in (("version", version, 2**31), ("position", position, MAX_POSITION)):
        if type(v) is not int or not 0 <= v <= hi:
            raise bad(f"{label} must be an integer in 0..{hi}")
    raw_specs = h.get("state")
    if not isinstance(raw_specs, list) or not 1 <= len(raw_specs) <= 64:
        raise bad("state must be a list of 1-64 tensors")
    specs = []
    for sp in raw_specs:
        shape = sp.get("shape") if isinstance(sp, dict) else None
        if (not isinstance(sp, dict) or not isinstance(sp.get("name"), str) or not isinstance(shape, list)
                or not 1 <= len(shape) <= 8 or any(type(d) is not int or not 1 <= d <= 1 << 24 for d in shape)):
            raise bad("each state tensor needs a name and a shape of 1-8 positive integers")
        specs.append((sp["name"], tuple(shape)))
    if len({n for n, _ in specs}) != len(specs):
        raise bad("duplicate state names")
    layout, values = "", 0
    if fmt >= 3:
        mon = h.get("monitor")
        if not isinstance(mon, dict) or not isinstance(mon.get("layout"), str) or len(mon["layout"]) > 256 \
                or type(mon.get("values")) is not int or not 0 <= mon["values"] <= _MAX_MONITOR:
            raise bad(f"monitor must be {{layout: text, values: 0..{_MAX_MONITOR}}}")
        layout, values = mon["layout"], mon["values"]
    return name, version, position, owner, specs, layout, values  # type: ignore[return-value]
