"""Sensitivity level of a text or request, from rules over the span types and counts found.

Settings shape (``[privacy.levels]`` and ``[[privacy.level_rules]]``)::

    levels = {"restricted": ["SECRET", ...], "confidential": [...], "internal": [...]}
    level_rules = [{"level": "restricted", "types": ["PERSON"], "min_count": 10}]

``levels`` lists types that raise the level on one occurrence (replacing the default for
that level); ``level_rules`` add count thresholds. The highest level any rule reaches wins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ownlight.config.settings import PrivacySettings
from ownlight.privacy.spans import Span

LEVELS = ("public", "internal", "confidential", "restricted")

DEFAULT_LEVELS: dict[str, tuple[str, ...]] = {
    "restricted": ("SECRET", "NATIONAL_ID", "PASSPORT", "US_SSN", "CREDIT_CARD", "IBAN_CODE"),
    "confidential": ("PERSON", "PHONE_NUMBER", "EMAIL_ADDRESS", "STREET_ADDRESS",
                     "US_DRIVER_LICENSE"),
    "internal": ("IP_ADDRESS",),
}


@dataclass(frozen=True)
class LevelRule:
    level: str
    types: frozenset[str]  # empty: any type
    min_count: int = 1

    def matches(self, counts: Mapping[str, int]) -> bool:
        if self.types:
            n = sum(counts.get(t, 0) for t in self.types)
        else:
            n = sum(counts.values())
        return n >= self.min_count


class LevelPolicy:
    def __init__(self, rules: Iterable[LevelRule], default_level: str = "internal"):
        self.rules = tuple(rules)
        self.unknown_level = default_level  # for types no rule names (e.g. deny-list types)

    @classmethod
    def from_settings(cls, settings: PrivacySettings | None = None) -> LevelPolicy:
        s = settings or PrivacySettings()
        levels: dict[str, tuple[str, ...]] = {**DEFAULT_LEVELS}
        levels.update((str(level), tuple(types)) for level, types in s.levels.items())
        rules = [LevelRule(level, frozenset(types)) for level, types in levels.items()]
        rules += [LevelRule(r.level, frozenset(r.types), r.min_count) for r in s.level_rules]
        return cls(rules, s.unknown_type_level)

    def level(self, spans: Iterable[Span]) -> str:
        counts = Counter(s.type for s in spans)
        best = 0
        named = {t for r in self.rules for t in r.types}
        if any(t not in named for t in counts):
            best = LEVELS.index(self.unknown_level)
        for rule in self.rules:
            if rule.matches(counts):
                best = max(best, LEVELS.index(rule.level))
        return LEVELS[best]

    def deciding_types(self, counts: Mapping[str, int], level: str) -> list[str]:
        """The types found that raise a request to ``level``: what a refusal names."""
        named = {t for r in self.rules for t in r.types}
        types = {t for r in self.rules if r.level == level and r.matches(counts)
                 for t in (r.types or counts) if counts.get(t)}
        if level == self.unknown_level:
            types |= {t for t in counts if t not in named}
        return sorted(types)
