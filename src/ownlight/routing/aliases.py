"""The plain router: the alias a client names is the backend that serves it."""

from __future__ import annotations

from collections.abc import Mapping

from ownlight.backends.base import Backend, Operation
from ownlight.errors import InvalidRequest, ModelNotFound
from ownlight.routing.decision import RouteDecision, Target


class AliasRouter:
    def __init__(self, backends: Mapping[str, Backend]):
        self.backends = backends

    def decide(self, alias: str, operation: Operation) -> RouteDecision:
        backend = self.backends.get(alias)
        if backend is None:
            raise ModelNotFound(
                f"The model '{alias}' does not exist or you do not have access to it.",
                param="model",
            )
        if operation not in backend.operations:
            raise InvalidRequest(
                f"The model '{alias}' does not support {operation.value} requests.",
                param="model",
            )
        return RouteDecision([Target(backend)], reason=f"alias {alias}")
