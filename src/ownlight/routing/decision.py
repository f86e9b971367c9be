"""What the route stage hands the call stage: targets in order, and why."""

from __future__ import annotations

from dataclasses import dataclass, field

from ownlight.backends.base import Backend


@dataclass(frozen=True)
class Target:
    backend: Backend

    @property
    def label(self) -> str:
        return self.backend.route_label

    @property
    def inside_domain(self) -> bool:
        return self.backend.entry.inside_domain


@dataclass
class RouteDecision:
    targets: list[Target]
    reason: str
    served_by: Target | None = None
    fallbacks: list[str] = field(default_factory=list)
