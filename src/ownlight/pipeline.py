"""The request path: every entry point (HTTP API, CLI, console) runs requests through here.

    authenticate -> validate -> retrieve -> guard input -> classify -> route
      -> protect egress -> call backend -> restore -> guard output -> cite -> record -> respond

``Pipeline.handle`` reads top to bottom like DESIGN.md's diagram. Each stage is one
method with a narrow job; stages that later issues fill are explicit pass-throughs.
Streams take the same path: the call stage waits for the first chunk before anything
is sent, so a backend that fails early still yields a clean HTTP error (or a fallback),
and the after-call stages run chunk by chunk.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ownlight.audit.records import RequestLog, RequestRecord
from ownlight.auth import KeyStore, Principal
from ownlight.backends.base import BackendCall, BackendResult, Json, Operation
from ownlight.errors import InvalidRequest, OwnlightError, RateLimited, UpstreamError
from ownlight.knowledge.citations import (
    CitationPrompt,
    CitationStream,
    attach_citations,
    with_sources,
)
from ownlight.knowledge.service import KnowledgeService
from ownlight.privacy.levels import LEVELS
from ownlight.privacy.stage import Egress, Findings, PrivacyShield
from ownlight.protocol import validate_body
from ownlight.routing.budgets import BudgetBook
from ownlight.routing.decision import RouteDecision, Target
from ownlight.routing.health import HealthTracker
from ownlight.routing.router import Router, RouteRequest, prompt_text

# Scanning this much text inline would hold the event loop for more than a moment.
INLINE_SCAN_CHARS = 4000


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


@dataclass
class GatewayRequest:
    """A request as it arrives, before anything is trusted."""

    operation: Operation
    body: Any
    api_key: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    request_id: str = field(default_factory=new_request_id)


@dataclass
class GatewayResponse:
    """An OpenAI body, or a stream of OpenAI chunks, plus the headers that explain it."""

    headers: dict[str, str]
    body: Json | None = None
    stream: AsyncIterator[Json] | None = None


@dataclass
class RequestContext:
    """What the stages learn about one request as it moves along."""

    request: GatewayRequest
    principal: Principal | None = None
    payload: Json = field(default_factory=dict)
    alias: str = ""
    stream: bool = False
    include_usage: bool = False
    sensitivity: str = "unknown"
    findings: Findings | None = None
    egress: Egress | None = None
    route: RouteDecision | None = None
    usage: Json | None = None
    grounding: CitationPrompt | None = None
    started: float = field(default_factory=time.perf_counter)

    def headers(self) -> dict[str, str]:
        headers = {"x-ownlight-request-id": self.request.request_id}
        if self.route is not None and self.route.served_by is not None:
            headers["x-ownlight-route"] = self.route.served_by.label
            headers["x-ownlight-route-reason"] = self.route.explain()
        if self.sensitivity != "unknown":
            headers["x-ownlight-sensitivity"] = self.sensitivity
        return headers


class Pipeline:
    def __init__(self, keys: KeyStore, router: Router, budgets: BudgetBook,
                 privacy: PrivacyShield | None, log: RequestLog,
                 health: HealthTracker | None = None,
                 knowledge: KnowledgeService | None = None):
        self.keys = keys
        self.knowledge = knowledge
        self.router = router
        self.budgets = budgets
        self.privacy = privacy
        self.log = log
        self.health = health or HealthTracker()
        self._fallback_shield: PrivacyShield | None = None

    async def handle(
        self, request: GatewayRequest, *, principal: Principal | None = None
    ) -> GatewayResponse:
        """Run one request. Trusted local entry points (the CLI) pass their principal."""
        ctx = RequestContext(request, principal=principal)
        try:
            ctx.principal = principal or self.authenticate(request)
            self.validate(ctx)
            await self.retrieve(ctx)
            await self.guard_input(ctx)
            await self.classify(ctx)
            ctx.route = await self.route(ctx)
            result = await self.call_backend(ctx)
        except OwnlightError as exc:
            self.record(ctx, None, exc)
            raise
        if isinstance(result, dict):
            result = self.cite(ctx, self.guard_output(ctx, self.restore(ctx, result)))
            self.record(ctx, result.get("usage"))
            return GatewayResponse(ctx.headers(), body=result)
        return GatewayResponse(ctx.headers(), stream=self._finish_stream(ctx, result))

    def scan_texts(self, api_key: str | None, body: Any) -> Json:
        """``POST /v1/privacy/scan``: spans and level for one or many texts, for a key."""
        self.keys.authenticate(api_key)
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequest("input must be a string or a non-empty list of strings",
                                 param="input")
        shield = self.privacy or self._default_shield()
        findings = [shield.classify(Operation.COMPLETION, {"prompt": t}) for t in texts]
        levels = [f.level for f in findings]
        return {
            "object": "list",
            "data": [{"index": i, "level": f.level,
                      "spans": [s.to_dict() | {"recognizer": s.recognizer} for s in f.spans[0]]}
                     for i, f in enumerate(findings)],
            "level": max(levels, key=LEVELS.index),
        }

    def _default_shield(self) -> PrivacyShield:
        if self._fallback_shield is None:
            self._fallback_shield = PrivacyShield()
        return self._fallback_shield

    # -- stages, in order -------------------------------------------------------------

    def authenticate(self, request: GatewayRequest) -> Principal:
        """API key -> principal (name, groups, tenant). Unknown or revoked keys fail closed."""
        return self.keys.authenticate(request.api_key)

    def validate(self, ctx: RequestContext) -> None:
        body = validate_body(ctx.request.operation, ctx.request.body)
        ctx.payload = body
        ctx.alias = body["model"]
        ctx.stream = bool(body.get("stream"))
        ctx.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def retrieve(self, ctx: RequestContext) -> None:
        """Knowledge chunks the principal may read, as numbered sources in a system message.

        Collections come from the body (``"knowledge": ["handbook"]``) and from a routed
        alias bound to them. The ACL is applied inside the search query, so the prompt
        (and the classify stage after this one) only ever sees readable text.
        """
        raw = ctx.payload.get("knowledge")
        routed = self.router.routed.get(ctx.alias)
        bound = routed.knowledge if routed is not None else ()
        if raw is None and not bound:
            return
        if ctx.request.operation is not Operation.CHAT:
            raise InvalidRequest("knowledge works with chat completions only", param="knowledge")
        if self.knowledge is None:
            raise InvalidRequest("The knowledge base is turned off on this server "
                                 "(knowledge.enabled).", param="knowledge")
        query = self.knowledge.parse(raw, bound)
        ctx.payload = {k: v for k, v in ctx.payload.items() if k != "knowledge"}
        question = prompt_text(Operation.CHAT, ctx.payload)
        if query is None or not question.strip():
            return
        assert ctx.principal is not None
        ctx.grounding = await self.knowledge.ground(ctx.principal, question, query)
        ctx.payload = with_sources(ctx.payload, ctx.grounding.system)

    async def guard_input(self, ctx: RequestContext) -> None:
        """Prompt-injection scan of user turns and chunks. Pass-through: the guard issue."""

    async def classify(self, ctx: RequestContext) -> None:
        """Sensitive spans in every text of the request -> its sensitivity level."""
        if self.privacy is None:
            return
        privacy, operation, body = self.privacy, ctx.request.operation, ctx.payload
        size = len(str(body.get("messages") or body.get("prompt") or body.get("input") or ""))
        if size > INLINE_SCAN_CHARS:
            ctx.findings = await asyncio.to_thread(privacy.classify, operation, body)
        else:
            ctx.findings = privacy.classify(operation, body)
        ctx.sensitivity = ctx.findings.level

    async def route(self, ctx: RequestContext) -> RouteDecision:
        """Alias + policy + complexity + budgets -> ordered targets, with the reason."""
        assert ctx.principal is not None
        return await self.router.decide(RouteRequest(
            ctx.principal, ctx.alias, ctx.request.operation, ctx.payload,
            ctx.request.headers, ctx.sensitivity,
        ))

    def protect_egress(self, ctx: RequestContext, target: Target) -> Json:
        """Outside the domain, sensitive values travel as placeholders (or are refused)."""
        if target.inside_domain or self.privacy is None or ctx.findings is None:
            return ctx.payload
        if ctx.egress is None:
            ctx.egress = self.privacy.egress()
        return self.privacy.pseudonymize(ctx.payload, ctx.findings, ctx.egress)

    async def call_backend(self, ctx: RequestContext) -> Json | AsyncIterator[Json]:
        """Try each target in order (with retries and circuit breakers); fail over on trouble.

        Only availability errors fail over; a stream fails over only before its first
        chunk, which ``_attempt`` waits for, so nothing has reached the client yet.
        """
        assert ctx.route is not None
        last_error: OwnlightError | None = None
        for target in ctx.route.targets:
            try:
                result = await self.health.call(
                    target.alias, target.health, partial(self._attempt, ctx, target)
                )
            except (UpstreamError, RateLimited) as exc:
                last_error = exc
                ctx.route.failures.append(f"{target.alias} {exc.code}")
                continue
            ctx.route.served_by = target
            return result
        assert last_error is not None
        raise last_error

    async def _attempt(self, ctx: RequestContext, target: Target) -> BackendResult:
        payload = self.protect_egress(ctx, target)
        call = BackendCall(ctx.request.operation, payload, stream=ctx.stream)
        result = await target.backend.execute(call)
        if isinstance(result, dict):
            return result
        return await _started(result)

    def restore(self, ctx: RequestContext, body: Json) -> Json:
        """Placeholders in the answer back to the real values, on our side only."""
        if ctx.egress is None or not self._served_outside(ctx):
            return body
        if ctx.stream:
            return ctx.egress.restore_chunk(body)
        return ctx.egress.restore_body(body)

    def guard_output(self, ctx: RequestContext, body: Json) -> Json:
        """Leak checks on the answer. Pass-through: the guard issue fills it."""
        return body

    def cite(self, ctx: RequestContext, body: Json) -> Json:
        """A grounded answer carries its numbered sources: ``citations`` and the footer."""
        if ctx.grounding is not None and self.knowledge is not None:
            attach_citations(body, ctx.grounding.citations, self.knowledge.sources_footer)
        return body

    def record(self, ctx: RequestContext, usage: Json | None,
               error: OwnlightError | None = None) -> None:
        """Charge budgets and log the request: route, reason, types found (never values)."""
        ctx.usage = usage
        served = ctx.route.served_by if ctx.route else None
        cost = 0.0
        if served is not None and not served.inside_domain and ctx.principal is not None:
            cost = served.price.cost(usage)
            self.budgets.charge(ctx.principal, cost)
        principal = ctx.principal
        self.log.append(RequestRecord(
            request_id=ctx.request.request_id,
            operation=ctx.request.operation.value,
            status=error.status if error else 200,
            error_code=error.code if error else None,
            principal=principal.name if principal else None,
            tenant=principal.tenant if principal else None,
            model=ctx.alias or None,
            route=served.label if served else None,
            reason=ctx.route.explain() if ctx.route else None,
            inside_domain=served.inside_domain if served else None,
            sensitivity=ctx.sensitivity,
            found=ctx.findings.counts if ctx.findings else {},
            knowledge=_knowledge_facts(ctx.grounding),
            pseudonymized=ctx.egress.vault.counts() if ctx.egress else {},
            usage=usage,
            cost_usd=cost,
            latency_ms=round((time.perf_counter() - ctx.started) * 1000, 3),
        ))

    # -- streams ----------------------------------------------------------------------

    def _served_outside(self, ctx: RequestContext) -> bool:
        served = ctx.route.served_by if ctx.route else None
        return served is not None and not served.inside_domain

    async def _finish_stream(
        self, ctx: RequestContext, chunks: AsyncIterator[Json]
    ) -> AsyncIterator[Json]:
        """Run the after-call stages chunk by chunk; hide usage unless it was asked for."""
        usage: Json | None = None
        error: OwnlightError | None = None
        cite = (CitationStream(ctx.grounding.citations, self.knowledge.sources_footer)
                if ctx.grounding is not None and self.knowledge is not None else None)
        try:
            async for chunk in chunks:
                if chunk.get("usage"):
                    usage = chunk["usage"]
                if not chunk.get("choices") and chunk.get("usage") is not None:
                    if ctx.include_usage:
                        yield chunk
                    continue
                if not ctx.include_usage and "usage" in chunk:
                    chunk = {k: v for k, v in chunk.items() if k != "usage"}
                chunk = self.guard_output(ctx, self.restore(ctx, chunk))
                yield cite.chunk(chunk) if cite is not None else chunk
        except OwnlightError as exc:
            error = exc
            raise
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            self.record(ctx, usage, error)


def _knowledge_facts(grounding: CitationPrompt | None) -> Json | None:
    """What the request log keeps of a grounded request: which documents were sources."""
    if grounding is None:
        return None
    return {"documents": [(c["collection"], c["document_id"]) for c in grounding.citations]}


async def _started(chunks: AsyncIterator[Json]) -> AsyncIterator[Json]:
    """Wait for a stream's first chunk, so early failures raise before any byte is sent."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        return _empty()
    return _prepend(first, chunks)


async def _empty() -> AsyncIterator[Json]:
    return
    yield


async def _prepend(first: Json, rest: AsyncIterator[Json]) -> AsyncIterator[Json]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
