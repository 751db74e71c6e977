"""Exports broken on purpose, to see the parity checks refuse them (tests and bench/parity_sweep.py).

Each function edits the ONNX graphs of an exported version directory in
place, the way a real export bug would show: state outputs wired to the
wrong tensors, a wrong activation, the input normalised a second time
inside the graph. (Wrong weights need no surgery: export a model whose
weights differ, see :func:`transposed_recurrent_kernel`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["GRAPHS", "activation", "normalised_twice", "state_not_carried", "swapped_states",
           "transposed_recurrent_kernel"]

GRAPHS = ("step.onnx", "sequence.onnx")


def _graphs(version_dir: Path) -> Iterator[tuple[Path, onnx.ModelProto]]:
    for file in GRAPHS:
        path = Path(version_dir) / file
        yield path, onnx.load(str(path))


def _subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every Loop/Scan/If body inside it."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for body in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else []) + list(attr.graphs):
                yield from _subgraphs(body)


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename the value ``old`` wherever a node produces or reads it (bodies included); graph I/O kept."""
    for g in _subgraphs(graph):
        for node in g.node:
            node.input[:] = [new if name == old else name for name in node.input]
            node.output[:] = [new if name == old else name for name in node.output]


def swapped_states(version_dir: Path, a: str, b: str) -> None:
    """State outputs ``a_out`` and ``b_out`` carry each other's tensor (e.g. an LSTM's h and c)."""
    for path, model in _graphs(version_dir):
        g = model.graph
        for name in (a, b):
            _rename_value(g, f"{name}_out", f"{name}_out__computed")
        g.node.append(helper.make_node("Identity", [f"{b}_out__computed"], [f"{a}_out"]))
        g.node.append(helper.make_node("Identity", [f"{a}_out__computed"], [f"{b}_out"]))
        onnx.save(model, str(path))


def state_not_carried(version_dir: Path, name: str) -> None:
    """State output ``name_out`` returns the state it was given instead of the new one."""
    for path, model in _graphs(version_dir):
        g = model.graph
        _rename_value(g, f"{name}_out", f"{name}_out__computed")
        g.node.append(helper.make_node("Identity", [name], [f"{name}_out"]))
        onnx.save(model, str(path))


def activation(version_dir: Path, old: str = "Tanh", new: str = "Relu") -> None:
    """Every ``old`` activation computes ``new`` instead: activation nodes (Loop bodies included) and the
    ``activations`` of native RNN/GRU/LSTM ops."""
    for path, model in _graphs(version_dir):
        hits = 0
        for g in _subgraphs(model.graph):
            for node in g.node:
                if node.op_type == old:
                    node.op_type, hits = new, hits + 1
                for attr in node.attribute:
                    if attr.name == "activations" and old.encode() in attr.strings:
                        attr.strings[:] = [new.encode() if a == old.encode() else a for a in attr.strings]
                        hits += 1
        if hits == 0:
            raise ValueError(f"{path}: no {old} activation to replace")
        onnx.save(model, str(path))


def normalised_twice(version_dir: Path, mean: list[float], std: list[float]) -> None:
    """The graph normalises its input ``x`` again with ``mean``/``std``, though it is fed normalised values."""
    for path, model in _graphs(version_dir):
        g = model.graph
        _rename_value(g, "x", "x__normalised")
        g.initializer.extend([numpy_helper.from_array(np.asarray(mean, np.float32), "x__mean"),
                              numpy_helper.from_array(np.asarray(std, np.float32), "x__std")])
        g.node.insert(0, helper.make_node("Sub", ["x", "x__mean"], ["x__centred"]))
        g.node.insert(1, helper.make_node("Div", ["x__centred", "x__std"], ["x__normalised"]))
        onnx.save(model, str(path))


def transposed_recurrent_kernel(model: object) -> object:
    """A copy of a Keras model whose recurrent layers' recurrent kernels ``[U, k*U]`` are transposed
    block by block, a classic weight-conversion bug (the export of this copy has wrong weights)."""
    import keras

    broken = keras.models.clone_model(model)  # type: ignore[arg-type]
    broken.set_weights(model.get_weights())  # type: ignore[attr-defined]
    for layer in broken.layers:
        cell = getattr(layer, "cell", None)
        if cell is None:
            continue
        kernel, recurrent, *rest = layer.get_weights()
        units = recurrent.shape[0]
        blocks = [recurrent[:, i : i + units].T for i in range(0, recurrent.shape[1], units)]
        layer.set_weights([kernel, np.concatenate(blocks, axis=1), *rest])
    return broken
