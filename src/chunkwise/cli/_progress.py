"""The spinner the CLI shows while something slow starts (loading a model, deploying replicas)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

__all__ = ["spinner"]


@contextmanager
def spinner(console: Console, description: str) -> Iterator[None]:
    """Show ``description`` with a spinner and the time elapsed until the block ends; gone afterwards."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        progress.add_task(description, total=None)
        yield
