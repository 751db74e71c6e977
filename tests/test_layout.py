"""The model-directory format: the one version rule, everywhere it applies; file, graph and state names."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import MODEL

from eddy.cli.info import collect
from eddy.runtime.core.errors import InvalidInput, NotFound
from eddy.runtime.core.layout import (
    GRAPH_KINDS,
    graph_file,
    is_version_name,
    parse_version,
    resolve_version_dir,
    state_names,
    state_output,
)
from eddy.runtime.core.manifest import read_manifest
from eddy.runtime.serving.repository import ModelRepository
from eddy.trainer.transform import Transform

GOOD = ["1", "2", "12", "1000"]
BAD = ["07", "0", "00", "٣", "𝟏", "²", "v1", "", " 1", "1 ", "+1", "-1", "1.0", "1e3", "0x1"]


@pytest.mark.parametrize("name", GOOD)
def test_versions_are_ascii_digits_without_leading_zeros(name):
    assert is_version_name(name) and parse_version(name) == int(name)


@pytest.mark.parametrize("name", BAD)
def test_anything_else_is_not_a_version(name):
    assert not is_version_name(name)
    with pytest.raises(InvalidInput, match="positive integer without leading zeros"):
        parse_version(name)


@pytest.mark.parametrize("value", [0, -1, True])
def test_integer_versions_are_positive(value):
    with pytest.raises(InvalidInput):
        parse_version(value)


@pytest.fixture(scope="module")
def repo_with_odd_dirs(models_dir, tmp_path_factory):
    """``m/1`` and ``m/2`` are versions; ``m/07``, ``m/٣``, ``m/²`` hold complete copies but are not versions."""
    root = tmp_path_factory.mktemp("layout")
    src = resolve_version_dir(models_dir / MODEL)
    for name in ("1", "2", "07", "٣", "²"):
        shutil.copytree(src, root / "m" / name)
    return root


def test_every_reader_applies_the_same_rule(repo_with_odd_dirs):
    m = repo_with_odd_dirs / "m"
    assert resolve_version_dir(m) == m / "2"  # "07" would be 7 and "٣" 3 if they counted
    assert collect(m)["path"] == str(m / "2")  # eddy info
    repo = ModelRepository(repo_with_odd_dirs)
    assert repo.index() == {"m": [1, 2]}
    assert sorted(p.name for p in repo.skipped) == sorted(["07", "٣", "²"])  # said, not silently dropped
    assert all("not a version directory name" in why for why in repo.skipped.values())
    for request in ("07", "٣", "²", "v1", " 2"):
        with pytest.raises(InvalidInput):
            repo.get("m", request)
    assert repo.get("m", "2").version == 2 and repo.get("m", "").version == 2
    with pytest.raises(NotFound):
        repo.get("m", "7")


def test_a_directory_without_versions_is_not_found(tmp_path):
    (tmp_path / "m" / "07").mkdir(parents=True)
    (tmp_path / "m" / "07" / "manifest.json").write_text("{}")
    with pytest.raises(NotFound, match="holds no model version"):
        resolve_version_dir(tmp_path / "m")


def test_the_committed_model_follows_the_naming(models_dir):
    """Graph files and state tensors are named as layout says (what the trainer writes and the runtime reads)."""
    version_dir = resolve_version_dir(models_dir / MODEL)
    m = read_manifest(version_dir)
    assert {k: m.graphs[k].file for k in GRAPH_KINDS} == {k: graph_file(k) for k in GRAPH_KINDS}
    extra = Transform.for_columns(m.target_transform or "level", m.features, m.targets).extra_state()
    assert [s.name for s in m.state] == state_names(m.cell, m.layers) + [s.name for s in extra]  # recurrent, transform
    raw = json.loads((version_dir / "manifest.json").read_text())
    assert raw["version"] == int(version_dir.name)


def test_state_names_and_outputs():
    assert state_names("lstm", 2) == ["h0", "c0", "h1", "c1"]
    assert state_names("gru", 2) == state_names("simple_rnn", 2) == ["h0", "h1"]
    assert state_output("c1") == "c1_out" and graph_file("step", "int8") == "step_int8.onnx"
