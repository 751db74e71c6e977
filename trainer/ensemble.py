"""Several networks from different seeds, averaged inside one exported graph (``--members N``).

On short series most of a small network's test error is variance: the same recipe from another seed lands
elsewhere. Averaging a few members cancels part of it. The average is exact and exportable as *one* network:
``N`` recurrent stacks of ``U`` units side by side are one stack of ``N * U`` units whose weight matrices are
block-diagonal (each member's hidden units see only its own inputs and state), and a Dense head whose kernel is
the members' kernels stacked and divided by ``N`` (bias: their mean) outputs the average of the members'
outputs. So the merged model is an ordinary seed-shaped Keras model (SimpleRNN, LSTM or GRU, any number of
layers): the export, the parity checks, the state (the members' states side by side, ``[N * U]`` per layer) and
streaming exactness need nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["describe", "merge_weights"]


def merge_weights(members: Sequence[Sequence[np.ndarray]], layers: int) -> list[np.ndarray]:
    """The weights of the merged model, in Keras ``get_weights`` order, from each member's.

    Each member's list is ``[kernel, recurrent_kernel, bias] * layers + [head kernel, head bias]`` of one
    seed-shaped model (:func:`eddy.trainer.model.build_model`): ``kernel [in, G*U]``, ``recurrent_kernel
    [U, G*U]``, ``bias [G*U]`` (or ``[2, G*U]`` for a GRU with ``reset_after``), with ``G`` gates per unit (1
    SimpleRNN, 4 LSTM, 3 GRU), gate-major as Keras lays them out; ``head kernel [U, O]``, ``head bias [O]``.
    """
    n = len(members)
    if n < 1:
        raise ValueError("merge_weights needs at least one member")
    out: list[np.ndarray] = []
    for layer in range(layers):
        kernels, recurrents, biases = zip(*[m[3 * layer : 3 * layer + 3] for m in members])
        units = recurrents[0].shape[0]
        gates = recurrents[0].shape[1] // units
        out.append(_kernel(kernels, units, gates, shared_input=layer == 0))
        out.append(_kernel(recurrents, units, gates, shared_input=False))
        out.append(_bias(biases, units, gates))
    heads = [m[3 * layers] for m in members]  # [U, O] each
    out.append((np.concatenate(heads, axis=0) / n).astype(heads[0].dtype))  # [N*U, O]
    out.append(np.mean([m[3 * layers + 1] for m in members], axis=0).astype(heads[0].dtype))  # [O]
    return out


def _kernel(parts: Sequence[np.ndarray], units: int, gates: int, *, shared_input: bool) -> np.ndarray:
    """``[in, G*U]`` per member -> ``[in or N*in, G*N*U]``: member k's gate-g columns land at gate g, block k;
    its rows at block k (or every member reads the same rows: the first layer's inputs)."""
    n, rows = len(parts), parts[0].shape[0]
    merged = np.zeros((rows if shared_input else n * rows, gates, n * units), parts[0].dtype)  # [in', G, N*U]
    for k, w in enumerate(parts):
        r = slice(None) if shared_input else slice(k * rows, (k + 1) * rows)
        merged[r, :, k * units : (k + 1) * units] = w.reshape(rows, gates, units)
    return merged.reshape(merged.shape[0], gates * n * units)


def _bias(parts: Sequence[np.ndarray], units: int, gates: int) -> np.ndarray:
    """``[..., G*U]`` per member -> ``[..., G*N*U]`` (a GRU's ``[2, 3U]`` keeps its leading axis)."""
    n, lead = len(parts), parts[0].shape[:-1]
    merged = np.zeros((*lead, gates, n * units), parts[0].dtype)
    for k, b in enumerate(parts):
        merged[..., k * units : (k + 1) * units] = b.reshape(*lead, gates, units)
    return merged.reshape(*lead, gates * n * units)


def describe(members: int, units: int, layers: int, cell: str) -> dict[str, Any]:
    """What the manifest records about an averaged model."""
    return {"members": members, "member_units": units, "units": members * units, "layers": layers, "cell": cell,
            "how": f"{members} networks from seeds seed..seed+{members - 1}, averaged: one {cell} stack of "
                   f"{members * units} units with block-diagonal weights and a head that averages the members"}
