"""JSON schemas in requests: checked on arrival, tightened for constrained decoding.

A tool's ``parameters`` or a ``response_format`` schema that is not a valid JSON
Schema is the client's mistake: a 400 that names the field, before any model runs.
"""

from __future__ import annotations

import copy
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


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy where objects with declared properties admit no others.

    Decoding under a grammar built from this schema still yields values that satisfy
    the original; it only stops a small model from inventing extra keys forever.
    """
    out = copy.deepcopy(schema)
    _close(out)
    return out


def _close(node: Any) -> None:
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)
