"""The README's links into the documentation resolve, and the README stays a ten-minute read.

`mkdocs build --strict` (run by `make test`) checks every link inside docs/; the README is not part of the site,
so its links (`docs/guides/serving.md#anchor`) are checked here against the pages' headings.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from conftest import ROOT

README = ROOT / "README.md"
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(?P<title>.+?) *$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def slug(title: str) -> str:
    """The anchor MkDocs' toc extension gives a heading (its default slugify)."""
    text = re.sub(r"<[^>]+>|`", "", title)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    return {slug(m["title"]) for m in HEADING.finditer(FENCE.sub("", page.read_text(encoding="utf-8")))}


def test_readme_links_resolve() -> None:
    targets = [m["target"] for m in LINK.finditer(README.read_text(encoding="utf-8"))]
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert any(t.startswith("docs/") for t in local)
    for target in local:
        path, _, anchor = target.partition("#")
        page = ROOT / path
        assert page.is_file(), f"README links to {target}: no file {path}"
        if anchor:
            assert anchor in anchors(page), f"README links to {target}: no heading with that anchor in {path}"


def test_readme_fits_in_300_lines() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 300
