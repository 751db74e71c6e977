"""`eddy export` judges a model file from its config before tensorflow is imported.

``.keras`` (config.json in the zip) and legacy ``.h5`` (the root group's ``model_config``
attribute, read with h5py) alike: refused layers and flags, broken or truncated files,
weights-only files, wrong suffixes and SavedModel directories each get one line on stderr
and exit status 2, in a process where tensorflow never gets imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("h5py")

import keras  # noqa: E402

WINDOW = 4

# Run the CLI on each file in one fresh interpreter: exit status, stderr, and whether tensorflow got imported.
_SCRIPT = """
import contextlib, io, json, sys
from eddy.cli.export import main
out = []
for path in sys.argv[2:]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([path, "--out", sys.argv[1]])
    out.append([code, err.getvalue(), "tensorflow" in sys.modules])
print(json.dumps(out))
"""


def _model(rnn: keras.layers.Layer, batch: int | None = None) -> keras.Model:
    inp = keras.Input(batch_shape=(batch, WINDOW, 1))
    return keras.Model(inp, keras.layers.Dense(1)(rnn(inp)))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("files")
    keras.utils.set_random_seed(0)
    good = _model(keras.layers.SimpleRNN(3, name="rnn"))
    good.save(d / "good.h5")
    good.save(d / "good.keras")
    good.save_weights(d / "w.weights.h5")
    _model(keras.layers.SimpleRNN(3, stateful=True, name="rnn"), batch=1).save(d / "stateful.h5")
    _model(keras.layers.Bidirectional(keras.layers.LSTM(2), name="bi")).save(d / "bi.h5")
    whole_h5, whole_keras = (d / "good.h5").read_bytes(), (d / "good.keras").read_bytes()
    (d / "truncated.h5").write_bytes(whole_h5[: len(whole_h5) // 2])
    (d / "truncated.keras").write_bytes(whole_keras[: len(whole_keras) // 2])
    (d / "text.h5").write_text("not hdf5\n")
    (d / "good.bin").write_bytes(whole_keras)
    damaged = bytearray(whole_keras)  # flip one byte inside the stored (uncompressed) weights member
    info = zipfile.ZipFile(d / "good.keras").getinfo("model.weights.h5")
    damaged[info.header_offset + 30 + len(info.filename) + info.file_size // 2] ^= 0xFF
    (d / "damaged.keras").write_bytes(bytes(damaged))
    with zipfile.ZipFile(d / "custom.keras", "w") as z:  # a subclassed model's config: no layer list to judge
        z.writestr("config.json", json.dumps({"module": None, "class_name": "Forecaster", "config": {}}))
    (d / "saved_model").mkdir()
    (d / "saved_model" / "saved_model.pb").write_bytes(b"")
    return d  # type: ignore[return-value]


def _run(out: Path, *paths: Path) -> list[tuple[int, str, bool]]:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(out), *map(str, paths)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [tuple(r) for r in json.loads(done.stdout)]  # type: ignore[misc]


CASES = [
    ("stateful.h5", "stateful.h5: unsupported layer 'rnn' (SimpleRNN): stateful=True; eddy carries the state itself"),
    ("bi.h5", "bi.h5: unsupported layer 'bi' (Bidirectional): it reads each window backwards"),
    ("truncated.h5", "truncated.h5: not a readable HDF5 file (truncated or damaged?): "),
    ("text.h5", "text.h5: not a readable HDF5 file (truncated or damaged?): "),
    ("w.weights.h5", "w.weights.h5: not a whole Keras model: a weights-only file (model.save_weights)"),
    ("truncated.keras", "truncated.keras: not a readable .keras file (truncated or damaged? a .keras file is a zip)"),
    ("damaged.keras", "damaged.keras: damaged .keras file: member 'model.weights.h5' fails its checksum"),
    ("custom.keras", "custom.keras: unsupported model class 'Forecaster': eddy exports Sequential or Functional"),
    ("good.bin", "good.bin: unknown model file suffix '.bin' (it is a zip: if it is a Keras 3 model, name it .keras)"),
    ("saved_model", "saved_model: a TensorFlow SavedModel directory is not supported"),
    ("missing.keras", "missing.keras: no such file"),
]


def test_refusals_and_broken_files_are_one_line_without_tensorflow(files: Path, tmp_path: Path) -> None:
    results = _run(tmp_path / "out", *(files / name for name, _ in CASES))
    for (name, message), (code, err, tf_loaded) in zip(CASES, results):
        assert (code, tf_loaded) == (2, False), (name, err)
        assert err.startswith("eddy export: ") and err.count("\n") == 1, (name, err)
        assert message in err, (name, err)
    assert "eddy export reads a .keras file (model.save('m.keras')) or a legacy .h5 file" in results[-2][1]
    assert not (tmp_path / "out").exists()  # nothing written


def test_supported_files_pass_the_precheck_without_tensorflow(files: Path) -> None:
    code = ("import sys; from eddy.trainer.keras_file import precheck_model_file, read_model_config; "
            f"[precheck_model_file(p) for p in ({str(files / 'good.h5')!r}, {str(files / 'good.keras')!r})]; "
            f"print(read_model_config({str(files / 'good.h5')!r})['class_name'], 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.split() == ["Functional", "False"], done.stderr
