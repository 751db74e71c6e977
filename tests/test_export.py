"""Export parity: tiny untrained models (parity is a property of the export, not of training),
their ONNX graphs and Keras agree.

Besides the export's own self-check (:func:`eddy.trainer.parity.verify_parity`),
each case checks the three properties independently with onnxruntime against
the original Keras layers run over the whole sequence.

The exports, what ``eddy export`` printed, and the Keras outputs the graphs are
checked against are made once and kept across runs (tests/_fitted.py
:func:`kept`, keyed by the trainer's, runtime's and CLI's files, this file and
the library versions): a fresh clone exports and runs Keras; a later run checks
the same files with onnxruntime and the runtime while none of their inputs
changed. A refusal is run every time, on a kept Keras file.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _fitted import kept

from eddy.runtime.core.manifest import sha256_file
from eddy.trainer.config import TrainConfig
from eddy.trainer.evaluate import forward
from eddy.trainer.parity import CHECKS, FLOOR
from eddy.trainer.series import Series, synthetic_series
from eddy.trainer.windows import Dataset, make_dataset

if TYPE_CHECKING:
    import keras

pytestmark = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("tensorflow", "tf2onnx")),
                                reason="the training extra (tensorflow, tf2onnx) is not installed")

WINDOW = 6  # short windows keep the tiny models fast
ATOL = 1e-5  # this file's own checks against Keras float32: tiny untrained models over 240 steps round to ~1e-7
def _export(argv: list[str]) -> dict:
    """``eddy export ARGV``: its exit status and what it printed."""
    from eddy.cli.export import main as export_main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = export_main(argv)
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}


def _record(root: Path, name: str, value: object) -> None:
    (root / f"{name}.json").write_text(json.dumps(value))


def _read(root: Path, name: str) -> dict:
    return json.loads((root / f"{name}.json").read_text())


def _two_columns(length: int = 240) -> Series:
    """Two features predicting two targets: a multi-feature, multi-target case."""
    t = np.arange(length, dtype=np.float64)
    x = np.stack([np.sin(t / 7.0), np.cos(t / 11.0) * 3.0 + 1.0], axis=1)  # [N, 2]
    return Series("two", "synthetic", None, ["a", "b"], ["a", "b"], x, x.copy())


def _dataset(series: Series) -> Dataset:
    return make_dataset(series, WINDOW)


def _tiny(cell: str, layers: int, series: Series, **knobs: float) -> tuple[keras.Model, Dataset]:
    """An untrained, seeded model as ``eddy train`` builds it (dropouts included), and its windows."""
    from eddy.trainer.model import build_model, set_seed

    config = TrainConfig(cell=cell, layers=layers, units=8, window=WINDOW, **knobs)
    set_seed(0)
    return build_model(config, len(series.features), len(series.targets)), _dataset(series)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# Every cell x 1 and 2 layers; one- and two-feature inputs; training-only dropouts must not change
# the exported graphs (they are stripped) nor break parity.
DROPOUTS = {"dropout": 0.3, "recurrent_dropout": 0.3}
CASES = [
    pytest.param("simple_rnn", 1, synthetic_series(length=240), ["h0"], {}, id="simple_rnn"),
    pytest.param("simple_rnn", 2, _two_columns(), ["h0", "h1"], DROPOUTS, id="simple_rnn-2-layers-2-features-dropout"),
    pytest.param("lstm", 1, _two_columns(), ["h0", "c0"], DROPOUTS, id="lstm-2-features-dropout"),
    pytest.param("lstm", 2, synthetic_series(length=240), ["h0", "c0", "h1", "c1"], {}, id="lstm-2-layers"),
    pytest.param("gru", 1, _two_columns(), ["h0"], {}, id="gru-2-features"),
    pytest.param("gru", 2, synthetic_series(length=240), ["h0", "h1"], DROPOUTS, id="gru-2-layers-dropout"),
]
PREFIXES = (1, WINDOW, 120, 240)  # the prefix lengths the Keras layers are run over (the series has 240 rows)


@pytest.mark.parametrize(("cell", "layers", "series", "state_names", "knobs"), CASES)
def test_export_parity(tmp_path_factory: pytest.TempPathFactory, cell: str, layers: int, series: Series,
                       state_names: list[str], knobs: dict[str, float]) -> None:
    def make(root: Path) -> None:
        """export_model's graphs and figures, and Keras's answers: the last output of each held-back window, and
        the model's own layers over whole prefixes of the series from zero state (any sequence length)."""
        import keras
        import tensorflow as tf

        from eddy.trainer.onnx_export import export_model

        model, ds = _tiny(cell, layers, series, **knobs)
        x_all = ds.normalised_inputs()  # [N, F]
        result = export_model(model, root, ds.x_test, x_all, seed=1)
        _record(root, "result", {"parity": result.parity, "state": [[s.name, s.shape] for s in result.state],
                                 "graphs": {k: [g.file, g.sha256, g.ops] for k, g in result.graphs.items()}})
        inp = keras.Input((None, x_all.shape[1]))
        h = inp
        for layer in model.layers[1:]:
            h = layer(h)
        free_length = keras.Model(inp, h)  # same layers, any sequence length
        prefix = tf.function(free_length, input_signature=[tf.TensorSpec([1, None, x_all.shape[1]], tf.float32)])
        np.savez(root / "keras.npz", window=forward(model, ds.x_test),  # [n, O]
                 prefix=np.stack([np.asarray(prefix(x_all[None, :n]))[0] for n in PREFIXES]))  # [len(PREFIXES), O]

    root = kept(tmp_path_factory, f"parity {cell} {layers} {knobs}", make)
    ds = _dataset(series)
    x_all = ds.normalised_inputs()  # [N, F]
    result, want = _read(root, "result"), np.load(root / "keras.npz")

    # The export's own figures: every check ran over the whole series and passed its limit.
    checks = result["parity"]["checks"]
    assert tuple(checks) == CHECKS
    assert [checks[k]["steps"] for k in CHECKS] == [WINDOW, len(x_all), len(x_all)]
    assert all(0 <= c["error"] <= c["limit"] and c["error"] < 1e-5 for c in checks.values())
    assert [name for name, _ in result["state"]] == state_names
    assert all(shape == [8] for _, shape in result["state"])
    for key, (file, sha256, ops) in result["graphs"].items():
        assert sha256 == sha256_file(root / file), key
        assert ops == sorted(set(ops)) and ops, key
    native = {"simple_rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}[cell]  # ONNX's own recurrent op, no Loop
    assert native in result["graphs"]["sequence"][2] and "Loop" not in result["graphs"]["sequence"][2]
    assert not any("Random" in op for _, _, ops in result["graphs"].values() for op in ops)  # no dropout in the graphs

    # Graph I/O follows the manifest contract, batch (and time) dynamic.
    step, seq = _session(root / "step.onnx"), _session(root / "sequence.onnx")
    n_f, n_o = len(series.features), len(series.targets)
    assert {i.name: i.shape for i in step.get_inputs()} == {"x": ["batch", n_f], **{n: ["batch", 8] for n in state_names}}
    assert {i.name: i.shape for i in seq.get_inputs()}["x"] == ["batch", "time", n_f]
    assert {o.name for o in seq.get_outputs()} == {"y", *(n + "_out" for n in state_names)}
    outs = ["y", *(n + "_out" for n in state_names)]

    def zero(batch: int) -> dict[str, np.ndarray]:
        return {n: np.zeros((batch, 8), np.float32) for n in state_names}

    # (a) held-back windows: last sequence output from zero state == model.predict (forward answers what predict
    # answers, bit for bit: test_forward.py; without tracing a predict graph per model).
    y_seq = seq.run(["y"], {"x": ds.x_test, **zero(len(ds.x_test))})[0]  # [n, W, O]
    np.testing.assert_allclose(y_seq[:, -1], want["window"], rtol=0, atol=ATOL)

    # (b) chained sequence chunks of fixed uneven sizes, and (c) chained steps.
    state, chunks, t = zero(1), [], 0
    for n in [1, 2, 7, 1, 30, 3] * 100:
        if t >= len(x_all):
            break
        y, *new = seq.run(outs, {"x": x_all[None, t : t + n], **state})
        chunks.append(y[0])
        state, t = dict(zip(state_names, new)), t + n
    chunked = np.concatenate(chunks)  # [N, O]
    state, steps = zero(1), []
    for t in range(len(x_all)):
        y, *new = step.run(outs, {"x": x_all[None, t], **state})
        steps.append(y[0])
        state = dict(zip(state_names, new))
    stepped = np.stack(steps)  # [N, O]
    assert chunked.shape == stepped.shape == (len(x_all), n_o)

    # Reference: the model's own Keras layers over the whole prefix, from zero state.
    assert len(x_all) == PREFIXES[-1]
    for length, prefix in zip(PREFIXES, want["prefix"]):  # prefix: [O]
        np.testing.assert_allclose(chunked[length - 1], prefix, rtol=0, atol=ATOL, err_msg=f"chunked @ {length}")
        np.testing.assert_allclose(stepped[length - 1], prefix, rtol=0, atol=ATOL, err_msg=f"stepped @ {length}")


def test_parity_failure_names_the_check(tmp_path_factory: pytest.TempPathFactory) -> None:
    def make(root: Path) -> None:
        """Export, let the Keras model drift from its graphs, and record what verify_parity raises."""
        from eddy.trainer.errors import ParityError
        from eddy.trainer.onnx_export import export_model
        from eddy.trainer.parity import verify_parity

        model, ds = _tiny("simple_rnn", 1, synthetic_series(length=200))
        export_model(model, root, ds.x_test, ds.normalised_inputs())
        model.layers[-1].set_weights([w + 0.01 for w in model.layers[-1].get_weights()])  # Keras drifts
        try:
            verify_parity(model, root, ds.x_test, ds.normalised_inputs())
            raised = None
        except ParityError as e:
            raised = {"message": str(e), "check": e.check, "error": e.error, "limit": e.limit}
        _record(root, "raised", raised)

    raised = _read(kept(tmp_path_factory, "parity failure", make), "raised")
    assert raised is not None, "verify_parity passed a model that drifted from its graphs"
    assert raised["check"] == "window_vs_predict" and raised["error"] > 1000 * raised["limit"]
    assert re.search(r"'window_vs_predict' failed: max abs error .* against Keras in float64 exceeds the limit .* "
                     r"\(Keras float32's own error .*; 6 steps", raised["message"]), raised["message"]


def test_inspect_model_rejects_unsupported_models() -> None:
    import keras

    from eddy.trainer.errors import ExportError
    from eddy.trainer.keras_stack import inspect_model

    inp = keras.Input((5, 1))
    mixed = keras.Model(inp, keras.layers.Dense(1)(keras.layers.GRU(4)(keras.layers.LSTM(4, return_sequences=True)(inp))))
    with pytest.raises(ExportError, match="must all be one of SimpleRNN, GRU, LSTM, found GRU, LSTM"):
        inspect_model(mixed)
    no_head = keras.Model(inp, keras.layers.SimpleRNN(4)(inp))
    with pytest.raises(ExportError, match="followed by Dense layers"):
        inspect_model(no_head)
    backwards = keras.Model(inp, keras.layers.Dense(1)(keras.layers.SimpleRNN(4, go_backwards=True)(inp)))
    with pytest.raises(ExportError, match="go_backwards=True: it reads each window from its last sample to its first"):
        inspect_model(backwards)
    attention = keras.layers.Attention()([keras.layers.LSTM(4, return_sequences=True)(inp)] * 2)
    with pytest.raises(ExportError, match=r"unsupported layer 'attention' \(Attention\): attention looks"):
        inspect_model(keras.Model(inp, keras.layers.Dense(1)(keras.layers.LSTM(4)(attention))))
    with pytest.raises(ExportError, match="Dense layer 'inner' sits between recurrent layers"):
        inner = keras.layers.Dense(3, name="inner")(keras.layers.GRU(4, return_sequences=True)(inp))
        inspect_model(keras.Model(inp, keras.layers.Dense(1)(keras.layers.GRU(4)(inner))))
    dropped = keras.layers.Dropout(0.5)(keras.layers.GRU(4, return_sequences=True)(inp))
    stack = inspect_model(keras.Model(inp, keras.layers.Dense(2)(keras.layers.GRU(4)(dropped))))
    assert (stack.cell, len(stack.rnn), stack.n_targets) == ("gru", 2, 2)  # Dropout layers are skipped


# --- eddy export: existing Keras files ---------------------------------------------------------


def test_eddy_export_of_a_saved_keras_model(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A GRU x2 stack with Dropout layers and a 2-feature input, saved by Keras, exported and streamed."""
    import eddy.runtime as runtime

    x = np.random.default_rng(1).normal(size=(WINDOW, 2)).astype(np.float32)  # [W, F], raw = normalised

    def make(root: Path) -> None:
        import keras

        keras.utils.set_random_seed(0)
        inp = keras.Input((WINDOW, 2))
        h = keras.layers.GRU(5, return_sequences=True, dropout=0.2)(inp)
        h = keras.layers.Dropout(0.3)(h)
        h = keras.layers.GRU(5, recurrent_dropout=0.2)(h)
        model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Dropout(0.1)(h)))
        model.save(root / "mine.keras")
        _record(root, "export", _export([str(root / "mine.keras"), "--out", str(root / "models" / "mine"),
                                         "--norm-identity", "--features", "p", "q", "--target", "r"]))
        np.save(root / "keras.npy", forward(model, x[None])[0])  # [1]

    root = kept(tmp_path_factory, "saved gru", make)
    out_dir, done = root / "models" / "mine", _read(root, "export")
    assert done["code"] == 0, done["err"]
    assert done["out"].startswith(f"wrote {out_dir / '1'}  (mine v1: gru 2x5, 2 feature(s) -> 1 target(s), window "
                                  f"{WINDOW}; none: the model takes and returns raw values)")
    loaded = runtime.load(out_dir)
    m = loaded.manifest
    assert (m.features, m.targets, m.window, m.horizon) == (["p", "q"], ["r"], WINDOW, 1)
    assert [(s.name, s.shape) for s in m.state] == [("h0", [5]), ("h1", [5])]
    assert m.normalization.input_std == [1.0, 1.0] and m.io == "raw"
    assert all(c["error"] <= c["limit"] for c in m.parity["checks"].values())

    stream = loaded.stream()
    got = np.concatenate([stream.push(x[:2]), stream.push(x[2:])])  # [W, 1]
    np.testing.assert_allclose(got[-1], np.load(root / "keras.npy"), rtol=0, atol=1e-5)


def _bidirectional(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    return keras.layers.Dense(1)(keras.layers.Bidirectional(keras.layers.LSTM(4))(inp))


def _conv(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    return keras.layers.Dense(1)(keras.layers.SimpleRNN(4)(keras.layers.Conv1D(4, 3)(inp)))


def _sequence_head(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    return keras.layers.Dense(1)(keras.layers.GRU(4, return_sequences=True, name="gru")(inp))


def _time_distributed(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    return keras.layers.TimeDistributed(keras.layers.Dense(1), name="td")(
        keras.layers.SimpleRNN(4, return_sequences=True)(inp))


def _dense_first(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    return keras.layers.Dense(1)(keras.layers.SimpleRNN(4)(keras.layers.Dense(3, name="embed")(inp)))


def _dense_between(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    x = keras.layers.Dense(3, name="mid")(keras.layers.LSTM(4, return_sequences=True)(inp))
    return keras.layers.Dense(1)(keras.layers.LSTM(4)(x))


def _backwards(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    return keras.layers.Dense(1)(keras.layers.LSTM(4, go_backwards=True, name="back")(inp))


def _two_features(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    return keras.layers.Dense(1)(keras.layers.SimpleRNN(3)(inp))


def _stateful(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    return keras.layers.Dense(1)(keras.layers.SimpleRNN(4, stateful=True, name="rnn")(inp))


def _saved(factory: pytest.TempPathFactory, build: Callable[[keras.KerasTensor], keras.KerasTensor],
           shape: tuple[int, ...] = (WINDOW, 1), batch: int | None = None) -> Path:
    """``build``'s untrained model on an input of ``shape`` (and ``batch``, when fixed), saved by Keras once and
    kept: a file ``eddy export`` is to refuse, every run."""
    def make(root: Path) -> None:
        import keras

        inp = keras.Input(batch_shape=(batch, *shape))
        keras.Model(inp, build(inp)).save(root / "m.keras")

    return kept(factory, f"saved {build.__name__} {shape} {batch}", make) / "m.keras"


REFUSED = [
    pytest.param(_bidirectional, "unsupported layer 'bidirectional' (Bidirectional): it reads each window backwards",
                 id="bidirectional"),
    pytest.param(_conv, "unsupported layer 'conv1d' (Conv1D): convolutions", id="conv1d"),
    pytest.param(_sequence_head, "the last recurrent layer 'gru' has return_sequences=True, so the head runs over "
                                 "every time step of a window; rebuild it with return_sequences=False and load the "
                                 "same weights", id="sequence-head"),
    # The advice leads to a model eddy exports (not to the sequence-head refusal above): say return_sequences=False.
    pytest.param(_time_distributed, "unsupported layer 'td' (TimeDistributed): use a plain Dense layer after the last "
                                    "recurrent layer and build that recurrent layer with return_sequences=False",
                 id="time-distributed"),
    pytest.param(_dense_first, "Dense layer 'embed' sits before the first recurrent layer; Dense layers are "
                               "supported after the last recurrent layer only", id="dense-before"),
    pytest.param(_dense_between, "Dense layer 'mid' sits between recurrent layers", id="dense-between"),
    pytest.param(_backwards, "unsupported layer 'back' (LSTM): go_backwards=True: it reads each window from its last "
                             "sample to its first", id="go-backwards"),
]


@pytest.mark.parametrize(("build", "message"), REFUSED)
def test_eddy_export_refuses_unsupported_models(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    build: Callable[[keras.KerasTensor], keras.KerasTensor], message: str
) -> None:
    from eddy.cli.export import main as export_main

    code = export_main([str(_saved(tmp_path_factory, build)), "--out", str(tmp_path / "models" / "odd"),
                        "--norm-identity"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and err.startswith("eddy export: ") and message in err, err
    assert not (tmp_path / "models").exists()


def test_eddy_export_data_must_fit_the_model(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from eddy.cli.export import main as export_main

    two = _saved(tmp_path_factory, _two_features, (WINDOW, 2))
    csv_path = tmp_path / "one.csv"
    csv_path.write_text("year,v\n" + "".join(f"{1900 + i},{i % 5}\n" for i in range(50)))
    code = export_main([str(two), "--out", str(tmp_path / "m"), "--data", str(csv_path)])
    _, err = capsys.readouterr()
    assert code == 2 and f"{csv_path}: the model takes 2 feature column(s), the data gives 1 (v)" in err, err
    assert not (tmp_path / "m").exists()
    code = export_main([str(tmp_path / "absent.keras"), "--out", str(tmp_path / "m"), "--norm-identity"])
    assert code == 2 and "absent.keras: no such file" in capsys.readouterr().err


def _raw_scale_model(path: Path) -> keras.Model:
    """An untrained SimpleRNN(4) -> Dense(1) whose outputs sit near 20 (a raw-scale temperature model)."""
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((WINDOW, 1))
    model = keras.Model(inp, keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(20.0))(
        keras.layers.SimpleRNN(4)(inp)))
    model.save(path)
    return model


TEMP = 20 + 5 * np.sin(2 * np.pi * np.arange(120) / 25)  # a temperature series near 20, [120]
HINT_FLAGS = {"inputs": ["--input-mean", "20", "--input-std", "5"],
              "all-four": ["--input-mean", "20", "--input-std", "5", "--target-mean", "20", "--target-std", "5"]}


@pytest.fixture(scope="module")
def raw_with_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The raw-scale model exported with ``--data`` (the temperature series) and nothing else, without ``--data``,
    and with ``--data`` and each of :data:`HINT_FLAGS`: what they printed, and Keras's answer on the last window."""
    def make(root: Path) -> None:
        model = _raw_scale_model(root / "raw.keras")
        (root / "temp.csv").write_text("temp\n" + "".join(f"{v:.5f}\n" for v in TEMP))
        _record(root, "with_data", _export([str(root / "raw.keras"), "--out", str(root / "with_data"),
                                            "--data", str(root / "temp.csv")]))
        _record(root, "without", _export([str(root / "raw.keras"), "--out", str(root / "without"),
                                          "--features", "temp", "--target", "temp"]))
        for name, flags in HINT_FLAGS.items():
            _record(root, name, _export([str(root / "raw.keras"), "--out", str(root / name), "--data",
                                         str(root / "temp.csv"), *flags]))
        np.save(root / "keras.npy", forward(model, TEMP[-WINDOW:].astype(np.float32)[None, :, None])[0])  # [1]

    return kept(tmp_path_factory, "raw with data", make)


def test_export_serves_what_keras_predicts_on_raw_values(raw_with_data: Path) -> None:
    """The issue-11 silent wrong answer: --data must score the model, never wrap a normalisation around it."""
    import eddy.runtime as runtime

    root = raw_with_data
    assert _read(root, "with_data")["code"] == 0 and _read(root, "without")["code"] == 0
    printed = _read(root, "with_data")["out"] + _read(root, "without")["out"]
    assert "test RMSE streamed " in printed and " window " in printed and " vs persistence " in printed
    # 120 rows: 18 validation rows calibrate 80 % intervals (16 needed) but not 95 % (19): that level is left out
    assert "intervals (split conformal, 18 validation residuals, absolute) on the 18 test rows: 80% covers" in printed
    assert "warning: no 95% interval: it needs at least 19 validation rows, the validation part has 18" in printed
    with_data, without = runtime.load(root / "with_data"), runtime.load(root / "without")
    assert with_data.interval_levels == (0.8,) and without.manifest.calibration == {}
    with pytest.raises(runtime.FailedPrecondition, match="--data FILE.csv"):
        without.stream().push(20.0, intervals=True)  # an export without data has nothing to calibrate on
    for kind in ("step", "sequence"):  # --data changes nothing in the graphs (tf2onnx's doc_string aside)
        a, b = (onnx.load(d.path / f"{kind}.onnx").graph for d in (with_data, without))
        assert [list(g.node) + list(g.initializer) + list(g.input) + list(g.output) for g in (a, b)] == \
            [list(g.node) + list(g.initializer) + list(g.input) + list(g.output) for g in (b, a)]
    assert {"rmse", "how"} <= set(with_data.manifest.metrics["streamed"])
    window = TEMP[-WINDOW:].astype(np.float32)[:, None]  # [W, 1] raw
    got = with_data.stream().push(window)[-1]
    np.testing.assert_allclose(got, np.load(root / "keras.npy"), rtol=1e-5)


@pytest.mark.parametrize(("flags", "hint"), [
    ("none", "give its scaling (--input-mean/--input-std/--target-mean/--target-std)"),
    ("inputs", "give the rest of its scaling (--target-mean/--target-std)"),
    ("all-four", "its scaling is inside the graphs as given: check that it is the scaling the model was trained with"),
], ids=["none", "inputs", "all-four"])
def test_the_scaling_hint_names_only_the_flags_not_given(raw_with_data: Path, flags: str, hint: str) -> None:
    done = _read(raw_with_data, "with_data" if flags == "none" else flags)  # none: the export the test above serves
    assert done["code"] == 0, done["err"]
    warning = next(line for line in done["out"].splitlines() if "loses to persistence" in line)
    assert hint in warning, warning
    assert all(flag not in warning.split("; ", 1)[1] for flag in HINT_FLAGS.get(flags, []) if flag.startswith("--")), \
        warning


def test_export_puts_the_given_scaling_inside_the_graphs(tmp_path_factory: pytest.TempPathFactory) -> None:
    import eddy.runtime as runtime

    raw = (15 + 4 * np.random.default_rng(0).standard_normal((WINDOW, 1))).astype(np.float32)  # [W, 1]

    def make(root: Path) -> None:
        model = _raw_scale_model(root / "scaled.keras")
        _record(root, "export", _export([str(root / "scaled.keras"), "--out", str(root / "m"), "--input-mean", "15",
                                         "--input-std", "4", "--target-mean", "10", "--target-std", "2",
                                         "--format", "onnx", "ort"]))
        np.save(root / "keras.npy", forward(model, ((raw - 15) / 4)[None])[0])  # the model on its own scale, [1]

    root = kept(tmp_path_factory, "scaled", make)
    assert _read(root, "export")["code"] == 0, _read(root, "export")["err"]
    want = np.load(root / "keras.npy") * 2 + 10  # back to raw
    for fmt in ("onnx", "ort"):
        loaded = runtime.load(root / "m", graph_format=fmt)
        assert loaded.manifest.io == "raw"
        np.testing.assert_allclose(loaded.stream().push(raw)[-1], want, rtol=1e-5)


# --- Keras coverage: Dense stacks, unequal units, Normalization, stateful, .h5 --------------------


def _dense_stack(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    h = keras.layers.LSTM(4)(inp)
    return keras.layers.Dense(1)(keras.layers.Dense(6, activation="relu")(h))


def _unequal_units(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    return keras.layers.Dense(1)(keras.layers.GRU(3)(keras.layers.GRU(6, return_sequences=True)(inp)))


def _normalized(inp: keras.KerasTensor) -> keras.KerasTensor:
    import keras
    norm = keras.layers.Normalization(mean=20.0, variance=25.0)
    return keras.layers.Dense(1)(keras.layers.SimpleRNN(4)(norm(inp)))


@pytest.mark.parametrize(("build", "suffix", "states"), [
    pytest.param(_dense_stack, ".keras", [("h0", [4]), ("c0", [4])], id="lstm-dense-relu-dense"),
    pytest.param(_unequal_units, ".keras", [("h0", [6]), ("h1", [3])], id="gru-6-then-3"),
    pytest.param(_normalized, ".keras", [("h0", [4])], id="normalization-layer"),
    pytest.param(_dense_stack, ".h5", [("h0", [4]), ("c0", [4])], id="h5-file"),
])
def test_common_keras_models_export_and_serve_kerass_numbers(
    tmp_path_factory: pytest.TempPathFactory, build: Callable[[keras.KerasTensor], keras.KerasTensor], suffix: str,
    states: list
) -> None:
    import eddy.runtime as runtime

    raw = (20 + 5 * np.random.default_rng(2).standard_normal((WINDOW, 1))).astype(np.float32)  # [W, 1] raw

    def make(root: Path) -> None:
        """Save, export, Keras's answer on ``raw``; and the model.keras the export wrote loads in Keras (also from
        an .h5 file)."""
        import keras

        keras.utils.set_random_seed(0)
        inp = keras.Input((WINDOW, 1))
        model = keras.Model(inp, build(inp))
        model.save(root / f"m{suffix}")
        _record(root, "export", _export([str(root / f"m{suffix}"), "--out", str(root / "out")]))
        np.save(root / "keras.npy", forward(model, raw[None])[0])  # [1]
        keras.saving.load_model(root / "out" / "1" / "model.keras")  # a real .keras file

    root = kept(tmp_path_factory, f"common {build.__name__} {suffix}", make)
    assert _read(root, "export")["code"] == 0, _read(root, "export")["err"]
    loaded = runtime.load(root / "out")
    assert [(s.name, s.shape) for s in loaded.manifest.state] == states
    assert loaded.manifest.layer_units == [s[1][0] for s in states if s[0].startswith("h")]
    np.testing.assert_allclose(loaded.stream().push(raw)[-1], np.load(root / "keras.npy"), rtol=1e-5, atol=1e-5)


def test_stateful_layers_are_refused_by_name(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from eddy.cli.export import main as export_main

    assert export_main([str(_saved(tmp_path_factory, _stateful, batch=1)), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unsupported layer 'rnn' (SimpleRNN): stateful=True;" in err, err


def test_refusals_come_from_the_file_before_tensorflow_is_imported(tmp_path_factory: pytest.TempPathFactory,
                                                                   tmp_path: Path) -> None:
    """A .keras file's config.json is enough to refuse it: no tensorflow import, so the refusal is fast."""
    import subprocess
    import sys

    code = ("import sys; from eddy.cli.export import main as export_main; "
            f"c = export_main([{str(_saved(tmp_path_factory, _bidirectional))!r}, '--out', {str(tmp_path / 'o')!r}]); "
            "print(c, 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "(Bidirectional): it reads each window backwards" in done.stderr and done.stderr.count("\n") == 1


def test_a_raw_scale_model_passes_parity_relative_to_its_outputs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Outputs near 20: float32 rounding is ~1e-6 of them, beyond a fixed 1e-5 but within the relative rule."""
    def make(root: Path) -> None:
        from eddy.trainer.onnx_export import export_model

        model = _raw_scale_model(root / "r.keras")
        x = (20 + 5 * np.random.default_rng(0).standard_normal((300, 1))).astype(np.float32)  # [T, F] raw inputs
        result = export_model(model, root, np.stack([x[i : i + WINDOW] for i in range(0, 200, 10)]), x)
        _record(root, "parity", result.parity)

    checks = _read(kept(tmp_path_factory, "raw scale parity", make), "parity")["checks"]
    assert all(c["error"] <= c["limit"] for c in checks.values())
    assert all(c["limit"] > 15 * FLOOR for c in checks.values())  # the floor scales with |y| ~ 20


def test_window_semantics_serve_predict_on_the_last_window(tmp_path_factory: pytest.TempPathFactory) -> None:
    """--semantics window: each answer is model.predict on the last `window` samples, in any chunking."""
    import eddy.runtime as runtime

    raw = (20 + 5 * np.random.default_rng(4).standard_normal((40, 1))).astype(np.float32)  # [T, 1]

    def make(root: Path) -> None:
        model = _raw_scale_model(root / "w.keras")
        _record(root, "export", _export([str(root / "w.keras"), "--out", str(root / "m"), "--semantics", "window"]))
        np.save(root / "keras.npy", forward(model, np.stack([raw[i - WINDOW + 1 : i + 1] for i in range(WINDOW - 1, 40)])))

    root = kept(tmp_path_factory, "window semantics", make)
    assert _read(root, "export")["code"] == 0, _read(root, "export")["err"]
    loaded = runtime.load(root / "m")
    assert [(s.name, s.shape) for s in loaded.manifest.state] == [("window", [WINDOW, 1])]
    assert loaded.manifest.parity["window_semantics"]["step_vs_predict"] <= 1
    stream = loaded.stream()
    got = np.concatenate([stream.push(raw[:1]), stream.push(raw[1:9]), stream.push(raw[9:10]), stream.push(raw[10:])])
    np.testing.assert_allclose(got[WINDOW - 1 :], np.load(root / "keras.npy"), rtol=1e-5)
