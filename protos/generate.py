#!/usr/bin/env python
"""Regenerate the eddy.v1 protobuf/gRPC modules from ``protos/``.

    python protos/generate.py            # write runtime/grpc/proto/eddy/v1/*_pb2*.py(i)
    python protos/generate.py --check    # exit 1 if the committed files are stale

Runs ``grpc_tools.protoc`` on every ``protos/**/*.proto`` into
``runtime/grpc/proto/`` (so ``protos/eddy/v1/x.proto`` becomes
``runtime/grpc/proto/eddy/v1/x_pb2.py``, ``x_pb2_grpc.py`` and ``x_pb2.pyi``).
pyproject.toml installs that folder as the package ``eddy.v1`` (the proto
package's own name), so protoc's absolute imports (``from eddy.v1 import
x_pb2``) work unchanged.

**Which protoc.** Generated code refuses to load on a protobuf runtime older
than the protoc that wrote it, and eddy supports protobuf 6.30 up to 7.x (so
it installs next to ``tritonclient[grpc]``, which needs protobuf < 7). The
modules are therefore written by the pinned :data:`GENERATOR` (grpcio-tools
1.72.1, protoc 30.0, gencode 6.30.0), never by whatever grpcio-tools happens to
be installed. The script keeps that generator in its own virtualenv,
``.venv-protoc/`` beside this repository's ``.venv`` (created with pip on first
use, reused afterwards; delete it to rebuild). It pins protobuf 6.30.0 there
too, the oldest runtime eddy supports, and ``--check`` imports the committed
modules with it: a stale file or one that would not load on 6.30 fails the check.

Exit status: 0 up to date / written, 1 stale, 3 the generator environment
could not be built (e.g. pip cannot reach the package index).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_DIR = ROOT / "runtime" / "grpc" / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")
GENERATOR_VENV = Path(os.environ.get("EDDY_PROTOC_VENV", ROOT / ".venv-protoc"))
# protoc 30.0 writes gencode 6.30.0, which loads on protobuf 6.30 .. 7.x (a newer one would not load on 6.x);
# protobuf pinned to the oldest runtime eddy supports, so --check proves the modules load on it.
GENERATOR = ("grpcio-tools==1.72.1", "protobuf==6.30.0")
EXIT_STALE, EXIT_NO_GENERATOR = 1, 3


class GeneratorUnavailable(RuntimeError):
    """The pinned generator environment could not be created."""


def _protos() -> list[Path]:
    files = sorted(PROTO_DIR.rglob("*.proto"))
    if not files:
        raise SystemExit(f"protos/generate.py: no .proto files under {PROTO_DIR}")
    return files


def generator_python(venv_dir: Path = GENERATOR_VENV) -> Path:
    """The pinned generator's interpreter, creating its virtualenv on first use.

    Processes that ask at once (parallel test workers) wait on a lock file beside the venv: one builds, the
    others reuse it.
    """
    with _locked(venv_dir.with_name(venv_dir.name + ".lock")):
        return _generator_python(venv_dir)


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _generator_python(venv_dir: Path) -> Path:
    python = venv_dir / "bin" / "python"
    stamp = venv_dir / ".eddy-generator"
    wanted = "\n".join(GENERATOR)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    shutil.rmtree(venv_dir, ignore_errors=True)
    print(f"protos/generate.py: creating the generator environment {venv_dir} ({', '.join(GENERATOR)})",
          file=sys.stderr)
    venv.EnvBuilder(with_pip=True).create(venv_dir)
    r = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *GENERATOR],
                       capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(venv_dir, ignore_errors=True)
        raise GeneratorUnavailable(f"pip could not install {' '.join(GENERATOR)}:\n{r.stderr.strip()[-2000:]}")
    stamp.write_text(wanted)
    return python


def _generate(out: Path, python: Path) -> None:
    """Run the pinned protoc into ``out``; each output folder gets an ``__init__.py``."""
    args = [
        str(python), "-m", "grpc_tools.protoc",  # as a module it adds google/protobuf/*.proto to the include path
        f"-I{PROTO_DIR}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        *(str(p.relative_to(PROTO_DIR)) for p in _protos()),
    ]
    if subprocess.run(args).returncode != 0:
        raise SystemExit("protos/generate.py: protoc failed (see above)")
    for pkg_dir in {p.parent for p in _generated_files(out)}:
        (pkg_dir / "__init__.py").touch()


def _generated_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(GENERATED_SUFFIXES))


def _loads_on_oldest_protobuf(python: Path) -> bool:
    """Import every committed module with the generator environment's protobuf (the oldest supported)."""
    modules = [".".join(p.relative_to(OUT_DIR).with_suffix("").parts) for p in _generated_files(OUT_DIR)
               if p.suffix == ".py"]
    code = ("import importlib, sys, warnings; warnings.simplefilter('error'); sys.path.insert(0, sys.argv[1]);\n"
            "[importlib.import_module(m) for m in sys.argv[2:]]")
    r = subprocess.run([str(python), "-c", code, str(OUT_DIR), *modules], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"protos/generate.py: the committed modules do not load on {GENERATOR[1]}:\n{r.stderr}",
              file=sys.stderr)
    return r.returncode == 0


def check(python: Path) -> int:
    """Regenerate into a temp dir; return 1 (and print a diff) if anything differs or does not load."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        _generate(fresh_root, python)
        fresh = {p.relative_to(fresh_root): p for p in _generated_files(fresh_root)}
        committed = {p.relative_to(OUT_DIR): p for p in _generated_files(OUT_DIR)}
        stale = False
        for rel in sorted(fresh.keys() | committed.keys()):
            if rel not in committed:
                print(f"protos/generate.py: missing {OUT_DIR / rel}", file=sys.stderr)
                stale = True
            elif rel not in fresh:
                print(f"protos/generate.py: {OUT_DIR / rel} has no .proto source any more", file=sys.stderr)
                stale = True
            else:
                a = committed[rel].read_text(encoding="utf-8").splitlines(keepends=True)
                b = fresh[rel].read_text(encoding="utf-8").splitlines(keepends=True)
                if a != b:
                    stale = True
                    diff = difflib.unified_diff(a, b, f"committed/{rel}", f"regenerated/{rel}", n=1)
                    sys.stderr.writelines(list(diff)[:40])
    if stale:
        print("protos/generate.py: generated modules are stale; run `make proto` (python protos/generate.py)",
              file=sys.stderr)
        return EXIT_STALE
    if not _loads_on_oldest_protobuf(python):
        return EXIT_STALE
    print(f"protos/generate.py: generated modules are up to date and load on {GENERATOR[1]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with a fresh generation instead of writing; exit 1 if stale (default: write)")
    args = parser.parse_args(argv)
    try:
        python = generator_python()
    except GeneratorUnavailable as e:
        print(f"protos/generate.py: {e}", file=sys.stderr)
        return EXIT_NO_GENERATOR
    if args.check:
        return check(python)
    _generate(OUT_DIR, python)
    for p in _generated_files(OUT_DIR):
        print(f"protos/generate.py: wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
