"""``POST /v1/privacy/scan``: what the shield finds in texts a caller sends, outside any
request to a model."""

from __future__ import annotations

from typing import Any

from ownlight.backends.base import Json
from ownlight.errors import InvalidRequest
from ownlight.privacy.levels import LEVELS
from ownlight.privacy.stage import PrivacyShield


def scan_texts(shield: PrivacyShield, body: Any) -> Json:
    """Spans and level for one or many texts (the route has checked the caller's key)."""
    texts = body.get("input") if isinstance(body, dict) else None
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("input must be a string or a non-empty list of strings",
                             param="input")
    found = [shield.scan(t) for t in texts]
    levels = [shield.level([spans]) for spans in found]
    return {
        "object": "list",
        "data": [{"index": i, "level": level,
                  "spans": [s.to_dict() | {"recognizer": s.recognizer} for s in spans]}
                 for i, (spans, level) in enumerate(zip(found, levels, strict=True))],
        "level": max(levels, key=LEVELS.index),
    }
