"""The documentation stands on its own: every relative Markdown link in README.md and docs/
resolves to a file of the repository (and a #fragment to a heading of that file), and nothing
in the project cites a path outside the checkout. Pure Python, no imports of the harness."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    return _CODE.sub("", _FENCE.sub("", text))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_anchor(h) for h in _HEADING.findall(text)}


def _relative_links(path: Path) -> list[str]:
    targets = _LINK.findall(_prose(path.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def test_there_are_docs_to_check() -> None:
    names = {p.name for p in DOCS}
    assert {"README.md", "index.md"} <= names
    assert any(_relative_links(p) for p in DOCS)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    broken = []
    for link in _relative_links(doc):
        target, _, fragment = link.partition("#")
        dest = (doc.parent / target).resolve() if target else doc
        if not dest.is_relative_to(REPO):
            broken.append(f"{link}: outside the repository")
        elif not dest.exists():
            broken.append(f"{link}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
            broken.append(f"{link}: no heading #{fragment} in {dest.relative_to(REPO)}")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


def test_docs_index_lists_every_page() -> None:
    index = REPO / "docs" / "index.md"
    listed = {(index.parent / t.partition("#")[0]).resolve() for t in _relative_links(index)}
    pages = {p.resolve() for p in (REPO / "docs").glob("*.md") if p.name != "index.md"}
    assert pages <= listed, sorted(p.name for p in pages - listed)


# Paths that exist only beside the project's own development checkout. Built by concatenation so
# that this file does not match itself.
OUTSIDE = ("shared" + "/calibration", "../" + "shared", "/work" + "/", "DESIGN" + ".md",
           "ADB_NOTES" + ".md")
SCANNED = ("README.md", "docs", "harness", "tests", "devices", "suites", "noxfile.py",
           "pyproject.toml", ".ci")
SUFFIXES = {".md", ".py", ".toml", ".txt", ""}
# Recorded run directories keep the command line of the machine that made them: data, not a
# citation.
RECORDED = REPO / "tests" / "data"


def test_nothing_cites_a_path_outside_the_repository() -> None:
    files: list[Path] = []
    for name in SCANNED:
        top = REPO / name
        files += [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
    hits = []
    for path in files:
        if (path.suffix not in SUFFIXES or "__pycache__" in path.parts
                or path.is_relative_to(RECORDED)):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        hits += [f"{path.relative_to(REPO)}: {s}" for s in OUTSIDE if s in text]
    assert not hits, hits
