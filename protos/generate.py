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

``--check`` regenerates into a temporary directory and compares. Lines that
only stamp the generator's version (protobuf / grpcio-tools) are ignored, so a
newer grpcio-tools does not make the check fail while the .proto is unchanged.
Needs the ``dev`` extra (grpcio-tools).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_DIR = ROOT / "runtime" / "grpc" / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")

# Generator version stamps, ignored by --check.
_VERSION_STAMPS = (
    re.compile(r"^# Protobuf Python Version: .*$", re.MULTILINE),
    re.compile(r"ValidateProtobufRuntimeVersion\([^)]*\)", re.DOTALL),
    re.compile(r"^GRPC_GENERATED_VERSION = .*$", re.MULTILINE),
)


def _protos() -> list[Path]:
    files = sorted(PROTO_DIR.rglob("*.proto"))
    if not files:
        raise SystemExit(f"protos/generate.py: no .proto files under {PROTO_DIR}")
    return files


def _generate(out: Path) -> None:
    """Run protoc into ``out``; each output folder gets an ``__init__.py`` (pyproject maps it to its package)."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError:
        raise SystemExit("protos/generate.py: grpcio-tools is not installed (pip install -e '.[dev]')") from None
    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        *(str(p.relative_to(PROTO_DIR)) for p in _protos()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protos/generate.py: protoc failed (see above)")
    for pkg_dir in {p.parent for p in _generated_files(out)}:
        (pkg_dir / "__init__.py").touch()


def _generated_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(GENERATED_SUFFIXES))


def _normalise(text: str) -> str:
    for pattern in _VERSION_STAMPS:
        text = pattern.sub("<version>", text)
    return text


def check() -> int:
    """Regenerate into a temp dir; return 1 (and print a diff) if anything differs."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        _generate(fresh_root)
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
                a = _normalise(committed[rel].read_text(encoding="utf-8")).splitlines(keepends=True)
                b = _normalise(fresh[rel].read_text(encoding="utf-8")).splitlines(keepends=True)
                if a != b:
                    stale = True
                    diff = difflib.unified_diff(a, b, f"committed/{rel}", f"regenerated/{rel}", n=1)
                    sys.stderr.writelines(list(diff)[:40])
    if stale:
        print("protos/generate.py: generated modules are stale; run `make proto` (python protos/generate.py)",
              file=sys.stderr)
        return 1
    print("protos/generate.py: generated modules are up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with a fresh generation instead of writing; exit 1 if stale (default: write)")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    _generate(OUT_DIR)
    for p in _generated_files(OUT_DIR):
        print(f"protos/generate.py: wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
