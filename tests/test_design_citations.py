"""Every ``design.md n.n`` a comment cites is a section of docs/design.md, the design as built
(the repository carries its own design: a citation never points outside it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"design\.md,? (?:section )?(\d+(?:\.\d+)?)")
SOURCES = ("gateway", "plugins", "bench", "harness", "tests", "deploy", "docs")
SUFFIXES = {".py", ".lua", ".js", ".css", ".html", ".md", ".yml", ".yaml", ".mjs"}


def _files() -> list[Path]:
    found = []
    for top in SOURCES:
        for path in (ROOT / top).rglob("*"):
            parts = path.relative_to(ROOT).parts
            if (
                path.suffix in SUFFIXES
                and "node_modules" not in parts
                and parts[:2]
                != (
                    "gateway",
                    "plugins",
                )
            ):
                found.append(path)
    return [*found, ROOT / "README.md"]


def _sections() -> set[str]:
    text = (ROOT / "docs" / "design.md").read_text()
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, re.M))


def test_every_citation_names_a_section_of_the_design():
    sections = _sections()
    assert {"2", "3", "5.4", "5.6", "8"} <= sections
    unknown = sorted(
        f"{path.relative_to(ROOT)}: design.md {number}"
        for path in _files()
        for number in CITED.findall(path.read_text(errors="replace"))
        if number not in sections
    )
    assert unknown == []


def test_no_citation_points_outside_the_repository():
    outside = sorted(
        str(path.relative_to(ROOT))
        for path in _files()
        if re.search(r"\bDESIGN \d|\.\./shared/", path.read_text(errors="replace"))
        and path.name != "test_design_citations.py"
    )
    assert outside == []
