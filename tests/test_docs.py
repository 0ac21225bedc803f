"""The documentation keeps up with the code: every registered loss head and score has a row in
its table, the README stays a landing page, and no relative link points at a missing file.

The site itself is built by ``make docs`` (``mkdocs build --strict``), which CI runs after the
tests; these checks need no MkDocs and run in well under a second."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from oodlab.losses import LOSSES
from oodlab.scores import SCORES

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README_MAX_LINES = 300

# a table row whose first cell is one name in backticks: | `name` | ... |
TABLE_ROW_NAME = re.compile(r"^\|\s*`([^`]+)`\s*\|")
# [text](target) and ![alt](target); the target ends at whitespace or ")"
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]+`")


def table_names(page: Path) -> set[str]:
    """The names in backticks in the first column of every markdown table of ``page``."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {m.group(1) for line in text.splitlines() if (m := TABLE_ROW_NAME.match(line.strip()))}


def missing_rows(registered: list[str], page: Path) -> list[str]:
    documented = table_names(page)
    return [name for name in registered if name not in documented]


def relative_links(page: Path) -> list[str]:
    """Link targets of ``page`` that are files of this repository (no URL, no bare anchor);
    links inside code blocks and inline code are not links."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = INLINE_CODE.sub("", text)
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # https:, mailto:, ... and anchors within the page
        targets.append(target)
    return targets


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


@pytest.mark.parametrize(
    ("registry", "page"),
    [(LOSSES, "losses.md"), (SCORES, "scores.md")],
    ids=["losses", "scores"],
)
def test_every_registered_name_has_a_row_in_its_docs_table(registry, page):
    missing = missing_rows(registry.names(), DOCS / page)
    assert not missing, (
        f"registered but missing from the tables of docs/{page}: {missing}. Add a row whose "
        "first column is the name in backticks: | `name` | ... |"
    )


def test_a_missing_row_is_caught(tmp_path):
    """The check above fails when a row goes: remove one registered name's row and look."""
    for registry, page in ((LOSSES, "losses.md"), (SCORES, "scores.md")):
        documented = table_names(DOCS / page)
        name = next(n for n in registry.names() if n in documented)
        text = (DOCS / page).read_text(encoding="utf-8")
        kept = [line for line in text.splitlines() if not line.startswith(f"| `{name}` |")]
        assert len(kept) < len(text.splitlines())
        copy = tmp_path / page
        copy.write_text("\n".join(kept), encoding="utf-8")
        assert name not in missing_rows(registry.names(), DOCS / page)
        assert name in missing_rows(registry.names(), copy)


def test_the_readme_is_a_landing_page():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; at most {README_MAX_LINES}. Move the detail to docs/."
    )
    # CI and newcomers read the test command off the README
    assert any("make test" in line for line in lines)


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_at_a_file(page):
    broken = []
    for target in relative_links(page):
        path = unquote(target.split("#", 1)[0])
        if not path:
            continue
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)} links to missing files: {broken}"


def test_the_link_check_sees_links():
    """Guard against a pattern that silently matches nothing."""
    targets = relative_links(REPO / "README.md")
    assert "docs/index.md" in targets and any(t.startswith("docs/scores.md") for t in targets)
