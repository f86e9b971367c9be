"""Money budgets per key and per tenant, kept in the state database.

Config shape::

    [[routing.budgets]]
    scope = "tenant"        # or "key" (matched by key name)
    match = "acme"          # a name, or "*" for each tenant/key separately
    period = "day"          # or "month" (calendar, UTC)
    limit_usd = 5.0

Spend is the sum of token usage times the target's price; local targets cost
nothing and never count. Spend survives restarts and resets when a period starts. The sums
are kept by the configured store (``store.base.SpendRows``): the SQLite file, or PostgreSQL
shared by every instance. A check that cannot read the store fails closed (the store's
``StoreUnavailable``); a charge it cannot take is logged and dropped rather than lose the
request's ledger record, which keeps the cost too.

With ``[redis] url`` set, the book also holds shared counters (``routing.counters``): a paid
request then reserves its most possible cost against every budget that applies, across all
instances, before it is sent (``reserve``), and settles the real cost after (``charge``), so
a burst spread over any number of instances cannot together break a limit by more than one
request's most. Without Redis the check reads the store before the call and the charge adds
after it, which one instance alone keeps close but several under a burst do not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ownlight.config.settings import BudgetSettings
from ownlight.errors import StoreUnavailable
from ownlight.principal import Principal
from ownlight.routing.counters import Limit, Reservation, SharedCounters
from ownlight.store.base import SpendRows

log = logging.getLogger("ownlight.budgets")


@dataclass(frozen=True)
class Budget:
    scope: str
    match: str
    period: str
    limit_usd: float

    def applies_to(self, principal: Principal) -> bool:
        subject = self.subject(principal)
        return self.match in ("*", subject)

    def subject(self, principal: Principal) -> str:
        return principal.tenant if self.scope == "tenant" else principal.name


@dataclass(frozen=True)
class Price:
    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def cost(self, usage: Mapping[str, Any] | None) -> float:
        if not usage:
            return 0.0
        prompt = float(usage.get("prompt_tokens") or 0)
        completion = float(usage.get("completion_tokens") or 0)
        return (prompt * self.input_per_million + completion * self.output_per_million) / 1e6


def budgets_from(settings: Sequence[BudgetSettings]) -> list[Budget]:
    """The ``[[routing.budgets]]`` tables (validated when loaded)."""
    return [Budget(b.scope, b.match, b.period, b.limit_usd) for b in settings]


class BudgetBook:
    def __init__(self, spend: SpendRows, budgets: Sequence[Budget],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 counters: SharedCounters | None = None, reserve_output_tokens: int = 4096):
        self.spend = spend
        self.reserve_output_tokens = reserve_output_tokens
        self.budgets = list(budgets)
        self.now = now
        self.counters = counters

    def _period(self, budget: Budget) -> str:
        now = self.now()
        return now.strftime("%Y-%m-%d") if budget.period == "day" else now.strftime("%Y-%m")

    def exhausted(self, principal: Principal, estimated_usd: float = 0.0) -> Budget | None:
        """The first budget this request would break, if any."""
        for budget in self.budgets:
            if not budget.applies_to(principal):
                continue
            if self.spent(budget, principal) + estimated_usd >= budget.limit_usd:
                return budget
        return None

    def spent(self, budget: Budget, principal: Principal) -> float:
        return self.spend.spent((budget.scope, budget.subject(principal), self._period(budget)))

    def reserve(self, principal: Principal, most_usd: float) -> Reservation | Budget | None:
        """With shared counters: hold ``most_usd`` against every budget that applies, on
        all instances at once; the Reservation, or the budget it would break. None when no
        budget applies (nothing to hold). ``CountersUnavailable`` when Redis is unreachable.
        """
        assert self.counters is not None
        applying = [b for b in self.budgets if b.applies_to(principal)]
        if not applying:
            self.counters.check_up()  # fail closed all the same: spend is not known
            return None
        entries = [(b.scope, b.subject(principal), self._period(b)) for b in applying]
        limits = [Limit("/".join(e), b.limit_usd) for e, b in zip(entries, applying, strict=True)]
        held = self.counters.reserve(limits, most_usd, lambda i: self.spend.spent(entries[i]))
        return applying[held] if isinstance(held, int) else held

    def charge(self, principal: Principal, usd: float,
               reservation: Reservation | None = None) -> None:
        """Add a request's real cost to the store, then settle its reservation (if any)."""
        try:
            self._add(principal, usd)
        finally:
            if reservation is not None and self.counters is not None:
                try:
                    self.counters.settle(reservation, usd)
                except Exception as exc:  # it lapses at its expiry
                    log.error("reservation of %.6f USD by %s not settled (%s); it lapses in "
                              "%g s", reservation.usd, principal.name, exc,
                              self.counters.reservation_seconds)

    def _add(self, principal: Principal, usd: float) -> None:
        if usd <= 0:
            return
        entries = {(b.scope, b.subject(principal), self._period(b))
                   for b in self.budgets if b.applies_to(principal)}
        entries |= {("key", principal.name, self.now().strftime("%Y-%m")),
                    ("tenant", principal.tenant, self.now().strftime("%Y-%m"))}
        try:
            self.spend.add(entries, usd)
        except StoreUnavailable:
            log.error("spend of %.6f USD by %s (tenant %s) not counted: the store is "
                      "unreachable (the request's ledger record keeps its cost)",
                      usd, principal.name, principal.tenant)
