"""Remembering a scanner's verdicts on short texts.

Clients resend a whole conversation, its tool definitions and tool results with every
request, so the privacy shield and the injection guard see the same texts again and
again: a verdict on a text up to ``SHORT_TEXT_CHARS`` long is kept, so a turn costs
what is new in it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")

SHORT_TEXT_CHARS = 4000


def cache_short_texts(scan: Callable[[str], T], size: int = 4096) -> Callable[[str], T]:
    """``scan`` with its results on short texts remembered (long ones scanned each time)."""
    cached = lru_cache(maxsize=size)(scan)

    def remembered(text: str) -> T:
        return cached(text) if len(text) <= SHORT_TEXT_CHARS else scan(text)

    return remembered
