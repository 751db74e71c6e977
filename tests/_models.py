"""Test-only model helpers: a tiny exported SimpleRNN, and renamed copies.

Lives in tests/, never in runtime/. :func:`make_tiny` needs tensorflow and
tf2onnx (the ``train`` extra) and is only used when the committed default
model is absent.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
from pathlib import Path

from eddy.runtime.core.manifest import GraphSpec, Manifest, Normalization, StateSpec, read_manifest, sha256_file, write_manifest

__all__ = ["copy_as", "default_model_dir", "make_onnx_rnn", "make_tiny", "raw_copy"]


def make_tiny(out: str | Path, units: int = 8, features: int = 1, name: str = "tiny", version: int = 1) -> Path:
    """Export a seeded SimpleRNN(units) -> Dense(1) as step + sequence graphs into ``out``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    import tf2onnx

    out = Path(out)
    keras.utils.set_random_seed(0)
    inp = keras.Input((10, features))
    rnn, dense = keras.layers.SimpleRNN(units), keras.layers.Dense(1)
    keras.Model(inp, dense(rnn(inp)))
    sig = [tf.TensorSpec([None, features], tf.float32, name="x"), tf.TensorSpec([None, units], tf.float32, name="h0")]

    @tf.function(input_signature=sig)
    def step(x, h):
        y, new = rnn.cell(x, h)
        return {"y": dense(y), "h0_out": new}

    seq_layer = keras.layers.SimpleRNN(units, return_sequences=True, return_state=True)
    seq_layer.build((None, None, features))
    seq_layer.set_weights(rnn.get_weights())
    sig2 = [tf.TensorSpec([None, None, features], tf.float32, name="x"), sig[1]]

    @tf.function(input_signature=sig2)
    def seq(x, h):
        ys, hn = seq_layer(x, initial_state=[h])
        return {"y": dense(ys), "h0_out": hn}

    out.mkdir(parents=True, exist_ok=True)
    tf2onnx.convert.from_function(step, input_signature=sig, opset=17, output_path=str(out / "step.onnx"))
    tf2onnx.convert.from_function(seq, input_signature=sig2, opset=17, output_path=str(out / "sequence.onnx"))
    cols = [f"v{i}" for i in range(features)]
    write_manifest(out, Manifest(
        name=name, version=version, cell="simple_rnn", layers=1, units=units, features=cols, targets=["v0"],
        window=10, horizon=1, state=[StateSpec("h0", [units])],
        normalization=Normalization([78.0] * features, [60.0] * features, [78.0], [60.0]),
        graphs={k: GraphSpec(f"{k}.onnx", sha256_file(out / f"{k}.onnx")) for k in ("step", "sequence")},
        opset=17, parity={}, metrics={}, created=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        versions={}))
    return out


def make_onnx_rnn(out: str | Path, features: int = 3, units: int = 4, name: str = "wide", version: int = 1,
                  normalization: Normalization | None = None) -> Path:
    """A seeded Elman RNN over ``features`` inputs written with onnx.helper (no tensorflow, well under a second).

    Step graph ``h' = tanh(x W + h U + b)``, ``y = h' V + c``; the sequence graph runs the same step in a
    ``Scan`` over the time axis. Raw units in and out (``io: raw``) unless a ``normalization`` is given (then
    ``io: normalised``: the runtime applies it around the graphs); state ``h0 [units]``.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    weights = {"W": rng.normal(0, 0.02, (features, units)), "U": rng.normal(0, 0.3, (units, units)),
               "b": rng.normal(0, 0.1, (units,)), "V": rng.normal(0, 1.0, (units, 1)), "c": np.array([0.5])}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]

    def cell(x: str, h: str, h_out: str, y: str) -> list:
        return [helper.make_node("MatMul", [x, "W"], ["xw"]), helper.make_node("MatMul", [h, "U"], ["hu"]),
                helper.make_node("Add", ["xw", "hu"], ["s"]), helper.make_node("Add", ["s", "b"], ["sb"]),
                helper.make_node("Tanh", ["sb"], [h_out]), helper.make_node("MatMul", [h_out, "V"], ["hv"]),
                helper.make_node("Add", ["hv", "c"], [y])]

    def value(n: str, shape: list) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)

    step = helper.make_graph(cell("x", "h0", "h0_out", "y"), "step", [value("x", ["B", features]),
                             value("h0", ["B", units])], [value("y", ["B", 1]), value("h0_out", ["B", units])], inits)
    body = helper.make_graph(cell("xt", "h", "h_next", "yt"), "body", [value("h", ["B", units]),
                             value("xt", ["B", features])], [value("h_next", ["B", units]), value("yt", ["B", 1])])
    scan = helper.make_node("Scan", ["h0", "x"], ["h0_out", "y"], body=body, num_scan_inputs=1,
                            scan_input_axes=[1], scan_output_axes=[1])
    sequence = helper.make_graph([scan], "sequence", [value("x", ["B", "T", features]), value("h0", ["B", units])],
                                 [value("y", ["B", "T", 1]), value("h0_out", ["B", units])], inits)
    for kind, graph in (("step", step), ("sequence", sequence)):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, out / f"{kind}.onnx")
    cols = [f"v{i}" for i in range(features)]
    write_manifest(out, Manifest(
        name=name, version=version, cell="simple_rnn", layers=1, units=units, features=cols, targets=["v0"],
        window=10, horizon=1, state=[StateSpec("h0", [units])],
        normalization=normalization or Normalization([0.0] * features, [1.0] * features, [0.0], [1.0]),
        graphs={k: GraphSpec(f"{k}.onnx", sha256_file(out / f"{k}.onnx")) for k in ("step", "sequence")},
        opset=17, parity={}, metrics={}, created=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        versions={}, io="raw" if normalization is None else "normalised"))
    return out


def copy_as(src: str | Path, dst: str | Path, *, name: str | None = None, version: int | None = None) -> Path:
    """Copy a model version directory, rewriting the manifest's name and/or version."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst)
    m = read_manifest(dst)
    write_manifest(dst, dataclasses.replace(m, name=name or m.name, version=version or m.version))
    return dst


def default_model_dir(tmp_root: str | Path) -> Path:
    """The committed default model's highest version, else a tiny one made under ``tmp_root``."""
    from eddy.runtime.core.layout import resolve_version_dir

    committed = Path(__file__).resolve().parents[1] / "models" / "sunspots"
    if committed.is_dir():
        return resolve_version_dir(committed)
    return make_tiny(Path(tmp_root) / "tiny" / "1")


def raw_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy a model version whose graphs take normalised units (``io: normalised``) as a self-contained one:
    its normalisation moved into the graphs (:func:`eddy.trainer.graph_io.wrap_raw`), ``io: raw``. No tensorflow."""
    import onnx

    from eddy.trainer.graph_io import metadata, set_metadata, wrap_raw
    from eddy.trainer.transform import Transform

    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst)
    m = read_manifest(dst)
    graphs = {}
    for kind in ("step", "sequence"):
        proto = wrap_raw(onnx.load(dst / m.graphs[kind].file), kind, Transform("level", m.n_features), m.normalization)
        set_metadata(proto, metadata(features=m.features, targets=m.targets, horizon=m.horizon, window=m.window,
                                     state=m.state, transform="level", graph=kind, fmt=m.format))
        onnx.save(proto, dst / m.graphs[kind].file)
        graphs[kind] = dataclasses.replace(m.graphs[kind], sha256=sha256_file(dst / m.graphs[kind].file))
    write_manifest(dst, dataclasses.replace(m, graphs=graphs, io="raw"))
    return dst
