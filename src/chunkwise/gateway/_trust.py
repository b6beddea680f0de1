"""Editing ``[nodes] trusted`` in a gateway's TOML file, leaving every other byte of the file as it was.

Only the ``trusted = [...]`` assignment of the ``[nodes]`` table is rewritten (or added, with the table if
need be). The result is parsed again before it replaces the file: unless everything but the trust list
reads the same as before, nothing is written. The new file goes to a temporary name and is renamed into
place, so a running gateway (which re-reads the list when the file changes) never sees half a file.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._config import ConfigError, parse_trusted_keys

__all__ = ["edit_trusted_keys", "read_trusted_keys"]

_TABLE_HEADER = re.compile(r"^[ \t]*\[[ \t]*nodes[ \t]*\][ \t]*(#.*)?$", re.MULTILINE)
_ANY_HEADER = re.compile(r"^[ \t]*\[", re.MULTILINE)
_TRUSTED = re.compile(r"^[ \t]*trusted[ \t]*=[ \t]*", re.MULTILINE)


def _load(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def read_trusted_keys(path: Path) -> tuple[str, ...]:
    """The keys in ``[nodes] trusted`` of the file at ``path``."""
    return _trusted_of(_load(_read(path), path))


def _trusted_of(data: dict[str, Any]) -> tuple[str, ...]:
    nodes = data.get("nodes", {})
    return parse_trusted_keys(nodes.get("trusted", []) if isinstance(nodes, dict) else [])


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _array_end(text: str, start: int) -> int:
    """The index just after the TOML array that opens at ``text[start]`` (strings and comments skipped)."""
    depth = 0
    index = start
    while index < len(text):
        char = text[index]
        if char in "\"'":
            quote = text[index : index + 3] if text[index : index + 3] in ('"""', "'''") else char
            if char == "'":  # a literal string: no escapes
                index = text.index(quote, index + len(quote)) + len(quote) - 1
            else:
                index = _string_end(text, index, quote)
        elif char == "#":
            index = text.find("\n", index)
            if index < 0:
                break
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    raise ConfigError("the [nodes] trusted array is not closed")


def _string_end(text: str, start: int, quote: str) -> int:
    index = start + len(quote)
    while True:
        index = text.index(quote[0], index)
        if text[index - 1] != "\\" and text.startswith(quote, index):
            return index + len(quote) - 1
        index += 1


def _render(keys: list[str]) -> str:
    return "trusted = [" + "".join(f'\n    "{key}",' for key in keys) + ("\n]" if keys else "]")


def _rewritten(text: str, keys: list[str]) -> str:
    header = _TABLE_HEADER.search(text)
    if header is None:
        separator = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return f"{text}{separator}[nodes]\n{_render(keys)}\n"
    body_start = header.end()
    following = _ANY_HEADER.search(text, body_start + 1)
    body_end = following.start() if following is not None else len(text)
    assignment = _TRUSTED.search(text, body_start, body_end)
    if assignment is None:
        return f"{text[:body_start]}\n{_render(keys)}{text[body_start:]}"
    if text[assignment.end() : assignment.end() + 1] != "[":
        raise ConfigError("[nodes] trusted must be an array written as [ ... ]")
    end = _array_end(text, assignment.end())
    line_start = text.rfind("\n", 0, assignment.start()) + 1
    return f"{text[:line_start]}{_render(keys)}{text[end:]}"


def _without_trust(data: dict[str, Any]) -> dict[str, Any]:
    nodes = data.get("nodes")
    if not isinstance(nodes, dict):
        return data
    rest = {key: value for key, value in nodes.items() if key != "trusted"}
    return {**data, "nodes": rest} if rest else {key: value for key, value in data.items() if key != "nodes"}


def edit_trusted_keys(path: Path, change: Callable[[list[str]], list[str]]) -> tuple[str, ...]:
    """Apply ``change`` to the trust list in ``path`` and write the file back; the new list."""
    text = _read(path)
    before = _load(text, path)
    keys = list(_trusted_of(before))
    wanted = change(list(keys))
    parse_trusted_keys(wanted)
    if wanted == keys and "nodes" in before:
        return tuple(keys)
    new_text = _rewritten(text, wanted)
    try:
        after = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        after = None
    if (
        after is None
        or _without_trust(after) != _without_trust(before)
        or after.get("nodes", {}).get("trusted") != wanted
    ):
        raise ConfigError(f"cannot edit the trust list of {path} safely (write [nodes] trusted = [...] by hand)")
    mode = os.stat(path).st_mode & 0o777
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(new_text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return tuple(wanted)
