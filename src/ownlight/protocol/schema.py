"""JSON schemas in requests: checked on arrival, made fit for constrained decoding.

A tool's ``parameters`` or a ``response_format`` schema that is not a valid JSON
Schema is the client's mistake: a 400 that names the field, before any model runs.
A valid one is never refused: ``for_grammar`` makes a copy llama-cpp-python's
schema-to-grammar converter can take (an untyped property, which admits any value,
included), and an answer is checked against the client's own schema afterwards.
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache
from typing import Any

import jsonschema
import orjson
import referencing
import referencing.exceptions

from ownlight.errors import InvalidRequest

# A ``$ref`` is resolved inside the schema only: jsonschema would otherwise fetch a
# remote one over the network, at a client's word.
NO_RETRIEVAL = referencing.Registry()

def check_schema(schema: dict[str, Any], where: str) -> None:
    try:
        _validator_for(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"{where} is not a valid JSON schema: {exc.message}",
                             param=where) from None
    except (TypeError, orjson.JSONEncodeError):
        raise InvalidRequest(f"{where} is not a valid JSON schema", param=where) from None


@lru_cache(maxsize=512)
def _validator_for(key: bytes) -> jsonschema.protocols.Validator:
    """Clients send the same tool schemas on every turn: check each one once."""
    schema = orjson.loads(key)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, registry=NO_RETRIEVAL)


def validate_instance(schema: dict[str, Any], value: Any) -> str | None:
    """None when ``value`` satisfies ``schema`` (or the schema cannot be applied: a
    ``$ref`` outside it), else the first error's message."""
    validator = _validator_for(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except (referencing.exceptions.Unresolvable, RecursionError):
        return None
    return None if error is None else error.message


# llama-cpp-python's schema-to-grammar converter ignores numeric bounds; an integer
# range this small becomes an ``enum``, which the grammar does enforce.
ENUM_RANGE = 100
# A bounded repetition (``maxLength``, ``maxItems``) is spelled out in the grammar one
# optional item at a time: Claude Code's ``maxLength: 524288`` would make a grammar of
# megabytes, which llama.cpp's parser cannot take (it crashes the process). Longer
# bounds are left to the check afterwards.
REPEAT_LIMIT = 256
#: Any JSON value, in terms the converter knows (it takes ``{}`` for an object).
ANY_VALUE: dict[str, Any] = {
    "type": ["string", "number", "boolean", "object", "array", "null"]}

# Where subschemas sit, by keyword: the walk visits these and nothing else (an
# ``enum`` value or a property named ``properties`` is data, not a schema).
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions",
                "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalProperties", "additionalItems", "contains", "not", "if",
               "then", "else", "propertyNames", "unevaluatedProperties",
               "unevaluatedItems")
# Without a ``type``, what the converter recognises a schema by.
_STRUCTURE = ("$ref", "oneOf", "anyOf", "allOf", "const", "enum", "properties",
              "additionalProperties", "items", "prefixItems", "pattern")
_FORMATS = ("uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5", "date", "time",
            "date-time")


def for_grammar(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy a grammar can hold a small model to.

    Tighter where a grammar can enforce more: objects with declared properties admit no
    others, and small integer ranges become enums. Looser where the converter cannot
    express a keyword: a schema with no ``type`` and nothing else it recognises (a
    bare ``description``, ``{}``, ``true``, a lone ``not`` or ``minimum``) admits any
    JSON value, and very long repetitions, unanchored or escaped patterns are dropped.
    The answer is validated against the original afterwards.
    """
    return _node(copy.deepcopy(schema))


def _node(node: Any) -> Any:
    if node is True or node == {}:
        return dict(ANY_VALUE)
    if not isinstance(node, dict):
        return node  # ``false`` and the like: the converter's fallback takes them
    for key in _SCHEMA_MAPS:  # a property that may not appear is left out
        if isinstance(node.get(key), dict):
            node[key] = {name: _node(sub) for name, sub in node[key].items()
                         if sub is not False}
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            node[key] = [_node(sub) for sub in node[key]]
    for key in _SCHEMA_ONE:
        if key in node:
            node[key] = [_node(s) for s in node[key]] if isinstance(node[key], list) \
                else _node(node[key])
    if "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False
    if node.get("type") == "integer" and "enum" not in node:
        low, high = _bounds(node)
        if low is not None and high is not None and 0 <= high - low <= ENUM_RANGE:
            node["enum"] = list(range(low, high + 1))
    _loosen(node)
    if "type" not in node and not any(k in node for k in _STRUCTURE) \
            and node.get("format") not in _FORMATS:
        return {**ANY_VALUE, **{k: v for k, v in node.items() if k in ("$defs", "definitions")}}
    return node


def _loosen(node: dict[str, Any]) -> None:
    """Drop what the converter cannot turn into a grammar llama.cpp accepts."""
    for low, high in (("minLength", "maxLength"), ("minItems", "maxItems")):
        if _too_long(node.get(high)) or _too_long(node.get(low)):
            node.pop(low, None)
            node.pop(high, None)
    pattern = node.get("pattern")
    if pattern is not None and not _plain_pattern(pattern):
        del node["pattern"]


def _too_long(bound: Any) -> bool:
    return _is_number(bound) and bound > REPEAT_LIMIT


def _plain_pattern(pattern: Any) -> bool:
    """Anchored at both ends, with no escapes or groups the converter mistranslates."""
    return (isinstance(pattern, str) and pattern.startswith("^") and pattern.endswith("$")
            and "\\" not in pattern and "(?" not in pattern and len(pattern) <= 200)


def _bounds(node: dict[str, Any]) -> tuple[int | None, int | None]:
    """The smallest and largest integer a node admits, where it says."""
    lows, highs = [], []
    if _is_number(node.get("minimum")):
        lows.append(math.ceil(node["minimum"]))
    if _is_number(node.get("exclusiveMinimum")):
        lows.append(math.floor(node["exclusiveMinimum"]) + 1)
    if _is_number(node.get("maximum")):
        highs.append(math.floor(node["maximum"]))
    if _is_number(node.get("exclusiveMaximum")):
        highs.append(math.ceil(node["exclusiveMaximum"]) - 1)
    return (max(lows) if lows else None), (min(highs) if highs else None)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
