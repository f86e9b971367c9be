"""Money budgets per key and per tenant, kept in the state database.

Config shape::

    [[routing.budgets]]
    scope = "tenant"        # or "key" (matched by key name)
    match = "acme"          # a name, or "*" for each tenant/key separately
    period = "day"          # or "month" (calendar, UTC)
    limit_usd = 5.0

Spend is the sum of token usage times the target's price; local targets cost
nothing and never count. Spend survives restarts and resets when a period starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ownlight.config.settings import BudgetSettings
from ownlight.principal import Principal
from ownlight.store.sqlite import StateStore


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
    def __init__(self, store: StateStore, budgets: Sequence[Budget],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.store = store
        self.budgets = list(budgets)
        self.now = now

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
        rows = self.store.query(
            "SELECT usd FROM spend WHERE scope = ? AND subject = ? AND period = ?",
            (budget.scope, budget.subject(principal), self._period(budget)),
        )
        return float(str(rows[0][0])) if rows else 0.0

    def charge(self, principal: Principal, usd: float) -> None:
        if usd <= 0:
            return
        entries = {(b.scope, b.subject(principal), self._period(b))
                   for b in self.budgets if b.applies_to(principal)}
        entries |= {("key", principal.name, self.now().strftime("%Y-%m")),
                    ("tenant", principal.tenant, self.now().strftime("%Y-%m"))}
        with self.store.transaction() as db:
            for scope, subject, period in entries:
                db.execute(
                    "INSERT INTO spend (scope, subject, period, usd) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (scope, subject, period) DO UPDATE SET usd = usd + excluded.usd",
                    (scope, subject, period, usd),
                )
