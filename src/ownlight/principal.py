"""Who is asking: the principal a key (or, later, a signed-in session) carries.

Every stage after authentication (access lists, routing policy, budgets, stored
responses) reads this and nothing else about the caller, so it sits below them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    """Who is asking: every later stage (ACLs, routing policy, budgets) reads this."""

    key_id: int
    name: str
    tenant: str = "default"
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_admin(self) -> bool:
        """Admin keys are those in the ``admin`` group (the first key Ownlight makes is one)."""
        return "admin" in self.groups

    @property
    def identities(self) -> tuple[str, ...]:
        """The access-list entries this principal matches: user:NAME, group:G, public."""
        return (f"user:{self.name}", *(f"group:{g}" for g in self.groups), "public")
