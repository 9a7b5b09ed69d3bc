"""The repository stands alone: every paper section the code cites is a heading of docs/paper.md,
every link in the Markdown pages points to a file that exists, every `make` target they name is in
the Makefile, and nothing points to a folder outside the repository.

    .venv/bin/python -m pytest -q tests/test_docs.py
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PY = sorted(p for p in ROOT.rglob("*.py") if ".venv" not in p.parts and "runs" not in p.parts)
MD = [
    ROOT / "README.md",
    ROOT / "RESULTS.md",
    ROOT / "RESULTS_tiny1.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
SECTION = re.compile(r"§(\d+(?:\.\d+)?[a-z]?)")


def paper_headings() -> set:
    """The section numbers docs/paper.md has headings for: `## §3.4 ...` gives "3.4"."""
    text = (ROOT / "docs" / "paper.md").read_text()
    return {m.group(1) for m in re.finditer(r"^#+ §(\d+(?:\.\d+)?[a-z]?)\s", text, re.M)}


def test_every_cited_section_is_a_heading_of_the_paper_page():
    headings = paper_headings()
    assert {"2.4", "3.1b", "3.9", "4", "5", "8"} <= headings  # the parser reads the page
    cited = {}
    for path in PY:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for sec in SECTION.findall(line):
                cited.setdefault(sec, f"{path.relative_to(ROOT)}:{n}")
    assert len(cited) > 15
    missing = {sec: where for sec, where in cited.items() if sec not in headings}
    assert not missing, f"sections cited in the code with no heading in docs/paper.md: {missing}"


def prose(page) -> str:
    """A Markdown page without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)


def test_markdown_links_point_to_files_that_exist():
    for page in MD:
        for target in re.findall(r"\]\(([^)#\s]+)", prose(page)):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_make_targets_named_in_the_docs_exist():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    for page in MD:
        for name in re.findall(r"`make ([a-z][a-z-]*)", page.read_text()):
            assert name in targets, f"{page.name} names `make {name}`, which the Makefile does not have"


# the team's notes outside the repository, by the names they go by (split so this file does not match itself)
OUTSIDE = [r"\.\./" + "shared", "shared" + " folder", "PAPER" + r"\.md", "DESIGN" + r"\.md"]


@pytest.mark.parametrize("pattern", OUTSIDE)
def test_nothing_points_outside_the_repository(pattern):
    for path in [*PY, *MD, ROOT / "Makefile"]:
        hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(pattern, line)]
        assert not hits, (
            f"{path.relative_to(ROOT)} lines {hits} point to {pattern!r}, which users do not have"
        )
