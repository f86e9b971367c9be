"""What one request carries through the pipeline: as it arrives, as it leaves, and what
the stages learn about it on the way."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ownlight.audit.records import new_request_id
from ownlight.principal import Principal
from ownlight.protocol import carry
from ownlight.protocol.model import Chunk, Json, Operation, Request, Response
from ownlight.protocol.slots import Slot

if TYPE_CHECKING:  # what the stages learn: each stage's own facts, typed where it lives
    from ownlight.guard.stage import GuardFacts
    from ownlight.knowledge.citations import CitationPrompt
    from ownlight.privacy.stage import Egress, Findings
    from ownlight.routing.decision import RouteDecision
    from ownlight.routing.rate_limits import Admission


Parser = Callable[[Operation, Any], Request]


@dataclass
class GatewayRequest:
    """A request as it arrives, before anything is trusted.

    ``parse`` is the front-end's translator from its wire JSON to the canonical
    ``Request``; it runs after the key is checked, so strangers learn nothing.
    """

    operation: Operation
    body: Any
    api_key: str | None
    parse: Parser
    headers: Mapping[str, str] = field(default_factory=dict)
    request_id: str = field(default_factory=new_request_id)
    endpoint: str = ""  # the route it came in on, for the record and the metrics


@dataclass
class GatewayResponse:
    """A canonical answer, or a stream of canonical chunks, plus the headers explaining it."""

    headers: dict[str, str]
    body: Response | None = None
    stream: AsyncIterator[Chunk] | None = None


@dataclass
class RequestContext:
    """What the stages learn about one request as it moves along."""

    incoming: GatewayRequest
    principal: Principal | None = None
    request: Request | None = None
    slots: list[Slot] = field(default_factory=list)
    sensitivity: str = "unknown"
    findings: Findings | None = None
    privacy_failure: str | None = None  # why the scan failed ("timed out", an error)
    egress: Egress | None = None
    route: RouteDecision | None = None
    usage: Json | None = None
    grounding: CitationPrompt | None = None
    started: float = field(default_factory=time.perf_counter)
    answer: list[str] = field(default_factory=list)  # kept only when audit.bodies asks
    guard: GuardFacts | None = None
    served_label: str | None = None  # the target and model version that answered
    replica: str | None = None  # the pool member (host:port) that answered, if a pool
    prompt_mac: str | None = None  # the prompt's salted hash, when the egress record made it
    #: ``x-ownlight-*`` headers the serving in-process backend added to its answer
    backend_headers: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # client fields the backend did not get
    admission: Admission | None = None  # what the rate limits hold for it (``[[limits]]``)
    #: a stage's own per-request state (a stream's citation state), by stage name
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def alias(self) -> str:
        return self.request.model if self.request is not None else ""

    @property
    def operation(self) -> Operation:
        return self.incoming.operation

    @property
    def stream(self) -> bool:
        return self.request is not None and self.request.stream

    @property
    def include_usage(self) -> bool:
        return self.request is not None and self.request.include_usage

    def headers(self) -> dict[str, str]:
        headers = {**self.backend_headers, "x-ownlight-request-id": self.incoming.request_id}
        if self.route is not None and self.route.served_by is not None:
            headers["x-ownlight-route"] = self.served_label or self.route.served_by.label
            headers["x-ownlight-route-reason"] = self.route.explain()
        if self.replica is not None:
            headers["x-ownlight-replica"] = self.replica
        if self.sensitivity != "unknown":
            headers["x-ownlight-sensitivity"] = self.sensitivity
        if self.grounding is not None:  # how many sources the answer may cite; "none" warns
            headers["x-ownlight-grounding"] = str(len(self.grounding.citations) or "none")
        if self.dropped:
            headers[carry.HEADER] = ", ".join(self.dropped)
        if self.admission is not None:
            headers.update(self.admission.headers())
        if self.guard is not None and (self.guard.untrusted or self.guard.input_flagged):
            g = self.guard
            headers["x-ownlight-guard"] = (
                f"untrusted={g.tool_results_flagged + g.chunks_flagged + g.chunks_withheld}; "
                f"chunks_withheld={g.chunks_withheld}; "
                f"input={'flagged' if g.input_flagged else 'ok'}")
        return headers
