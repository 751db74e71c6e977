"""`eddy export` of a model.keras that eddy wrote rebuilds the served model, or refuses.

The network eddy trains reads normalised inputs (with a delta transform, normalised changes); the served graphs
put the normalisation, the target transform and its state around it. Exported as a raw model, the committed
sunspots network served 78.76 RMSE against persistence's 29.09 with exit status 0. Now the file carries its
record (or the manifest next to it does) and the export serves the same numbers bit for bit, for every target
transform eddy trains; a network without either is refused. Tiny 1-epoch models: the mechanics, not accuracy.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import zipfile
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from _fitted import SEASON, contents, fitted, kept, seasonal_csv, seasonal_flags  # noqa: E402
from conftest import LEGACY, MODEL, MODELS, SERIES_CSV  # noqa: E402

import eddy.runtime as runtime  # noqa: E402
from eddy.cli.export import main as export_main  # noqa: E402
from eddy.runtime.core.manifest import read_manifest, sha256_file, write_manifest  # noqa: E402
from eddy.trainer.keras_record import MEMBER  # noqa: E402
from eddy.trainer.self_contained import RTOL  # noqa: E402
from eddy.trainer.transform import KINDS  # noqa: E402

TINY = ["--units", "3", "--members", "1", "--epochs", "1", "--window", "6", "--seed", "0", "--quiet", "--baselines",
        "naive"]


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A positive trend + season series (log_delta needs positive values), as written: ``[T, 1]``. The file is the
    one the seasonal_delta model trained on (the same text as every model here): a path that stays put across runs."""
    path = fitted(tmp_path_factory, seasonal_csv(), seasonal_flags(1))[1]
    return path, np.loadtxt(path, skiprows=1, dtype=np.float32)[:, None]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny eddy train version per target transform: kind -> version directory. They are fitted() models
    (what is tested is their export, not their training); the seasonal_delta one is shared with eddy info's and the
    seasonal tests and has .ort twins too."""
    out = {"seasonal_delta": fitted(tmp_path_factory, seasonal_csv(), seasonal_flags(1))[0]}
    for kind in (k for k in KINDS if k != "seasonal_delta"):
        season = ["--season", str(SEASON)] if kind == "double_delta" else []
        out[kind] = fitted(tmp_path_factory, seasonal_csv(), ["--target-transform", kind, *season, *TINY])[0]
    return out


def _served(version_dir: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The version's stream over ``x``: whole (one push) and one sample per push, ``[T, O]`` each."""
    model = runtime.load(version_dir)
    s = model.stream()
    return model.stream().push(x), np.concatenate([s.push(row) for row in x])


def _same_served_model(a: Path, b: Path, x: np.ndarray) -> None:
    ma, mb = read_manifest(a), read_manifest(b)
    assert (mb.target_transform, mb.window, mb.horizon, mb.features, mb.targets, mb.io) == (
        ma.target_transform, ma.window, ma.horizon, ma.features, ma.targets, ma.io)
    assert mb.normalization == ma.normalization
    assert mb.calibration == ma.calibration  # the same intervals: carried, or calibrated on the same data
    assert [(s.name, s.shape) for s in mb.state] == [(s.name, s.shape) for s in ma.state]
    for got, want in zip(_served(b, x), _served(a, x), strict=True):
        assert np.array_equal(got, want)  # bit for bit: the same ONNX computation


def _exported(factory: pytest.TempPathFactory, src: Path, data: Path) -> Path:
    """``eddy export`` of version ``src``'s model.keras, with ``--data`` (``in_place``) and as a copy elsewhere without
    it (``copied``): kept across runs (tests/_fitted.py) under a key of the code and both inputs' bytes."""
    def export(root: Path) -> None:
        assert export_main([str(src / "model.keras"), "--out", str(root / "in_place"), "--data", str(data)]) == 0
        alone = root / "elsewhere" / "copy.keras"  # the record travels with the file; no --data: random inputs
        alone.parent.mkdir()
        shutil.copyfile(src / "model.keras", alone)
        assert export_main([str(alone), "--out", str(root / "copied")]) == 0

    return kept(factory, "\0".join([str(src), contents(src), str(data), contents(data)]), export)


