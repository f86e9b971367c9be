"""What the route stage hands the call stage: targets in order, and why."""

from __future__ import annotations

from dataclasses import dataclass, field

from ownlight.backends.base import Backend
from ownlight.config.settings import BACKEND_KINDS
from ownlight.routing.budgets import Price
from ownlight.routing.counters import Reservation
from ownlight.routing.health import HealthPolicy


@dataclass(frozen=True)
class Target:
    backend: Backend
    price: Price = Price()
    health: HealthPolicy = HealthPolicy()

    @classmethod
    def of(cls, backend: Backend) -> Target:
        s = backend.entry.settings
        return cls(
            backend,
            Price(s.price_in, s.price_out),
            HealthPolicy(retries=s.retries, backoff=s.backoff, failures=s.circuit_failures,
                         cooldown=s.circuit_cooldown),
        )

    @property
    def alias(self) -> str:
        return self.backend.entry.alias

    @property
    def label(self) -> str:
        return self.backend.route_label

    @property
    def remote(self) -> bool:
        """A server over the network (which other instances call too), not in-process."""
        kind = BACKEND_KINDS.get(self.backend.entry.backend)
        return kind is not None and kind.remote

    @property
    def inside_domain(self) -> bool:
        return self.backend.entry.inside_domain


@dataclass
class RouteDecision:
    targets: list[Target]
    reason: str
    action: str = "direct"
    rule: str | None = None
    score: float | None = None
    served_by: Target | None = None
    failures: list[str] = field(default_factory=list)
    #: money held in the shared counters until the request's real cost is charged
    reservation: Reservation | None = None

    def explain(self) -> str:
        """The ``x-ownlight-route-reason`` header: the decision, then any fallback."""
        if self.served_by is not None and self.targets and self.served_by is not self.targets[0]:
            return f"fallback: {'; '.join(self.failures)} (planned: {self.reason})"
        return self.reason

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action, "rule": self.rule, "score": self.score,
            "reason": self.explain(), "targets": [t.label for t in self.targets],
            "served_by": self.served_by.label if self.served_by else None,
            "failures": list(self.failures),
        }
