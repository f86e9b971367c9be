"""Small checks the wire parsers share: an optional list, a bounded number."""

from __future__ import annotations

from typing import Any

from ownlight.errors import InvalidRequest
from ownlight.protocol.model import Json


def optional_list(body: Json, key: str) -> list[Any]:
    """``body[key]`` when it is a list, ``[]`` when absent, else a 400 naming the field."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{key} must be an array", param=key)
    return value


def bounded_number(body: Json, key: str, low: float, high: float) -> float | None:
    """``body[key]`` as a float within [low, high], None when absent, else a 400."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"{key} must be a number between {low:g} and {high:g}", param=key)
    return float(value)
