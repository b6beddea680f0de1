"""Writing a benchmark's results into its section of BENCHMARKS.md, shared by the bench scripts."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_section"]


def write_section(path: Path, title: str, section: str) -> None:
    """Replace the section headed ``title`` in ``path`` with ``section`` (or append it); others stay as they are."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == title), None)
    if start is None:
        path.write_text(text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    after = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + section.rstrip("\n") + "\n" + ("\n" + after if after else ""))
