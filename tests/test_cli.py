"""The ``eddy`` command: stream/serve as real subprocesses, usage errors in-process."""

from __future__ import annotations

import csv
import io
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from _serving import EDDY, eddy_process
from conftest import MODEL, ROOT, SERIES_CSV

from eddy.cli.main import main
from eddy.runtime.client import Client


def _eddy(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDDY, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def expected(local) -> np.ndarray:
    return local[:, 0]  # [N], the first target


def _predictions(stdout: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(stdout))
    return list(reader.fieldnames or []), list(reader)


@pytest.mark.parametrize("encoding", ["raw", "values"])
def test_stream_over_server_matches_local(server, model, expected, encoding):
    r = _eddy("stream", "--server", server.address, "--model", MODEL, "--csv", str(SERIES_CSV),
              "--encoding", encoding)
    assert r.returncode == 0, r.stderr
    header, rows = _predictions(r.stdout)
    assert header == ["year", "sunspots", *(f"pred_{t}" for t in model.targets)]
    with open(SERIES_CSV, newline="") as f:
        assert [row["year"] for row in rows] == [row["year"] for row in csv.DictReader(f)]
    got = np.array([float(row[f"pred_{model.targets[0]}"]) for row in rows], np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_stream_local_matches(models_dir, model, expected, capsys):
    assert main(["stream", "--local", str(models_dir / MODEL), "--csv", str(SERIES_CSV),
                 "--features", "sunspots"]) == 0
    _, rows = _predictions(capsys.readouterr().out)
    np.testing.assert_allclose([float(r[f"pred_{model.targets[0]}"]) for r in rows], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("content, extra, words", [
    ("year,sunspots\n1700,5\n1701,abc\n", [], "line 3: column 'sunspots' is not a number: 'abc'"),
    ("year,sunspots\n1700,nan\n", [], "not finite"),
    ("year,sunspots\n1700,\n", [], "not a number: ''"),
    ("year,spots\n1700,5\n", [], "has no column(s) 'sunspots' (columns: year, spots)"),
    ("year,sunspots\n1700,5\n", ["--features", "year", "sunspots"], "takes 1 feature(s)"),
    ("", [], "empty file"),
])
def test_bad_csv_is_one_line_and_exit_2(models_dir, tmp_path, capsys, content, extra, words):
    path = tmp_path / "in.csv"
    path.write_text(content)
    assert main(["stream", "--local", str(models_dir / MODEL), "--csv", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_stream_usage_errors(server, capsys):
    assert main(["stream", "--server", server.address, "--csv", str(SERIES_CSV)]) == 2
    assert "--model is required" in capsys.readouterr().err
    assert main(["stream", "--server", server.address, "--model", "nope", "--csv", str(SERIES_CSV)]) == 2
    assert capsys.readouterr().err.startswith("eddy stream: model 'nope' not found")


@pytest.mark.parametrize(("where", "words"), [
    (["--server", "{address}", "--model", "nope"], "model 'nope' not found"),
    (["--server", "{address}", "--model", MODEL, "--version", "9"], f"model '{MODEL}' has no version 9"),
    (["--local", "{models}/nope"], "nope: no such model directory"),
    (["--local", "{models}/" + MODEL + "/9"], "9"),
], ids=["server-model", "server-version", "local-model", "local-version"])
def test_an_unknown_model_or_version_is_the_users_input_over_the_server_and_locally(
        server, models_dir, capsys, where, words):
    """NOT_FOUND is the user's input wherever it is found: exit 2, one line."""
    argv = [a.format(address=server.address, models=models_dir) for a in where]
    assert main(["stream", *argv, "--csv", str(SERIES_CSV)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eddy stream: ") and words in err and err.count("\n") == 1, err


def test_one_table_from_status_to_exit_status():
    """Every gRPC status has its exit status; the ones that say the request was wrong are the user's (2)."""
    import grpc

    from eddy.cli.errors import CLIENT_STATUSES, STATUS_EXIT, exit_status
    from eddy.runtime.core.errors import ModelLoadError, error_for_code
    from eddy.trainer.errors import DataError, ExportError, TrainingError, UnsupportedModelError

    assert set(STATUS_EXIT) == {c.name for c in grpc.StatusCode} - {"OK"}
    assert CLIENT_STATUSES == {"INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "OUT_OF_RANGE", "UNAUTHENTICATED",
                               "PERMISSION_DENIED"}
    for name, status in STATUS_EXIT.items():  # as a server's status comes back through the client
        assert exit_status(error_for_code(name, "x")) == status == (2 if name in CLIENT_STATUSES else 1), name
    for error, status in ((DataError("x"), 2), (UnsupportedModelError("x"), 2), (ModelLoadError("x"), 2),
                          (TrainingError("x"), 1), (ExportError("x"), 1), (KeyboardInterrupt(), 130)):
        assert exit_status(error) == status, error


def test_serve_subprocess_port_0_and_sigterm(models_dir):
    with eddy_process("serve", "--models", str(models_dir), "--port", "0", "--log-level", "WARNING") as proc:
        line = proc.stdout.readline()  # printed (and flushed) once the server accepts connections
        assert re.fullmatch(r"eddy: serving \d+ model\(s\) on 127\.0\.0\.1:\d+\n", line), line + proc.stderr.read()
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        with Client(f"127.0.0.1:{port}") as c:
            assert MODEL in c.list_models()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_serve_missing_repository(tmp_path, capsys):
    assert main(["serve", "--models", str(tmp_path / "nope"), "--port", "0"]) == 2  # a missing input: usage
    assert capsys.readouterr().err == f"eddy serve: {tmp_path / 'nope'}: model repository directory does not exist\n"


@pytest.mark.parametrize("command", [
    ["info", "{path}"],
    ["stream", "--local", "{path}", "--csv", str(SERIES_CSV)],
    ["serve", "--models", "{path}", "--port", "0"],
])
def test_a_missing_directory_exits_2_with_one_message_format(tmp_path, capsys, command):
    """One table, one format: the same missing directory is the same error from every command."""
    missing = str(tmp_path / "nope")
    assert main([a.format(path=missing) for a in command]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eddy {command[0]}: {missing}") and err.count("\n") == 1, err


def test_a_tampered_model_exits_2_from_info_and_stream(models_dir, tmp_path, capsys):
    import shutil

    from eddy.runtime.core.layout import resolve_version_dir

    target = tmp_path / "m" / "1"
    shutil.copytree(resolve_version_dir(models_dir / MODEL), target)
    with open(target / "step.onnx", "ab") as f:
        f.write(b"\0")
    for argv in (["info", str(target)], ["stream", "--local", str(target), "--csv", str(SERIES_CSV)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"eddy {argv[0]}: {target / 'step.onnx'}: sha256 does not match the manifest " \
                      "(file changed or corrupted)\n", err


def _flag_helps(help_text: str) -> dict[str, str]:
    """``{"--flag": "its help text"}`` from an argparse ``--help`` page (options section)."""
    flags: dict[str, str] = {}
    current = None
    for line in help_text.split("options:", 1)[1].splitlines():
        m = re.match(r"  (-[-\w]+|-\w)(?:[ ,=][^ ].*?)?(?:  +(.*))?$", line)
        if m and not line.startswith("   "):
            current = m[1] if m[1].startswith("--") else re.search(r"(--[\w-]+)", line)[1]
            flags[current] = m[2] or ""
        elif current and line.startswith("   ") and line.strip():
            flags[current] += " " + line.strip()
        elif not line.strip() and current:
            current = None if flags else current
    return flags


def test_help_lists_commands_and_every_flag_says_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(f"    {c} " in out for c in ("serve", "stream", "train", "export"))
    for command in ("serve", "stream"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        page = capsys.readouterr().out
        flags = _flag_helps(page)
        listed = set(re.findall(r"^  (?:-\w, )?(--[\w-]+)", page, re.M)) - {"--help"}
        assert len(listed) > 5 and listed <= set(flags)  # every flag of the page was read
        for flag, text in flags.items():
            if flag != "--help":
                assert "(default:" in text or "(required)" in text, (command, flag, text)


def test_cli_imports_no_trainer_or_tensorflow():
    code = ("import eddy.cli.main, sys; "
            "bad = {'eddy.trainer.train', 'tensorflow', 'keras'} & set(sys.modules); print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout.strip() == "set()", r.stderr


def test_train_delegates_to_the_trainer_parser(capsys):
    pytest.importorskip("tensorflow")
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0 and "usage: eddy train" in capsys.readouterr().out


def test_stream_from_stdin_answers_each_row_before_the_next(server, model, expected):
    """`--csv -`: a row's prediction is printed before the next row is even written."""
    with open(SERIES_CSV, newline="") as f:
        lines = f.read().splitlines()
    with eddy_process("stream", "--server", server.address, "--model", MODEL, "--csv", "-",
                      stdin=subprocess.PIPE, bufsize=1) as proc:
        proc.stdin.write(lines[0] + "\n")
        got = []
        for line in lines[1:20]:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            out = proc.stdout.readline()  # blocks until this row's prediction: nothing else is pending
            if not got:
                assert out.startswith("year,sunspots,pred_")  # the header comes with the first row
                out = proc.stdout.readline()
            got.append(float(out.rstrip("\n").split(",")[-1]))
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    np.testing.assert_allclose(got, expected[:19], rtol=1e-5, atol=1e-5)


def test_stream_on_bad_skip_and_fill_ffill(models_dir, tmp_path, capsys):
    """--on-bad skip answers a bad row with an empty prediction and keeps the state; --fill ffill repeats the last
    value, as eddy train --fill ffill does."""
    import eddy.runtime as runtime

    path = tmp_path / "gappy.csv"
    path.write_text("year,sunspots\n1700,5\n1701,abc\n1702,\n1703,16\n")
    assert main(["stream", "--local", str(models_dir / MODEL), "--csv", str(path), "--on-bad", "skip",
                 "--fill", "ffill"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(captured.out)))
    assert [r[:2] for r in rows] == [["year", "sunspots"], ["1700", "5"], ["1701", "abc"], ["1702", ""], ["1703", "16"]]
    assert rows[2][2] == "" and captured.err == (
        f"eddy stream: {path} line 3: column 'sunspots' is not a number: 'abc'; skipped\n")
    want = runtime.load(models_dir / MODEL).stream().push(np.array([[5.0], [5.0], [16.0]], np.float32))  # gap = 5
    assert [float(r[2]) for r in (rows[1], rows[3], rows[4])] == pytest.approx(want[:, 0].tolist(), rel=1e-6)
    assert main(["stream", "--local", str(models_dir / MODEL), "--csv", str(path), "--fill", "ffill"]) == 2
    assert "line 3: column 'sunspots' is not a number: 'abc'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["info", "{models}/sunspots"],
    ["info", "--json", "{models}/sunspots"],
    ["stream", "--local", "{models}/sunspots", "--csv", str(SERIES_CSV)],
    ["export", "--help"],
], ids=["info", "info-json", "stream", "help"])
def test_a_reader_that_goes_away_ends_the_command_quietly(models_dir, argv):
    """`eddy info --json ... | head`: no BrokenPipeError traceback; 141 as a shell reports SIGPIPE (help: 0)."""
    import os

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes anything
    try:
        r = subprocess.run([*EDDY, *(a.format(models=models_dir) for a in argv)], stdout=write,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    finally:
        os.close(write)
    assert (r.returncode, r.stderr) == (0 if "--help" in argv else 141, "")
