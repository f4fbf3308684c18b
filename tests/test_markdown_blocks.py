"""Every command block of the README and the docs pages says where it runs; the README stays short.

tests/e2e/test_readme.py runs the README's `<!-- local -->` blocks; this checks the markers only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.markdown_blocks import blocks, commands, local_blocks

RENDERED = {"results.md", "benchmarks.md"}  # `make docs` writes them from docs/templates
PAGES = [
    REPO / "README.md",
    REPO / "pipelines" / "README.md",
    *sorted(p for p in (REPO / "docs").glob("*.md") if p.name not in RENDERED),
]
README_MAX_LINES = 300


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_block_says_where_it_runs(page: Path) -> None:
    problems = []
    for block in blocks(page):
        if not block.lang:
            problems.append(f"{block.where()}: a fence without a language (```bash, ```text ...)")
        elif block.is_command and block.marker is None:
            problems.append(
                f"{block.where()}: no `<!-- local -->` or `<!-- not-local: <reason> -->` "
                "on the line before the fence"
            )
        elif block.marker == "not-local" and not block.reason:
            problems.append(f"{block.where()}: `not-local` needs a reason")
        elif not block.is_command and block.marker is not None:
            problems.append(f"{block.where()}: a ```{block.lang} block is not a command")
    assert not problems, "\n".join(problems)


def test_readme_is_a_short_guide() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, (
        f"README.md has {len(text.splitlines())} lines (at most {README_MAX_LINES}): "
        "move the long material to a page under docs/ and link it"
    )
    assert local_blocks(REPO / "README.md"), "README.md has no local block for a user to run"
    dated = re.findall(r"\b20\d\d-[01]\d-[0-3]\d\b|\b[Ii]ssue #?\d+", text)
    assert not dated, f"README.md names dates or issues: {dated}"


def test_blocks_reads_markers_headings_and_verbatim_text(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Run\n\n<!-- local -->\n```bash\nmake pipeline   # trains\n"
        "dvc exp show \\\n    --only-changed\n```\n\n"
        "<!-- not-local: a foreground server -->\n```bash\nmake mlflow-ui\n```\n\n"
        "```text\n# not a heading\n```\n"
    )
    first, second, third = blocks(page)
    assert (first.marker, first.heading, first.line) == ("local", "Run", 6)
    assert first.text == "make pipeline   # trains\ndvc exp show \\\n    --only-changed\n"
    assert commands(first.text) == ["make pipeline", "dvc exp show --only-changed"]
    assert (second.marker, second.reason) == ("not-local", "a foreground server")
    assert (third.lang, third.marker, third.is_command) == ("text", None, False)
    assert [b.line for b in local_blocks(page)] == [6]
