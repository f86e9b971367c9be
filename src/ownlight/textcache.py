"""Remembering a scanner's verdicts on texts it has seen.

Clients resend a whole conversation, its tool definitions and tool results with every
request, and many users share one long system prompt or retrieved context, so the privacy
shield and the injection guard see the same texts again and again: a verdict is kept, so
a turn costs what is new in it. Texts up to ``SHORT_TEXT_CHARS`` are kept as they are;
a longer one is remembered by its BLAKE2b digest (16 bytes), so that keeping a few hundred
2,000-token system prompts costs kilobytes, not megabytes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

T = TypeVar("T")

SHORT_TEXT_CHARS = 4000


def cache_short_texts(scan: Callable[[str], T], size: int = 4096,
                      long_size: int = 256) -> Callable[[str], T]:
    """``scan`` with its results remembered: short texts by value, long ones by digest."""
    cached = lru_cache(maxsize=size)(scan)
    long_results: OrderedDict[bytes, T] = OrderedDict()
    lock = threading.Lock()

    def remembered(text: str) -> T:
        if len(text) <= SHORT_TEXT_CHARS:
            return cached(text)
        key = hashlib.blake2b(text.encode(), digest_size=16).digest()
        with lock:
            if key in long_results:
                long_results.move_to_end(key)
                return long_results[key]
        result = scan(text)  # outside the lock: a long scan must not hold up the others
        with lock:
            long_results[key] = result
            while len(long_results) > long_size:
                long_results.popitem(last=False)
        return result

    return remembered
