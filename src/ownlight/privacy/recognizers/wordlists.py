"""Name and word lists shipped in ownlight/data/privacy (built by bench/make_name_lists.py).

Read once per process and shared read-only (frozensets), so concurrent scans are safe.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load(name: str) -> frozenset[str]:
    path = resources.files("ownlight").joinpath("data", "privacy", name)
    text = path.read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())
