"""Name and word lists shipped in ownlight/data/privacy (built by bench/make_name_lists.py),
and the English vocabulary of ``wordfreq`` (its data ships inside the package).

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


ENGLISH_WORDS = 50_000  # wordfreq's most frequent English words: code, opus, agent, api...


@cache
def english_words() -> frozenset[str]:
    """The words English uses most, lowercased (names among them: smith, lee, jordan)."""
    from wordfreq import top_n_list

    return frozenset(top_n_list("en", ENGLISH_WORDS))
