"""The router: model alias + policy + complexity + budgets -> ordered targets.

Every alias a client can name has a list of targets: a plain alias is its own single
target; a routed alias (``[routing.aliases.auto] targets = ["local", "cloud"]``) has
several, inside and outside the domain. Policy then decides which part of that list
may serve the request, in this order of precedence:

1. red line: a sensitivity level in ``routing.red_line`` never leaves the domain;
2. the first matching rule (``local`` and ``deny`` are final, no header overrides them);
3. ``x-ownlight-prefer: local|cloud``, when ``routing.allow_prefer`` lets the key choose;
4. the complexity score against the alias's threshold;
5. budgets: a cloud decision over budget goes local, or is refused with 429 (with shared
   counters, the request's most cost is reserved here, across all instances).

A decision to stay local only ever lists inside-domain targets, so no fallback can
carry such a request out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ownlight.backends.base import Backend, Operation
from ownlight.config.settings import RoutingSettings
from ownlight.errors import (
    ConfigError,
    CountersUnavailable,
    InvalidRequest,
    ModelNotFound,
    PolicyRefused,
    RateLimited,
)
from ownlight.principal import Principal
from ownlight.protocol.model import Request
from ownlight.protocol.slots import Slot, estimate_tokens, last_user_text, text_slots
from ownlight.routing.budgets import Budget, BudgetBook
from ownlight.routing.counters import Reservation
from ownlight.routing.decision import RouteDecision, Target
from ownlight.routing.policy import Action, RequestFacts, Rule, first_match, rules_from

PREFER_HEADER = "x-ownlight-prefer"
PROMPT_OVERHEAD_TOKENS = 32  # a chat template's own tokens, reserved beyond the text's
#: The sensitivity of a request whose privacy scan failed: it never leaves the domain.
UNSCANNED = "unscanned"


@dataclass(frozen=True)
class RoutedAlias:
    name: str
    targets: tuple[str, ...]
    threshold: float = 0.5
    #: Collections every chat through this alias is grounded in (the knowledge base).
    knowledge: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteRequest:
    principal: Principal
    alias: str
    operation: Operation
    request: Request
    headers: Mapping[str, str]
    sensitivity: str = "unknown"
    slots: list[Slot] | None = None  # the request's text slots, when already enumerated
    deciding_types: Sequence[str] = ()  # the data types that set the level (never values)


class Router:
    def __init__(
        self,
        backends: Mapping[str, Backend],
        settings: RoutingSettings,
        budgets: BudgetBook,
        scorer: Callable[[str], float] | None = None,
    ):
        self.backends = backends
        self.budgets = budgets
        self.scorer = scorer
        self.rules: list[Rule] = rules_from(settings.rules)
        self.red_line = tuple(settings.red_line)
        self.allow_prefer = frozenset(settings.allow_prefer)
        self.routed = {
            name: RoutedAlias(name, tuple(table.targets), table.threshold, tuple(table.knowledge))
            for name, table in settings.aliases.items()
        }
        for routed in self.routed.values():
            missing = [t for t in routed.targets if t not in backends]
            if missing:
                raise ConfigError(f"routing alias {routed.name!r} names unknown or disabled "
                                  f"model(s): {', '.join(missing)}")

    def aliases(self) -> list[str]:
        return [*self.backends, *self.routed]

    def candidates(self, alias: str, operation: Operation) -> tuple[list[Target], float]:
        if alias in self.routed:
            routed = self.routed[alias]
            names, threshold = routed.targets, routed.threshold
        elif alias in self.backends:
            names, threshold = (alias,), 0.5
        else:
            raise ModelNotFound(
                f"The model '{alias}' does not exist or you do not have access to it.",
                param="model",
            )
        targets = [Target.of(self.backends[n]) for n in names
                   if operation in self.backends[n].operations]
        if not targets:
            raise InvalidRequest(
                f"The model '{alias}' does not support {operation.value} requests.",
                param="model",
            )
        return targets, threshold

    async def decide(self, request: RouteRequest) -> RouteDecision:
        targets, threshold = self.candidates(request.alias, request.operation)
        local = [t for t in targets if t.inside_domain]
        cloud = [t for t in targets if not t.inside_domain]
        facts = self._facts(request)

        if request.sensitivity in self.red_line or request.sensitivity == UNSCANNED:
            found = f" ({', '.join(request.deciding_types)})" if request.deciding_types else ""
            return self._local(local, request, f"red line: {request.sensitivity} data{found} "
                               "stays inside the domain", "local", "red-line")
        rule = first_match(self.rules, facts)
        action = rule.action if rule else Action.SCORE
        reason = f"rule {rule.name}" if rule else ""
        rule_name = rule.name if rule else None
        if action is Action.DENY:
            raise PolicyRefused(f"Routing policy '{rule_name}' does not allow this request.")
        if action is Action.LOCAL:
            return self._local(local, request, reason, "local", rule_name)
        if facts.prefer in ("local", "cloud"):
            action = Action(facts.prefer)
            reason = f"header {PREFER_HEADER}={facts.prefer}"
        score = None
        if action is Action.SCORE:
            if not (local and cloud):
                reason = reason or f"model {request.alias}"
                if cloud:  # a priced alias keeps to the budgets all the same
                    return self._cloud(cloud, local, request, reason, rule_name, "direct")
                return RouteDecision(targets, reason, "direct", rule_name)
            score = await asyncio.to_thread(lambda: facts.score)
            action = Action.CLOUD if score > threshold else Action.LOCAL
            sign = ">" if score > threshold else "<="
            reason = f"complexity={score:.2f}{sign}{threshold:g}"
        if action is Action.LOCAL:
            decision = self._local(local, request, reason, "local", rule_name)
        else:
            decision = self._cloud(cloud, local, request, reason, rule_name)
        decision.score = facts.score if facts.scored else None
        return decision

    def _facts(self, request: RouteRequest) -> RequestFacts:
        principal = request.principal
        prefer = (request.headers.get(PREFER_HEADER) or "").strip().lower() or None
        if prefer and not (self.allow_prefer & set(_identities(principal))):
            prefer = None  # the key may not choose; the header is ignored, not an error
        text = last_user_text(request.request)
        scorer = self.scorer
        return RequestFacts(
            user=principal.name, tenant=principal.tenant, groups=principal.groups,
            model=request.alias, tokens=estimate_tokens(request.request, request.slots),
            prefer=prefer, sensitivity=request.sensitivity,
            score_fn=(lambda: scorer(text)) if scorer else (lambda: 0.0),
        )

    def _local(self, local: list[Target], request: RouteRequest, reason: str, action: str,
               rule: str | None) -> RouteDecision:
        if not local:
            raise PolicyRefused(
                f"{reason or 'Policy'}: this request must stay inside the domain, and model "
                f"'{request.alias}' has no target inside it. Nothing was sent.",
                code="policy_local_only",
            )
        return RouteDecision(local, reason or "local", action, rule)

    def _cloud(self, cloud: list[Target], local: list[Target], request: RouteRequest,
               reason: str, rule: str | None, action: str = "cloud") -> RouteDecision:
        if not cloud:
            return RouteDecision(local, f"{reason}; no cloud target, local", "local", rule)
        paid = [t for t in cloud if t.price.input_per_million or t.price.output_per_million]
        reservation: Reservation | None = None
        most = 0.0
        if not paid:
            over = None
        elif self.budgets.counters is None:
            over = self.budgets.exhausted(request.principal)
        else:
            most = most_cost(paid, request, self.budgets.reserve_output_tokens)
            try:
                held = self.budgets.reserve(request.principal, most)
            except CountersUnavailable:
                if not local:
                    raise
                return RouteDecision(local, f"{reason or 'cloud'}; shared counters "
                                     "unreachable, local", "local", rule)
            over = held if isinstance(held, Budget) else None
            reservation = held if isinstance(held, Reservation) else None
        if over is not None:
            note = f"budget: {over.scope} {over.subject(request.principal)} reached its " \
                   f"{over.period} limit of {over.limit_usd:g} USD"
            if most:  # reserved: what is left may be more than nothing, but not enough
                note += f" (with this request's most cost of {most:.4g} USD reserved)"
            if local:
                return RouteDecision(local, f"{note}; local", "local", rule)
            raise RateLimited(f"{note}. Try again next {over.period}, or ask for a local model.",
                              code="budget_exceeded")
        decision = RouteDecision([*cloud, *local], reason or "cloud", action, rule)
        decision.reservation = reservation
        return decision


def most_cost(targets: Sequence[Target], request: RouteRequest, default_output: int) -> float:
    """The most a request may cost on the dearest of ``targets``: every UTF-8 byte of its
    text a token (a byte-level tokenizer makes no more) plus a template's overhead, and
    ``max_tokens`` (else ``default_output``) for each answer asked for."""
    slots = request.slots if request.slots is not None else text_slots(request.request)
    prompt = sum(len(s.text.encode()) for s in slots) + PROMPT_OVERHEAD_TOKENS
    sampling = request.request.sampling
    output = (sampling.max_tokens or default_output) * max(1, sampling.n)
    usage = {"prompt_tokens": prompt, "completion_tokens": output}
    return max(t.price.cost(usage) for t in targets)


def _identities(principal: Principal) -> tuple[str, ...]:
    return (*principal.identities, f"tenant:{principal.tenant}", "*")
