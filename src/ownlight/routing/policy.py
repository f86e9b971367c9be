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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ownlight.config.settings import RoutingRule, RuleConditions


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


@dataclass(frozen=True)
class Rule:
    name: str
    action: Action
    when: RuleConditions = RuleConditions()

    def matches(self, facts: RequestFacts) -> bool:
        w = self.when
        checks: list[Callable[[], bool]] = [
            lambda: w.tenants is None or facts.tenant in w.tenants,
            lambda: w.users is None or facts.user in w.users,
            lambda: w.groups is None or bool(set(facts.groups) & set(w.groups)),
            lambda: w.models is None or facts.model in w.models,
            lambda: w.min_tokens is None or facts.tokens >= w.min_tokens,
            lambda: w.max_tokens is None or facts.tokens <= w.max_tokens,
            lambda: w.prefer is None or facts.prefer == w.prefer,
            lambda: w.sensitivity is None or facts.sensitivity in w.sensitivity,
            lambda: w.min_score is None or facts.score >= w.min_score,
            lambda: w.max_score is None or facts.score <= w.max_score,
        ]
        return all(check() for check in checks)  # lazily: the score only if reached


def rules_from(settings: Sequence[RoutingRule]) -> list[Rule]:
    """The ``[[routing.rules]]`` tables (validated when loaded), in order."""
    return [Rule(table.name or f"rule-{i + 1}", Action(table.action), table.when)
            for i, table in enumerate(settings)]


def first_match(rules: Sequence[Rule], facts: RequestFacts) -> Rule | None:
    return next((rule for rule in rules if rule.matches(facts)), None)
