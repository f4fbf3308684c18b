"""The fenced blocks of the project's markdown pages, as the tests that run them read them.

A command block (```bash, ```sh, ```shell, ```console) carries, on the line just before its fence,
where it runs: `<!-- local -->` (a fresh clone on this machine, no other hosts, apt, GPUs or
foreground servers) or `<!-- not-local: <reason> -->`. Every other fence names its language
(```text, ```json), so no command block goes unmarked by leaving it out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

COMMAND_LANGS = frozenset({"bash", "sh", "shell", "console"})
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*(local|not-local)(?::\s*(.*?))?\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    marker: str | None  # "local", "not-local" or None
    reason: str | None  # a not-local block's reason
    heading: str | None  # the nearest heading above it
    text: str  # the block's lines, verbatim, each ending with a newline

    @property
    def is_command(self) -> bool:
        return self.lang in COMMAND_LANGS

    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file, in file order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    heading: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        opened = FENCE.match(line)
        if opened is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{i + 1}: a fence that is never closed")
        mark = MARKER.match(lines[i - 1]) if i > 0 else None
        found.append(
            Block(
                path=path,
                line=i + 1,
                lang=opened.group(1),
                marker=mark.group(1) if mark else None,
                reason=mark.group(2) if mark else None,
                heading=heading,
                text="".join(f"{body}\n" for body in lines[i + 1 : end]),
            )
        )
        i = end + 1
    return found


def command_blocks(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.is_command]


def local_blocks(path: Path) -> list[Block]:
    """The `<!-- local -->` command blocks, in file order: what a fresh clone runs top to bottom."""
    return [b for b in command_blocks(path) if b.marker == "local"]


def commands(block: str) -> list[str]:
    """A block's commands one per item: continuation lines joined, comments and blank lines cut."""
    joined = re.sub(r"\\\n\s*", "", block)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out
