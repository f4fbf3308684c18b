"""docs/results.md and docs/benchmarks.md are what `make docs` renders from the committed records."""

from __future__ import annotations

from benchmarks.render_docs import render
from tests.conftest import REPO


def test_committed_pages_are_what_the_records_render() -> None:
    for page, text in render(REPO).items():
        committed = page.read_text(encoding="utf-8") if page.exists() else ""
        assert committed == text, (
            f"{page.relative_to(REPO)} differs from what its records render: run `make docs` "
            "and commit the page (edit docs/templates/ or docs/records/, never the page)"
        )
