"""Routing policy: ordered rules over facts about a request; the first match wins.

Config shape (``ownlight.toml``)::

    [[routing.rules]]
    name = "finance-stays-home"
    when = { groups = ["finance"] }          # every listed condition must hold
    action = "local"                         # local | cloud | deny | score

Conditions: ``tenants``, ``groups`` (any of), ``users``, ``models`` (requested alias),
``min_tokens`` / ``max_tokens`` (estimated prompt tokens), ``prefer`` (the
``x-ownlight-prefer`` header, when the key may choose), ``sensitivity`` (levels from
the privacy stage; ``unknown`` before it runs), ``min_score`` / ``max_score``
(complexity). A rule without ``when`` matches everything. With no rule matching,
the action is ``score``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ownlight.errors import ConfigError


class Action(StrEnum):
    LOCAL = "local"
    CLOUD = "cloud"
    DENY = "deny"
    SCORE = "score"


@dataclass
class RequestFacts:
    """What the policy may look at. The complexity score is computed only if asked for."""

    user: str
    tenant: str
    groups: tuple[str, ...]
    model: str
    tokens: int
    prefer: str | None
    sensitivity: str
    score_fn: Callable[[], float] = field(repr=False, default=lambda: 0.0)
    _score: float | None = field(default=None, repr=False)

    @property
    def score(self) -> float:
        if self._score is None:
            self._score = self.score_fn()
        return self._score

    @property
    def scored(self) -> bool:
        return self._score is not None


CONDITIONS = {
    "tenants", "groups", "users", "models", "min_tokens", "max_tokens", "prefer",
    "sensitivity", "min_score", "max_score",
}


@dataclass(frozen=True)
class Rule:
    name: str
    action: Action
    when: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, facts: RequestFacts) -> bool:
        w = self.when
        checks: list[Callable[[], bool]] = [
            lambda: "tenants" not in w or facts.tenant in w["tenants"],
            lambda: "users" not in w or facts.user in w["users"],
            lambda: "groups" not in w or bool(set(facts.groups) & set(w["groups"])),
            lambda: "models" not in w or facts.model in w["models"],
            lambda: "min_tokens" not in w or facts.tokens >= w["min_tokens"],
            lambda: "max_tokens" not in w or facts.tokens <= w["max_tokens"],
            lambda: "prefer" not in w or facts.prefer == w["prefer"],
            lambda: "sensitivity" not in w or facts.sensitivity in w["sensitivity"],
            lambda: "min_score" not in w or facts.score >= w["min_score"],
            lambda: "max_score" not in w or facts.score <= w["max_score"],
        ]
        return all(check() for check in checks)  # lazily: the score only if reached


def parse_rules(raw: Sequence[Mapping[str, Any]]) -> list[Rule]:
    rules = []
    for i, table in enumerate(raw):
        name = str(table.get("name") or f"rule-{i + 1}")
        try:
            action = Action(table.get("action", "score"))
        except ValueError:
            raise ConfigError(f"routing rule {name!r}: action must be one of "
                              f"{', '.join(a.value for a in Action)}") from None
        when = dict(table.get("when") or {})
        unknown = set(when) - CONDITIONS
        if unknown:
            raise ConfigError(f"routing rule {name!r}: unknown condition(s) "
                              f"{', '.join(sorted(unknown))}")
        for key in ("tenants", "groups", "users", "models", "sensitivity"):
            if isinstance(when.get(key), str):
                when[key] = [when[key]]
        rules.append(Rule(name, action, when))
    return rules


def first_match(rules: Sequence[Rule], facts: RequestFacts) -> Rule | None:
    return next((rule for rule in rules if rule.matches(facts)), None)
