"""MkDocs hook: the API reference's import tree and the CLI reference, both generated at build time.

- ``build/docs-src/eddy/`` links ``runtime/``, ``cli/`` and ``trainer/`` under their import names, so
  mkdocstrings (griffe) finds ``eddy.runtime`` etc. from the source files (the editable install maps folders
  to names with an import hook that griffe does not read).
- A line ``<!-- eddy-cli: COMMAND -->`` in a page becomes that command's ``--help`` text, taken from the
  same argparse parsers the ``eddy`` command runs, so the reference cannot drift from the flags.
- A line ``<!-- eddy-fields: CLASS -->`` becomes a table of a manifest dataclass's fields (name, type, default,
  and the one-line comment each field carries in ``runtime/core/manifest.py``), so the manifest reference is
  the schema's own text.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_TREE = ROOT / "build" / "docs-src" / "eddy"  # mkdocs.yml: mkdocstrings paths: [build/docs-src]
FOLDERS = {"runtime": "runtime", "cli": "cli", "trainer": "trainer"}  # import name under eddy -> folder
MARKER = re.compile(r"^<!-- eddy-cli: (?P<command>[a-z]+) -->$", re.MULTILINE)
FIELDS = re.compile(r"^<!-- eddy-fields: (?P<cls>[A-Za-z]+) -->$", re.MULTILINE)
MANIFEST_SOURCE = ROOT / "runtime" / "core" / "manifest.py"
HELP_WIDTH = "100"  # argparse wraps help at $COLUMNS - 2


def _link_source_tree() -> None:
    SOURCE_TREE.mkdir(parents=True, exist_ok=True)
    for name, folder in FOLDERS.items():
        link = SOURCE_TREE / name
        if not (link.is_symlink() and link.resolve() == (ROOT / folder).resolve()):
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(ROOT / folder, target_is_directory=True)


_link_source_tree()  # when MkDocs loads this hook: before mkdocstrings reads its `paths` (plugins see config first)


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from eddy.cli import export, info, main, train

    top = main.build_parser()
    (sub,) = (a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    found = {"eddy": top, "train": train.build_parser(), "export": export.build_parser(), "info": info.build_parser()}
    for name in ("serve", "stream", "token"):
        found[name] = sub.choices[name]
    return found


def _field_table(cls: str) -> str:
    """A Markdown table of dataclass ``cls``'s fields in manifest.py, with each field's trailing comment."""
    source = MANIFEST_SOURCE.read_text(encoding="utf-8")
    comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    classes = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)}
    if cls not in classes:
        raise ValueError(f"<!-- eddy-fields: {cls} -->: no class {cls} in {MANIFEST_SOURCE}")
    node = classes[cls]
    rows = ["| key | type | default | what |", "| --- | --- | --- | --- |"]
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            default = "required" if item.value is None else ast.unparse(item.value)
            if default.startswith("field(default_factory="):
                default = {"list": "[]", "dict": "{}"}.get(default.removeprefix("field(default_factory=")[:-1], default)
            what = comments.get(item.lineno, "").replace("|", "\\|")
            rows.append(f"| `{item.target.id}` | `{ast.unparse(item.annotation)}` | `{default}` | {what} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_) -> str:
    markdown = FIELDS.sub(lambda m: _field_table(m.group("cls")), markdown)
    if not MARKER.search(markdown):
        return markdown
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        parsers = _parsers()

        def help_text(m: re.Match) -> str:
            command = m.group("command")
            if command not in parsers:
                raise ValueError(f"<!-- eddy-cli: {command} -->: no such command (known: {', '.join(sorted(parsers))})")
            return "```text\n" + parsers[command].format_help().rstrip() + "\n```"

        return MARKER.sub(help_text, markdown)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
