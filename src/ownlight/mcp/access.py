"""Who may list and call which tool: ``[[mcp.access]]`` rules, deny wins, no rule denies."""

from __future__ import annotations

from fnmatch import fnmatchcase

from ownlight.config.settings import McpAccessRule
from ownlight.principal import Principal


def caller_identities(principal: Principal) -> frozenset[str]:
    """The entries a rule's ``who`` may name for this caller."""
    return frozenset({f"user:{principal.name}", f"tenant:{principal.tenant}", "*",
                      *(f"group:{g}" for g in principal.groups)})


class ToolAccess:
    """The access rules, evaluated per caller and qualified tool name (fail closed)."""

    def __init__(self, rules: list[McpAccessRule]):
        self.rules = rules

    def allows(self, principal: Principal, qualified_name: str) -> bool:
        who = caller_identities(principal)
        allowed = False
        for rule in self.rules:
            if who.isdisjoint(rule.who):
                continue
            if not any(fnmatchcase(qualified_name, glob) for glob in rule.tools):
                continue
            if rule.effect == "deny":
                return False
            allowed = True
        return allowed
