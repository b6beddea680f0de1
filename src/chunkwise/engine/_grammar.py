"""GBNF grammars for structured output and tool calls, compiled from JSON Schema by chunkwise itself.

The promise is one-directional and strict: every complete output the grammar allows is valid JSON that
validates against the schema. (Not every valid document needs to be reachable: optional properties come
in the declared order, and no undeclared property is ever written.) So the compiler only accepts what it
can enforce; a schema keyword it cannot enforce, a bound it cannot honour and a schema that no value can
satisfy are each an :class:`~chunkwise.engine.InvalidRequestError` (400) that names the keyword and where
it sits, never a keyword silently ignored.

Enforced: ``type`` (one or a list), ``enum``, ``const``, ``properties``, ``required``,
``additionalProperties``, ``items``, ``prefixItems``, ``minItems``/``maxItems``, ``minLength``/``maxLength``,
``pattern`` (a safe subset, :mod:`._pattern`), ``minimum``/``maximum``/``exclusiveMinimum``/
``exclusiveMaximum``, ``format`` (``date``, ``time``, ``date-time``, ``uuid``), ``anyOf``, a one-element
``allOf``, and local ``$ref`` (``$defs``/``definitions``, recursion included). Annotations (``title``,
``description``, ``default``, ...) are ignored, as JSON Schema says they should be.

Each grammar has a budget, since its cost is paid at every token of every sequence that uses it: an ``anyOf``
has at most :data:`MAX_BRANCHES` branches, a grammar at most :data:`MAX_GRAMMAR_SIZE` bytes, and integer
bounds beyond what a double holds exactly are narrowed to it. Repetition bounds are capped at
:data:`MAX_REPEAT`: llama.cpp quietly turns a bound above 2000 into "no bound", and very large expansions are
exactly what crashed its parser. Tool calls are wrapped in a fixed
literal prefix (:func:`~chunkwise.engine._text.tool_call_prefix`), so the streamed text can be split into a
name and argument fragments without a JSON parser.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from ..types import Tool
from ._pattern import PatternError, pattern_rule
from ._protocol import InvalidRequestError
from ._text import tool_call_prefix

__all__ = ["MAX_BRANCHES", "MAX_REPEAT", "json_object_grammar", "json_schema_grammar", "tool_call_grammar"]

#: The largest ``maxLength``/``maxItems``/``minLength``/``minItems`` (and pattern repetition) accepted.
MAX_REPEAT = 1000
#: How deeply schemas may nest (objects in arrays in objects ...), ``$ref`` targets not counted.
MAX_SCHEMA_DEPTH = 32
#: The most branches one ``anyOf`` may have.
MAX_BRANCHES = 64
#: The largest grammar a request may build, in bytes of GBNF.
MAX_GRAMMAR_SIZE = 256 * 1024
#: Integers without a bound on a side are limited to 15 digits there (exact in a double).
_INT_LIMIT = 10**15 - 1
#: Bounded non-integers keep their integer part below this and write at most 6 decimals, so a value never
#: rounds onto an exclusive bound when parsed as a double.
_FRACTION_INT_LIMIT = 10**9 - 1
_FRACTION_DIGITS = 6
_FRACTION = '"." [0-9]{1,6}'

_BUILTINS = r"""ws ::= " "?
hex ::= [0-9a-fA-F]
char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" ([0-9a-cA-CefEF] hex hex hex | [dD] [0-7] hex hex))
string ::= "\"" char* "\"" ws
int-part ::= "0" | [1-9] [0-9]{0,14}
number ::= "-"? int-part ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})? ws
integer ::= "-"? int-part ws
boolean ::= ("true" | "false") ws
null ::= "null" ws
value ::= object | array | string | number | boolean | null
member ::= string ":" ws value
object ::= "{" ws (member ("," ws member)*)? "}" ws
array ::= "[" ws (value ("," ws value)*)? "]" ws
"""

_TYPES = ("string", "integer", "number", "boolean", "null", "object", "array")
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "$anchor",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentEncoding",
        "contentMediaType",
        "$defs",
        "definitions",
    }
)
#: Validation keywords this compiler cannot enforce: a schema using one gets a 400.
_UNSUPPORTED = frozenset(
    {
        "not",
        "if",
        "then",
        "else",
        "oneOf",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contains",
        "minContains",
        "maxContains",
        "multipleOf",
        "additionalItems",
        "$dynamicRef",
        "$recursiveRef",
        "contentSchema",
    }
)
#: String formats and the GBNF of their content. Years run from 0001 (year 0 is no date to Python or to
#: ``jsonschema``), each month gets its own days, February stops at 28 (a 29th is only valid in leap years) and
#: times carry a "Z", so that every value is valid however strictly a checker reads RFC 3339.
_FORMATS = {
    "date": (
        '("000" [1-9] | "00" [1-9] [0-9] | "0" [1-9] [0-9]{2} | [1-9] [0-9]{3}) "-" '
        '(("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | "1" [0-9] | "2" [0-8])'
        ' | ("0" [13-9] | "1" [0-2]) "-" ("29" | "30")'
        ' | ("0" [13578] | "1" [02]) "-" "31")'
    ),
    "time": '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? "Z"',
    "uuid": '[0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12}',
}
_FORMATS["date-time"] = f'{_FORMATS["date"]} "T" {_FORMATS["time"]}'
_OBJECT_KEYS = frozenset({"properties", "required", "additionalProperties"})
_ARRAY_KEYS = frozenset({"items", "prefixItems", "minItems", "maxItems", "uniqueItems"})
_STRING_KEYS = frozenset({"minLength", "maxLength", "pattern", "format"})
_NUMBER_KEYS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_TYPED_KEYS = {"object": _OBJECT_KEYS, "array": _ARRAY_KEYS, "string": _STRING_KEYS, "number": _NUMBER_KEYS}


class _SchemaError(Exception):
    def __init__(self, message: str, pointer: str) -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer


def _literal(text: str) -> str:
    """``text`` as a GBNF string literal that matches exactly ``text``."""
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _json_literal(value: Any) -> str:
    return _literal(json.dumps(value, ensure_ascii=False))


def _repeat(symbol: str, low: int, high: int | None) -> str:
    if high is None:
        return f"{symbol}*" if low == 0 else f"{symbol}+" if low == 1 else f"{symbol}{{{low},}}"
    if high == 0:
        return ""
    if low == high:
        return symbol if low == 1 else f"{symbol}{{{low}}}"
    return f"{symbol}?" if (low, high) == (0, 1) else f"{symbol}{{{low},{high}}}"


def _digits_between(low: str, high: str) -> str:
    """Decimal strings of one length, from ``low`` to ``high`` (``low <= high``)."""
    if low == high:
        return _literal(low)
    rest = len(low) - 1
    any_rest = f" [0-9]{{{rest}}}" if rest else ""
    if low[1:] == "0" * rest and high[1:] == "9" * rest:
        return f"[{low[0]}-{high[0]}]{any_rest}"
    if low[0] == high[0]:
        return f'"{low[0]}" ({_digits_between(low[1:], high[1:])})'
    parts: list[str] = []
    first, last = int(low[0]), int(high[0])
    if low[1:] != "0" * rest:
        parts.append(f'"{low[0]}" ({_digits_between(low[1:], "9" * rest)})')
        first += 1
    tail = None
    if high[1:] != "9" * rest:
        tail = f'"{high[0]}" ({_digits_between("0" * rest, high[1:])})'
        last -= 1
    if first <= last:
        parts.append(f"[{first}-{last}]{any_rest}")
    if tail is not None:
        parts.append(tail)
    return " | ".join(parts)


def _natural_range(low: int, high: int) -> str:
    """Integers ``low..high`` (``0 <= low <= high``) written without leading zeros."""
    parts: list[str] = []
    for length in range(len(str(low)), len(str(high)) + 1):
        start = max(low, 10 ** (length - 1) if length > 1 else 0)
        end = min(high, 10**length - 1)
        if start <= end:
            parts.append(_digits_between(str(start), str(end)))
    return " | ".join(f"({part})" for part in parts)


def _integer_range(low: int, high: int) -> str:
    parts: list[str] = []
    if low < 0:
        parts.append(f'"-" ({_natural_range(max(1, -min(high, -1)), -low)})')
    if high >= 0:
        parts.append(_natural_range(max(low, 0), high))
    return " | ".join(f"({part})" for part in parts)


class _Compiler:
    """Compiles schemas into rules of one grammar (shared rules are written once)."""

    def __init__(self) -> None:
        self._root: Any = None
        self._scope = 0
        self._rules: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._refs: dict[tuple[int, str], str] = {}

    def document(self, schema: Any, param: str) -> str:
        """Compile one whole schema (the root that its ``$ref`` pointers resolve against)."""
        self._root = schema
        self._scope += 1
        try:
            return self.compile(schema, "")
        except _SchemaError as exc:
            where = exc.pointer or "/"
            raise InvalidRequestError(f"Unsupported JSON schema at `{where}`: {exc.message}", param=param) from None
        except RecursionError:
            raise InvalidRequestError("Unsupported JSON schema: it nests too deeply", param=param) from None

    def add(self, body: str) -> str:
        name = self._names.get(body)
        if name is None:
            name = f"r{len(self._rules)}"
            self._rules[name] = body
            self._names[body] = name
        return name

    def text(self, root: str) -> str:
        lines = [f"root ::= {root}", *(f"{name} ::= {body}" for name, body in self._rules.items())]
        return "\n".join(lines) + "\n" + _BUILTINS

    # --- schemas --------------------------------------------------------------------------------------

    def compile(self, schema: Any, pointer: str, depth: int = 0) -> str:
        """The name of a rule matching exactly the JSON documents (plus trailing ``ws``) we allow for ``schema``."""
        if depth > MAX_SCHEMA_DEPTH:
            raise _SchemaError(f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels", pointer)
        if schema is True:
            return "value"
        if schema is False:
            raise _SchemaError("the schema `false` allows no value", pointer)
        if not isinstance(schema, dict):
            raise _SchemaError("a schema must be a JSON object or a boolean", pointer)
        for key, value in schema.items():
            if key in _UNSUPPORTED or (key == "uniqueItems" and value is not False):
                raise _SchemaError(f"the keyword `{key}` is not supported", f"{pointer}/{key}")
        constraints = [key for key in schema if key not in _ANNOTATIONS]
        if "$ref" in schema:
            self._alone(schema, "$ref", constraints, pointer)
            return self._ref(schema["$ref"], f"{pointer}/$ref")
        if "allOf" in schema:
            self._alone(schema, "allOf", constraints, pointer)
            parts = schema["allOf"]
            if not isinstance(parts, list) or len(parts) != 1:
                raise _SchemaError("`allOf` is supported with exactly one schema", f"{pointer}/allOf")
            return self.compile(parts[0], f"{pointer}/allOf/0", depth + 1)
        if "anyOf" in schema:
            self._alone(schema, "anyOf", constraints, pointer)
            branches = schema["anyOf"]
            if not isinstance(branches, list) or not branches:
                raise _SchemaError("`anyOf` must be a non-empty array of schemas", f"{pointer}/anyOf")
            if len(branches) > MAX_BRANCHES:
                # Every branch that can still match is followed at every token of every sequence.
                raise _SchemaError(f"`anyOf` with more than {MAX_BRANCHES} branches is over budget", f"{pointer}/anyOf")
            names = [self.compile(branch, f"{pointer}/anyOf/{i}", depth + 1) for i, branch in enumerate(branches)]
            return self.add(" | ".join(names))
        types = self._types(schema, pointer)
        if "enum" in schema or "const" in schema:
            return self._constants(schema, types, pointer)
        if len(types) > 1:
            return self.add(" | ".join(self._typed(schema, kind, pointer, depth) for kind in dict.fromkeys(types)))
        return self._typed(schema, types[0], pointer, depth)

    @staticmethod
    def _alone(schema: dict[str, Any], keyword: str, constraints: list[str], pointer: str) -> None:
        others = [key for key in constraints if key != keyword]
        if others:
            raise _SchemaError(f"`{keyword}` together with `{others[0]}` is not supported", f"{pointer}/{others[0]}")

    def _types(self, schema: dict[str, Any], pointer: str) -> list[str]:
        declared = schema.get("type")
        if declared is None:
            # No type: any value is allowed; pick the kind whose keywords are present (or any value).
            for kind, keys in _TYPED_KEYS.items():
                if keys & schema.keys():
                    return [kind]
            return ["any"]
        kinds = declared if isinstance(declared, list) else [declared]
        if not kinds or any(kind not in _TYPES for kind in kinds):
            raise _SchemaError(f"`type` must name JSON types ({', '.join(_TYPES)})", f"{pointer}/type")
        return kinds

    def _constants(self, schema: dict[str, Any], types: list[str], pointer: str) -> str:
        keyword = "const" if "const" in schema else "enum"
        values = [schema["const"]] if keyword == "const" else schema["enum"]
        if not isinstance(values, list) or not values:
            raise _SchemaError("`enum` must be a non-empty array", f"{pointer}/enum")
        others = [key for key in schema if key not in _ANNOTATIONS and key not in ("enum", "const", "type")]
        if others:
            raise _SchemaError(f"`{keyword}` together with `{others[0]}` is not supported", f"{pointer}/{others[0]}")
        if "enum" in schema and "const" in schema:
            values = [value for value in values if value == schema["const"]]
        allowed = [value for value in values if "any" in types or any(_is_type(value, kind) for kind in types)]
        if not allowed:
            raise _SchemaError(f"no value of `{keyword}` is allowed by the rest of the schema", f"{pointer}/{keyword}")
        return self.add(" | ".join(f"{_json_literal(value)} ws" for value in allowed))

    def _typed(self, schema: dict[str, Any], kind: str, pointer: str, depth: int) -> str:
        if kind == "object":
            return self._object(schema, pointer, depth)
        if kind == "array":
            return self._array(schema, pointer, depth)
        if kind == "string":
            return self._string(schema, pointer)
        if kind in ("integer", "number"):
            return self._number(schema, pointer, integer=kind == "integer")
        return "value" if kind == "any" else kind  # boolean, null

    def _ref(self, reference: Any, pointer: str) -> str:
        if not isinstance(reference, str) or not (reference == "#" or reference.startswith("#/")):
            raise _SchemaError("only local references (`#/$defs/...`) are supported", pointer)
        name = self._refs.get((self._scope, reference))
        if name is not None:
            return name
        target = self._root
        for part in reference[2:].split("/") if reference != "#" else []:
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and key in target:
                target = target[key]
            elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
                target = target[int(key)]
            else:
                raise _SchemaError(f"the reference `{reference}` points nowhere", pointer)
        # Named before it is compiled, so a recursive schema refers to itself.
        name = f"ref{len(self._refs)}"
        self._refs[self._scope, reference] = name
        self._rules[name] = self.compile(target, reference[1:], 0)
        return name

    def _object(self, schema: dict[str, Any], pointer: str, depth: int) -> str:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        additional = schema.get("additionalProperties", True)
        if not isinstance(properties, dict):
            raise _SchemaError("`properties` must be an object", f"{pointer}/properties")
        if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
            raise _SchemaError("`required` must be an array of strings", f"{pointer}/required")
        if not properties and not required:
            if additional is True or additional == {}:
                return "object"
            if additional is False:
                return self.add('"{" ws "}" ws')
            value = self.compile(additional, f"{pointer}/additionalProperties", depth + 1)
            entry = self.add(f'string ":" ws {value}')
            return self.add(f'"{{" ws ({entry} ("," ws {entry})*)? "}}" ws')
        entries: list[tuple[str, str, bool]] = []
        for name, subschema in properties.items():
            value = self.compile(subschema, f"{pointer}/properties/{_escape_pointer(name)}", depth + 1)
            entries.append((name, value, name in required))
        for name in dict.fromkeys(required):
            if name in properties:
                continue
            if additional is False:
                raise _SchemaError(
                    f"the required property `{name}` is not allowed by `additionalProperties: false`",
                    f"{pointer}/required",
                )
            value = self.compile(additional, f"{pointer}/additionalProperties", depth + 1)
            entries.append((name, value, True))
        # first_i: members i.. when none was written yet; rest_i: the same after one was (so with a comma).
        first, rest = "", ""
        for name, value, is_required in reversed(entries):
            member = self.add(f'{_json_literal(name)} ws ":" ws {value}')
            if is_required:
                first = self.add(f"{member} {rest}".strip())
                rest = self.add(f'"," ws {member} {rest}'.strip())
            else:
                first = self.add(f"({member} {rest} | {first})" if first else f"({member} {rest})?".replace(" )", ")"))
                rest = self.add(f'("," ws {member})? {rest}'.strip())
        return self.add(f'"{{" ws {first} "}}" ws')

    def _array(self, schema: dict[str, Any], pointer: str, depth: int) -> str:
        low = self._count(schema, "minItems", pointer, 0)
        high = self._count(schema, "maxItems", pointer, None)
        if high is not None and low > high:
            raise _SchemaError("`minItems` is greater than `maxItems`", f"{pointer}/minItems")
        items = schema.get("items", True)
        if isinstance(items, list):
            raise _SchemaError("`items` as an array is not supported; use `prefixItems`", f"{pointer}/items")
        if "prefixItems" in schema:
            prefix = schema["prefixItems"]
            if not isinstance(prefix, list) or not prefix:
                raise _SchemaError("`prefixItems` must be a non-empty array", f"{pointer}/prefixItems")
            if not low <= len(prefix) <= (len(prefix) if high is None else high):
                raise _SchemaError("`prefixItems` is supported only when its length fits the bounds", pointer)
            names = [self.compile(item, f"{pointer}/prefixItems/{i}", depth + 1) for i, item in enumerate(prefix)]
            return self.add('"[" ws ' + ' "," ws '.join(names) + ' "]" ws')
        if high == 0 or items is False:
            if low > 0:
                raise _SchemaError("`items: false` allows no item but `minItems` asks for some", pointer)
            return self.add('"[" ws "]" ws')
        item = self.compile(items, f"{pointer}/items", depth + 1)
        more = self.add(f'"," ws {item}')
        following = _repeat(more, max(low - 1, 0), None if high is None else high - 1)
        body = f"{item} {following}".strip()
        return self.add(f'"[" ws ({body})? "]" ws' if low == 0 else f'"[" ws {body} "]" ws')

    def _string(self, schema: dict[str, Any], pointer: str) -> str:
        low = self._count(schema, "minLength", pointer, 0)
        high = self._count(schema, "maxLength", pointer, None)
        if high is not None and low > high:
            raise _SchemaError("`minLength` is greater than `maxLength`", f"{pointer}/minLength")
        if "format" in schema:
            content = _FORMATS.get(schema["format"]) if isinstance(schema["format"], str) else None
            if content is None:
                supported = ", ".join(sorted(_FORMATS))
                raise _SchemaError(f"the format {schema['format']!r} is not supported ({supported} are)", pointer)
            if {"minLength", "maxLength", "pattern"} & schema.keys():
                raise _SchemaError("`format` together with `minLength`/`maxLength`/`pattern` is not supported", pointer)
            return self.add(f'"\\"" {self.add(content)} "\\"" ws')
        if "pattern" in schema:
            if "minLength" in schema or "maxLength" in schema:
                raise _SchemaError("`pattern` together with `minLength`/`maxLength` is not supported", pointer)
            pattern = schema["pattern"]
            if not isinstance(pattern, str):
                raise _SchemaError("`pattern` must be a string", f"{pointer}/pattern")
            try:
                expression = pattern_rule(pattern, max_repeat=MAX_REPEAT)
            except PatternError as exc:
                raise _SchemaError(f"`pattern`: {exc}", f"{pointer}/pattern") from None
            return self.add(f'"\\"" {self.add(expression)} "\\"" ws')
        if low == 0 and high is None:
            return "string"
        return self.add(f'"\\"" {_repeat("char", low, high)} "\\"" ws'.replace("  ", " "))

    def _count(self, schema: dict[str, Any], keyword: str, pointer: str, default: int | None) -> int | Any:
        value = schema.get(keyword, default)
        if value is default:
            return value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _SchemaError(f"`{keyword}` must be a non-negative integer", f"{pointer}/{keyword}")
        if value > MAX_REPEAT:
            raise _SchemaError(f"`{keyword}` above {MAX_REPEAT} cannot be enforced", f"{pointer}/{keyword}")
        return value

    def _bound(self, schema: dict[str, Any], keyword: str, pointer: str) -> float | int | None:
        value = schema.get(keyword)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _SchemaError(f"`{keyword}` must be a number", f"{pointer}/{keyword}")
        return value

    def _number(self, schema: dict[str, Any], pointer: str, *, integer: bool) -> str:
        minimum, maximum = self._bound(schema, "minimum", pointer), self._bound(schema, "maximum", pointer)
        above, below = (
            self._bound(schema, "exclusiveMinimum", pointer),
            self._bound(schema, "exclusiveMaximum", pointer),
        )
        if minimum is None and maximum is None and above is None and below is None:
            return "integer" if integer else "number"
        lows = [math.ceil(minimum)] if minimum is not None else []
        lows += [math.floor(above) + 1] if above is not None else []
        highs = [math.floor(maximum)] if maximum is not None else []
        highs += [math.ceil(below) - 1] if below is not None else []
        low = max(lows) if lows else None
        high = min(highs) if highs else None
        low = low if low is not None else min(-_INT_LIMIT, high if high is not None else 0)
        high = high if high is not None else max(_INT_LIMIT, low)
        # Bounds past what a double holds exactly narrow to it: every value written still fits the schema,
        # and the grammar stays small (a range of 300-digit integers is what made sampling crawl).
        low, high = max(low, -_INT_LIMIT), min(high, _INT_LIMIT)
        alternatives = [_integer_range(low, high)] if low <= high else []
        if not integer:
            # k.ddd lies in [k, k+1) for k >= 0 and in (k-1, k] for k < 0 ("-3.5" has integer part -3).
            upper = min((value for value in (maximum, below) if value is not None), default=None)
            lower = max((value for value in (minimum, above) if value is not None), default=None)
            top = min(math.floor(upper) - 1 if upper is not None else _FRACTION_INT_LIMIT, _FRACTION_INT_LIMIT)
            bottom = max(math.ceil(lower) + 1 if lower is not None else -_FRACTION_INT_LIMIT, -_FRACTION_INT_LIMIT)
            positive = range(max(low, 0), top + 1)
            negative = range(max(1, -min(high, -1)), -bottom + 1)
            if positive:
                alternatives.append(f"({_natural_range(positive.start, positive.stop - 1)}) {_FRACTION}")
            if negative:
                alternatives.append(f'"-" ({_natural_range(negative.start, negative.stop - 1)}) {_FRACTION}')
            # The integer parts a bound falls inside are only partly allowed: there exactly six decimals are
            # written, limited to the allowed ones (0.1 <= x <= 0.2 gives "0.100000" to "0.200000").
            bounds = [value for value in (minimum, maximum, above, below) if value is not None]

            def above_lower(value: float) -> bool:
                return (minimum is None or value >= minimum) and (above is None or value > above)

            def below_upper(value: float) -> bool:
                return (maximum is None or value <= maximum) and (below is None or value < below)

            for sign, covered in (("", positive), ("-", negative)):
                for whole in sorted({math.floor(bound if sign == "" else -bound) for bound in bounds}):
                    if 0 <= whole <= _FRACTION_INT_LIMIT and whole not in covered:
                        part = _partial_fraction(sign, whole, above_lower, below_upper)
                        if part is not None:
                            alternatives.append(part)
        if not alternatives:
            raise _SchemaError("no number satisfies these bounds (or none this server can write)", pointer)
        return self.add("(" + " | ".join(f"({part})" for part in alternatives) + ") ws")


def _partial_fraction(
    sign: str, whole: int, above_lower: Callable[[float], bool], below_upper: Callable[[float], bool]
) -> str | None:
    """``{sign}{whole}.dddddd`` for the six-decimal values within both bounds, or None if there are none.

    Each value is checked as the double a reader parses it to, so rounding never crosses a bound.
    """
    scale = 10**_FRACTION_DIGITS

    def value(decimals: int) -> float:
        return float(f"{sign}{whole}.{decimals:0{_FRACTION_DIGITS}d}")

    def first(predicate: Callable[[float], bool]) -> int:
        """The first decimals (0..scale) from which ``predicate`` holds; it is monotone in the decimals."""
        return bisect.bisect_left(range(scale), True, key=lambda decimals: predicate(value(decimals)))

    if sign == "":  # the value grows with the decimals
        start, stop = first(above_lower), first(lambda number: not below_upper(number))
    else:
        start, stop = first(below_upper), first(lambda number: not above_lower(number))
    if start >= stop:
        return None
    digits = _digits_between(f"{start:0{_FRACTION_DIGITS}d}", f"{stop - 1:0{_FRACTION_DIGITS}d}")
    return f'{_literal(sign + str(whole))} "." ({digits})'


def _escape_pointer(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    expected = {"string": str, "boolean": bool, "null": type(None), "object": dict, "array": list}[kind]
    return isinstance(value, expected)


def _checked_size(grammar: str, param: str) -> str:
    if len(grammar) > MAX_GRAMMAR_SIZE:
        raise InvalidRequestError(
            f"The schema is too large: its grammar would exceed {MAX_GRAMMAR_SIZE} bytes", param=param
        )
    return grammar


@functools.lru_cache(maxsize=128)
def _schema_grammar(schema_json: str, param: str) -> str:
    compiler = _Compiler()
    root = compiler.document(json.loads(schema_json), param)
    return _checked_size(compiler.text(root), param)


def json_schema_grammar(schema: dict[str, Any] | None, *, param: str = "response_format") -> str:
    """A grammar whose every complete output is a JSON document matching ``schema`` (any object if None)."""
    return _schema_grammar(json.dumps({"type": "object"} if schema is None else schema), param)


def json_object_grammar() -> str:
    """``response_format: json_object``: any JSON object."""
    return json_schema_grammar(None)


@functools.lru_cache(maxsize=128)
def _tool_grammar(tools_json: str, allow_text: bool) -> str:
    compiler = _Compiler()
    alternatives: list[str] = []
    for index, (name, parameters) in enumerate(json.loads(tools_json)):
        arguments = compiler.document(parameters, f"tools[{index}].function.parameters")
        alternatives.append(compiler.add(f"{_literal(tool_call_prefix(name))} {arguments} " + '"}"'))
    if allow_text:
        alternatives.append(compiler.add(r"[^{] [\U00000001-\U0010FFFF]*"))
    return _checked_size(compiler.text(" | ".join(alternatives)), "tools")


def tool_call_grammar(tools: Sequence[Tool], *, allow_text: bool) -> str:
    """One call to one of ``tools`` whose arguments match its parameter schema.

    With ``allow_text`` the output may instead be plain text that does not start with ``{``, so the first
    character tells which branch the model took (``tool_choice: auto``).
    """
    described = [
        (tool.function.name, tool.function.parameters or {"type": "object", "properties": {}}) for tool in tools
    ]
    return _tool_grammar(json.dumps(described), allow_text)
