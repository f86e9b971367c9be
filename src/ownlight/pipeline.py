"""The request path: every entry point (HTTP API, CLI, console) runs requests through here.

    authenticate -> validate -> retrieve -> guard input -> classify -> route
      -> protect egress -> call backend -> restore -> guard output -> record -> respond

``Pipeline.handle`` reads top to bottom like DESIGN.md's diagram. Each stage is one
method with a narrow job; stages that later issues fill are explicit pass-throughs.
Streams are handled the same way: the call stage waits for the first chunk before
anything is sent, so a backend that fails early still yields a clean HTTP error.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ownlight.auth import KeyStore, Principal
from ownlight.backends.base import BackendCall, BackendResult, Json, Operation
from ownlight.errors import OwnlightError, RateLimited, UpstreamError
from ownlight.protocol import validate_body
from ownlight.routing.budgets import BudgetBook
from ownlight.routing.decision import RouteDecision, Target
from ownlight.routing.health import HealthTracker
from ownlight.routing.router import Router, RouteRequest


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


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
    route: RouteDecision | None = None
    usage: Json | None = None
    started: float = field(default_factory=time.perf_counter)

    def headers(self) -> dict[str, str]:
        headers = {"x-ownlight-request-id": self.request.request_id}
        if self.route is not None and self.route.served_by is not None:
            headers["x-ownlight-route"] = self.route.served_by.label
            headers["x-ownlight-route-reason"] = self.route.explain()
        return headers


class Pipeline:
    def __init__(self, keys: KeyStore, router: Router, budgets: BudgetBook,
                 health: HealthTracker | None = None):
        self.keys = keys
        self.router = router
        self.budgets = budgets
        self.health = health or HealthTracker()

    async def handle(
        self, request: GatewayRequest, *, principal: Principal | None = None
    ) -> GatewayResponse:
        """Run one request. Trusted local entry points (the CLI) pass their principal."""
        ctx = RequestContext(request)
        ctx.principal = principal or self.authenticate(request)
        self.validate(ctx)
        await self.retrieve(ctx)
        await self.guard_input(ctx)
        await self.classify(ctx)
        ctx.route = await self.route(ctx)
        result = await self.call_backend(ctx)
        if isinstance(result, dict):
            result = self.guard_output(ctx, self.restore(ctx, result))
            self.record(ctx, result.get("usage"))
            return GatewayResponse(ctx.headers(), body=result)
        return GatewayResponse(ctx.headers(), stream=self._finish_stream(ctx, result))

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
        """Knowledge chunks the principal may read. Pass-through: issue #5 fills it."""

    async def guard_input(self, ctx: RequestContext) -> None:
        """Prompt-injection scan of user turns and chunks. Pass-through: the guard issue."""

    async def classify(self, ctx: RequestContext) -> None:
        """Sensitive spans -> sensitivity level. Pass-through: issue #4 fills it."""
        ctx.sensitivity = "unknown"

    async def route(self, ctx: RequestContext) -> RouteDecision:
        """Alias + policy + complexity + budgets -> ordered targets, with the reason."""
        assert ctx.principal is not None
        return await self.router.decide(RouteRequest(
            ctx.principal, ctx.alias, ctx.request.operation, ctx.payload,
            ctx.request.headers, ctx.sensitivity,
        ))

    def protect_egress(self, ctx: RequestContext, target: Target) -> Json:
        """Pseudonymize or refuse before data leaves the domain. Pass-through: issue #4."""
        return ctx.payload

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
                    target.alias, target.health, lambda t=target: self._attempt(ctx, t)
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
        """Placeholders back to real values. Pass-through: issue #4 fills it."""
        return body

    def guard_output(self, ctx: RequestContext, body: Json) -> Json:
        """Leak checks on the answer. Pass-through: the guard issue fills it."""
        return body

    def record(self, ctx: RequestContext, usage: Json | None) -> None:
        """Spend against budgets. The audit ledger entry: the audit issue fills it."""
        ctx.usage = usage
        served = ctx.route.served_by if ctx.route else None
        if served is not None and not served.inside_domain and ctx.principal is not None:
            self.budgets.charge(ctx.principal, served.price.cost(usage))

    # -- streams ----------------------------------------------------------------------

    async def _finish_stream(
        self, ctx: RequestContext, chunks: AsyncIterator[Json]
    ) -> AsyncIterator[Json]:
        """Run the after-call stages chunk by chunk; hide usage unless it was asked for."""
        usage: Json | None = None
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
                yield self.guard_output(ctx, self.restore(ctx, chunk))
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            self.record(ctx, usage)


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
