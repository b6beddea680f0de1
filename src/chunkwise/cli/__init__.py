"""The ``chunkwise`` command line: a click group with one module per command.

Add a command by writing it in its own module and registering it below with ``main.add_command``.
"""

from __future__ import annotations

import click

from .._version import __version__
from ._chat import chat, models
from ._gateway import gateway, keys, nodes, usage
from ._serve import serve

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chunkwise")
def main() -> None:
    """Streaming chat completions in the OpenAI/Atoma wire format."""


main.add_command(serve)
main.add_command(chat)
main.add_command(models)
main.add_command(gateway)
main.add_command(keys)
main.add_command(usage)
main.add_command(nodes)