def _printed(argv: list[str]) -> dict:
    """``eddy export ARGV``: its exit status and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = export_main(argv)
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}


def _kept_exports(factory: pytest.TempPathFactory, inputs: str, make: Callable[[Path], list[str]]) -> Path:
    """The directory ``make`` fills and the ``eddy export`` runs (argument lists) it returns, with what each printed
    (``printed.json``), made once and kept across runs (tests/_fitted.py) under a key of the code, this file and
    ``inputs``."""
    def run(root: Path) -> None:
        (root / "printed.json").write_text(json.dumps([_printed(argv) for argv in make(root)]))

    root = kept(factory, inputs, run)
    for done in json.loads((root / "printed.json").read_text()):
        assert done["code"] == 0, done["err"]
    return root


def _out(root: Path) -> str:
    """What the first export of a :func:`_kept_exports` directory printed on standard output."""
    return json.loads((root / "printed.json").read_text())[0]["out"]


@pytest.mark.parametrize("kind", KINDS)
def test_export_of_an_eddy_model_serves_the_same_numbers(kind: str, trained: dict[str, Path],
                                                         csv: tuple[Path, np.ndarray],
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    src = trained[kind]
    with zipfile.ZipFile(src / "model.keras") as z:
        assert json.loads(z.read(MEMBER))["target_transform"] == kind  # the file carries its record
    data, x = csv
    out = _exported(tmp_path_factory, src, data)
    _same_served_model(src, out / "in_place" / "1", x)
    got, want = read_manifest(out / "in_place" / "1").metrics, read_manifest(src).metrics
    assert got["streamed"]["rmse"] == want["streamed"]["rmse"]  # the served score, as eddy train reported it
    assert got["rmse"] == pytest.approx(want["rmse"], rel=1e-6)
    _same_served_model(src, out / "copied" / "1", x)


def _strip_record(keras_file: Path) -> None:
    """Rewrite ``keras_file`` without its record: a model.keras as eddy wrote it before the record existed."""
    members = {}
    with zipfile.ZipFile(keras_file) as z:
        members = {i.filename: z.read(i) for i in z.infolist() if i.filename != MEMBER}
    with zipfile.ZipFile(keras_file, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _without_record(src: Path, dst: Path) -> Path:
    """A copy of version ``src`` whose model.keras has no record; its manifest lists the stripped file."""
    shutil.copytree(src, dst)
    _strip_record(dst / "model.keras")
    m = read_manifest(dst, verify_files=False)
    write_manifest(dst, dataclasses.replace(m, files={**m.files, "model.keras": sha256_file(dst / "model.keras")}))
    return dst


def test_a_file_without_record_is_rebuilt_from_the_manifest_next_to_it(
        trained: dict[str, Path], csv: tuple[Path, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> None:
    src = trained["seasonal_delta"]

    def make(root: Path) -> list[str]:
        older = _without_record(src, root / "older" / "1")
        return [[str(older / "model.keras"), "--out", str(root / "x")]]

    root = _kept_exports(tmp_path_factory, f"{src}\0{contents(src)}", make)
    assert "rebuilt from the manifest.json next to it" in _out(root)
    _same_served_model(src, root / "x" / "1", csv[1])


def test_an_eddy_network_without_its_record_is_refused(trained: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    older = _without_record(trained["delta"], tmp_path / "older" / "1")
    alone = tmp_path / "alone.keras"
    shutil.copyfile(older / "model.keras", alone)
    assert export_main([str(alone), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eddy export: {alone}: written by eddy train (Keras model 'eddy_simple_rnn') without what "
                          "rebuilds its served model") and "no manifest.json next to it" in err
    assert err.count("\n") == 1 and not (tmp_path / "x").exists()

    changed = tmp_path / "changed" / "1"
    shutil.copytree(older, changed)
    _strip_record(changed / "model.keras")  # rewritten: its sha256 no longer the manifest's
    with zipfile.ZipFile(changed / "model.keras", "a") as z:
        z.writestr("extra.txt", "x")
    assert export_main([str(changed / "model.keras"), "--out", str(tmp_path / "x")]) == 2
    assert "does not list this file's sha256" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--horizon", "2"], "--horizon 2 differs from its own record (eddy.json inside the file), which says 1; drop --horizon"),
    (["--window", "8"], "--window 8 differs from its own record"),
    (["--features", "w"], "--features w differs from its own record"),
    (["--semantics", "window"], "--semantics window differs from its own record"),
    (["--target-std", "3"], "its scaling and target transform come from its own record (eddy.json inside the file); "
                            "drop --norm-identity"),
])
def test_flags_that_would_change_the_served_model_are_refused(
        flags: list[str], message: str, trained: dict[str, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert export_main([str(trained["delta"] / "model.keras"), "--out", str(tmp_path / "x"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "x").exists()


def test_the_committed_model_exports_as_it_is_served(tmp_path_factory: pytest.TempPathFactory,
                                                     series: np.ndarray) -> None:
    """The report's case: the committed default model's model.keras with the bundled data."""
    from eddy.runtime.core.layout import resolve_version_dir

    src = resolve_version_dir(MODELS / MODEL)

    def make(root: Path) -> list[str]:
        return [[str(src / "model.keras"), "--out", str(root / "x"), "--data", str(SERIES_CSV)]]

    root = _kept_exports(tmp_path_factory, f"{src}\0{contents(src)}\0{contents(SERIES_CSV)}", make)
    _same_served_model(src, root / "x" / "1", series)
    assert runtime.load(root / "x" / "1").monitor.normalised  # its calibration on normalised scores, as committed
    m = read_manifest(root / "x" / "1").metrics
    assert m["streamed"]["rmse"] == read_manifest(src).metrics["streamed"]["rmse"] < m["persistence_rmse"]


def test_a_version_with_normalised_graphs_exports_within_the_parity_rule(tmp_path_factory: pytest.TempPathFactory,
                                                                         series: np.ndarray) -> None:
    """A version whose graphs took normalised values (io normalised) comes back with the normalisation inside the
    graphs: not the same computation, so equal within the parity rule (RTOL relative to the outputs' size)."""
    def make(root: Path) -> list[str]:
        return [[str(LEGACY / "model.keras"), "--out", str(root / "x")]]

    x = _kept_exports(tmp_path_factory, f"{LEGACY}\0{contents(LEGACY)}", make) / "x" / "1"
    m = read_manifest(x)
    assert m.io == "raw" and m.normalization == read_manifest(LEGACY).normalization
    got, want = _served(x, series)[1], _served(LEGACY, series)[1]
    limit = RTOL * max(float(np.max(np.abs(want))), m.normalization.target_std[0])
    assert float(np.max(np.abs(got.astype(np.float64) - want))) <= limit


def test_a_model_keras_written_by_eddy_export_carries_its_scaling_and_semantics(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """eddy export's own model.keras (here from a legacy .h5 with given scaling and window semantics) exports again
    as the same served model: no flags needed, the same numbers bit for bit."""
    def make(root: Path) -> list[str]:
        import keras

        keras.utils.set_random_seed(0)
        inp = keras.Input((6, 1))
        keras.Model(inp, keras.layers.Dense(1)(keras.layers.SimpleRNN(4)(inp))).save(root / "user.h5")
        return [[str(root / "user.h5"), "--out", str(root / "a"), "--semantics", "window", "--input-mean", "3",
                 "--input-std", "2", "--target-mean", "1", "--target-std", "4"],
                [str(root / "a" / "1" / "model.keras"), "--out", str(root / "b")]]

    root = _kept_exports(tmp_path_factory, "", make)
    x = np.random.default_rng(0).normal(3, 2, size=(50, 1)).astype(np.float32)  # [T, F] raw
    _same_served_model(root / "a" / "1", root / "b" / "1", x)
    assert [s.name for s in read_manifest(root / "b" / "1").state] == ["window"]
