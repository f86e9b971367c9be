"""JSON schemas in requests: checked on arrival, tightened for constrained decoding.

A tool's ``parameters`` or a ``response_format`` schema that is not a valid JSON
Schema is the client's mistake: a 400 that names the field, before any model runs.
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache
from typing import Any

import jsonschema
import orjson

from ownlight.errors import InvalidRequest


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
    return cls(schema)


def validate_instance(schema: dict[str, Any], value: Any) -> str | None:
    """None when ``value`` satisfies ``schema``, else the first error's message."""
    validator = _validator_for(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    return None if error is None else error.message


# llama-cpp-python's schema-to-grammar converter ignores numeric bounds; an integer
# range this small becomes an ``enum``, which the grammar does enforce.
ENUM_RANGE = 100


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy a grammar can hold a small model to.

    Objects with declared properties admit no others, and small integer ranges become
    enums. Values that satisfy the copy satisfy the original.
    """
    out = copy.deepcopy(schema)
    _close(out)
    return out


def _close(node: Any) -> None:
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        if node.get("type") == "integer" and "enum" not in node:
            low, high = _bounds(node)
            if low is not None and high is not None and 0 <= high - low <= ENUM_RANGE:
                node["enum"] = list(range(low, high + 1))
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)


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
