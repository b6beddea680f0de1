"""GBNF grammars for structured output and tool calls, built on llama.cpp's JSON-schema converter.

Three changes from the converter's defaults keep the output valid JSON: string characters exclude raw
control characters (``json.loads`` rejects a literal newline inside a string); literals (``const``,
``enum``, property names) are escaped for GBNF properly, where the converter leaves backslashes unescaped
and writes characters outside the BMP as surrogate-pair escapes, which the grammar engine turns into
invalid UTF-8; and tool calls are wrapped in a fixed literal prefix
(:func:`~chunkwise.engine._text.tool_call_prefix`), so the streamed text can be split into a name and
argument fragments without a JSON parser.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Sequence
from typing import Any

from ..types import Tool
from ._protocol import InvalidRequestError
from ._text import tool_call_prefix

__all__ = ["json_object_grammar", "json_schema_grammar", "tool_call_grammar"]

_STRICT_CHAR_RULE = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_ANY_OBJECT: dict[str, Any] = {"type": "object"}
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def _literal(text: str) -> str:
    """``text`` as a GBNF string literal that matches exactly ``text``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _format_literal(converter: Any, literal: str) -> str:
    return _literal(literal)


def _constant_rule(converter: Any, value: Any) -> str:
    return _literal(json.dumps(value, ensure_ascii=False))


@functools.cache
def _converter_class() -> Any:
    from llama_cpp import llama_grammar

    overrides = {"_format_literal": _format_literal, "_generate_constant_rule": _constant_rule}
    return type("StrictSchemaConverter", (llama_grammar.SchemaConverter,), overrides)


class _Builder:
    """One grammar assembled from several JSON schemas (the converter keeps rule names unique)."""

    def __init__(self) -> None:
        converter_class = _converter_class()
        self._converter: Any = converter_class(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        self._extra: list[str] = []

    def schema_rule(self, schema: dict[str, Any], name: str, *, param: str) -> str:
        """Add the rules for ``schema`` and return the name of the rule that matches it."""
        try:
            resolved = self._converter.resolve_refs(copy.deepcopy(schema), name)
            rule: str = self._converter.visit(resolved, name)
        except Exception as exc:  # the converter signals unsupported schemas with assorted exceptions
            raise InvalidRequestError(f"Unsupported JSON schema: {exc}", param=param) from exc
        return rule

    def add(self, line: str) -> None:
        self._extra.append(line)

    def text(self) -> str:
        lines = [
            _STRICT_CHAR_RULE if line.startswith("char ::= ") else line
            for line in self._converter.format_grammar().splitlines()
        ]
        return "\n".join([*self._extra, *lines]) + "\n"


def json_schema_grammar(schema: dict[str, Any] | None, *, param: str = "response_format") -> str:
    """A grammar whose every complete output is a JSON document matching ``schema``."""
    builder = _Builder()
    body = builder.schema_rule(schema or _ANY_OBJECT, "json-value", param=param)
    builder.add(f"root ::= {body}")
    return builder.text()


def json_object_grammar() -> str:
    """``response_format: json_object``: any JSON object."""
    return json_schema_grammar(_ANY_OBJECT)


def tool_call_grammar(tools: Sequence[Tool], *, allow_text: bool) -> str:
    """One call to one of ``tools`` whose arguments match its parameter schema.

    With ``allow_text`` the output may instead be plain text that does not start with ``{``, so the first
    character tells which branch the model took (``tool_choice: auto``).
    """
    builder = _Builder()
    alternatives: list[str] = []
    for index, tool in enumerate(tools):
        arguments = builder.schema_rule(
            tool.function.parameters or _NO_PARAMETERS, f"tool-{index}-arguments", param=f"tools[{index}]"
        )
        call_rule = f"tool-{index}-call"
        builder.add(f"{call_rule} ::= {_literal(tool_call_prefix(tool.function.name))} {arguments} " + '"}"')
        alternatives.append(call_rule)
    if allow_text:
        builder.add(r"plain-text ::= [^{] [\U00000001-\U0010FFFF]*")
        alternatives.append("plain-text")
    builder.add("root ::= " + " | ".join(alternatives))
    return builder.text()
