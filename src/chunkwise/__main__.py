"""``python -m chunkwise`` is the ``chunkwise`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main(prog_name="chunkwise")
