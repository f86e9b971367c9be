"""The request path: every entry point (HTTP API, CLI, console) runs requests through here.

    validate -> stages' before (retrieve, guard input, classify) -> route
      -> call backend: fallback over targets, each outside the domain wrapped in egress
         protection (pseudonymize, record, call, restore)
      -> stages' after, in reverse (cite) -> record -> respond

The key is checked before the body is read (``api/common.py``; the CLI is trusted), so
``handle`` starts from a principal. Each concern around the call is a ``Stage``
(``ownlight.stages.base``) in ``Pipeline.stages``; egress protection and failover are
wrappers with a backend's ``execute``. Streams take the same path: the fallback waits
for the first chunk before anything is sent, so a backend that fails early still yields
a clean HTTP error (or a fallback), and the after-hooks run chunk by chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ownlight.audit.ledger import AuditUnavailableError, Ledger
from ownlight.audit.metrics import Metrics
from ownlight.audit.recorder import answer_text, chunk_text, request_record
from ownlight.audit.records import RequestRecord
from ownlight.auth import KeyStore
from ownlight.backends.base import BackendResult, Json
from ownlight.config.settings import UpstreamSettings
from ownlight.errors import (
    AuditUnavailable,
    ClientDisconnected,
    ContextLengthExceeded,
    CountersUnavailable,
    OwnlightError,
    PermissionDenied,
    UpstreamTimeout,
)
from ownlight.guard.input_stage import GuardStage
from ownlight.guard.stage import InjectionGuard
from ownlight.knowledge.service import KnowledgeService
from ownlight.knowledge.stage import GroundingStage
from ownlight.principal import Principal
from ownlight.privacy.classify_stage import ClassifyStage
from ownlight.privacy.egress import EgressBackend
from ownlight.privacy.scan import scan_texts
from ownlight.privacy.stage import PrivacyShield
from ownlight.protocol import carry
from ownlight.protocol.model import Chunk, Response, Usage
from ownlight.protocol.slots import estimate_tokens, text_slots
from ownlight.routing.budgets import BudgetBook
from ownlight.routing.decision import RouteDecision, Target
from ownlight.routing.fallback import Executes, FallbackBackend
from ownlight.routing.health import HealthTracker
from ownlight.routing.rate_limits import RateLimits
from ownlight.routing.router import Router, RouteRequest
from ownlight.stages.base import Observer, Stage
from ownlight.stages.context import GatewayRequest, GatewayResponse, RequestContext

__all__ = ["GatewayRequest", "GatewayResponse", "Pipeline", "RequestContext"]

log = logging.getLogger("ownlight.pipeline")


class Pipeline:
    def __init__(self, keys: KeyStore, router: Router, budgets: BudgetBook,
                 privacy: PrivacyShield | None, ledger: Ledger,
                 health: HealthTracker | None = None,
                 knowledge: KnowledgeService | None = None,
                 deadline: float = UpstreamSettings().deadline,
                 metrics: Metrics | None = None,
                 guard: InjectionGuard | None = None,
                 limits: RateLimits | None = None):
        self.keys = keys
        self.limits = limits
        self.guard = guard
        self.metrics = metrics or Metrics()
        self.deadline = deadline
        self.knowledge = knowledge
        self.router = router
        self.budgets = budgets
        self.privacy = privacy
        self.ledger = ledger
        self.health = health or HealthTracker()
        self.observer = Observer()  # tracing hands in one that notes each step's times
        self._fallback_shield: PrivacyShield | None = None
        guarding = GuardStage(guard)
        #: the stages around the call, in the diagram's order; after-hooks run reversed
        self.stages: list[Stage] = [
            GroundingStage(knowledge, router, screen=guarding.screen),  # retrieve .. cite
            guarding,  # guard input
            ClassifyStage(privacy),  # classify
        ]

    async def handle(self, request: GatewayRequest, *, principal: Principal) -> GatewayResponse:
        """Run one request for a principal whose key the entry point has checked."""
        ctx = RequestContext(request, principal=principal)
        ran: list[Stage] = []
        observer = self.observer
        observer.begin(request.request_id)
        timer = observer.step
        try:
            with timer("validate"):
                self.validate(ctx)
                self.precheck(ctx)
            if self.limits is not None:
                with timer("limits"):
                    self.admit(ctx)
            result: BackendResult | None = None
            for stage in self.stages:
                ran.append(stage)
                with timer(stage.name):
                    result = await stage.before(ctx)
                if result is not None:  # the stage answered: no backend is asked
                    break
            if result is None:
                with timer("routing"):
                    ctx.route = await self.route(ctx)
                with timer("backend"):
                    result = await self.call_backend(ctx)
        except OwnlightError as exc:
            self.commit(self.charge_and_describe(ctx, None, exc), failing=True)
            raise
        except asyncio.CancelledError:
            observer.drop(request.request_id)
            self.ledger.append(
                self.charge_and_describe(ctx, None, ClientDisconnected("client gone")))
            raise
        except Exception:
            observer.drop(request.request_id)
            self.ledger.append(self.charge_and_describe(ctx, None, OwnlightError("internal error")))
            raise
        return self.finish(ctx, ran[::-1], result)

    # -- before the call --------------------------------------------------------------

    def validate(self, ctx: RequestContext) -> None:
        """Wire JSON -> the canonical request (a 400 naming the field when it is wrong)."""
        ctx.request = ctx.incoming.parse(ctx.operation, ctx.incoming.body)
        if ctx.principal is not None:
            ctx.request.principal = ctx.principal.name

    def precheck(self, ctx: RequestContext) -> None:
        """Refuse at once a prompt no target could read, before scanning or tokenizing it
        (a 5 MB prompt for a 4,096-token model would otherwise cost seconds to refuse)."""
        assert ctx.request is not None
        targets, _ = self.router.candidates(ctx.alias, ctx.operation)
        limits = [t.backend.max_prompt_chars for t in targets]
        if any(limit is None for limit in limits):
            return
        size = sum(len(slot.text) for slot in text_slots(ctx.request))
        if size > max(limit for limit in limits if limit is not None):
            raise ContextLengthExceeded(
                f"This prompt ({size} characters) is longer than model '{ctx.alias}' can "
                "read. Please reduce the prompt.", param="messages")

    def admit(self, ctx: RequestContext) -> None:
        """The key's rate limits: a 429 naming the limit, or the request holds its most
        tokens until its real count is known (settled in ``charge_and_describe``)."""
        assert self.limits is not None and ctx.request is not None and ctx.principal is not None
        size = sum(len(slot.text) for slot in text_slots(ctx.request))
        ctx.admission = self.limits.admit(ctx.principal, size, ctx.request.sampling.max_tokens)

    async def route(self, ctx: RequestContext) -> RouteDecision:
        """Alias + policy + complexity + budgets -> ordered targets, with the reason."""
        assert ctx.principal is not None and ctx.request is not None
        try:
            deciding = (self.privacy.levels.deciding_types(ctx.findings.counts, ctx.sensitivity)
                        if self.privacy is not None and ctx.findings is not None else ())
            return await self.router.decide(RouteRequest(
                ctx.principal, ctx.alias, ctx.operation, ctx.request,
                ctx.incoming.headers, ctx.sensitivity, ctx.slots, deciding,
            ))
        except PermissionDenied as exc:
            if ctx.privacy_failure:  # say why the request counts as unscanned
                exc.message += f" (The privacy check failed: {ctx.privacy_failure}.)"
                exc.args = (exc.message,)
            raise

    # -- the call ---------------------------------------------------------------------

    async def call_backend(self, ctx: RequestContext) -> BackendResult:
        """The route's targets as one fallback backend, those outside the domain wrapped
        in egress protection; all of it (retries and fallbacks included) within the
        alias's deadline."""
        assert ctx.route is not None and ctx.request is not None
        backend = FallbackBackend(ctx.route, self.health, lambda t: self._backend_for(ctx, t))
        deadline = self.deadline_for(ctx.alias)
        try:
            async with asyncio.timeout(deadline):
                result = await backend.execute(ctx.request)
        except TimeoutError:
            raise UpstreamTimeout(
                f"No answer within the deadline of {deadline:g} s (upstream.deadline); "
                "retries and fallbacks included.", code="deadline_exceeded") from None
        served = ctx.route.served_by
        assert served is not None
        ctx.served_label = backend.served.label
        ctx.replica = backend.served.replica
        ctx.backend_headers = backend.served.headers
        ctx.dropped = carry.dropped(ctx.request, served.backend.wire_protocol)
        return result

    def _backend_for(self, ctx: RequestContext, target: Target) -> Executes:
        if target.inside_domain:
            return target.backend
        return EgressBackend(target.backend, ctx, self.privacy, self.ledger, self.metrics,
                             self.observer.step)

    def deadline_for(self, alias: str) -> float:
        """The alias's own ``deadline``, else ``upstream.deadline``."""
        backend = self.router.backends.get(alias)
        own = backend.entry.settings.deadline if backend is not None else None
        return own if own is not None else self.deadline

    # -- after the call: one path for whole answers and streams -----------------------

    def finish(self, ctx: RequestContext, after: list[Stage],
               result: BackendResult) -> GatewayResponse:
        """The after-hooks (reversed), then the record; a stream's record at its end."""
        if isinstance(result, Response):
            for stage in after:
                result = stage.after(ctx, result)
            if self.ledger.bodies != "none":
                ctx.answer = [answer_text(result)]
            self.commit(self.charge_and_describe(ctx, result.usage))
            return GatewayResponse(ctx.headers(), body=result)
        return GatewayResponse(ctx.headers(), stream=self._finish_stream(ctx, after, result))

    async def _finish_stream(self, ctx: RequestContext, after: list[Stage],
                             chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        """The after-hooks chunk by chunk; usage hidden unless it was asked for."""
        usage: Usage | None = None
        error: OwnlightError | None = None
        keep = self.ledger.bodies != "none"
        first = True
        sent_chars = 0
        try:
            async for chunk in chunks:
                if first and chunk.choices:
                    first = False
                    self.metrics.observe_first_token(ctx.incoming.endpoint or "chat",
                                                     time.perf_counter() - ctx.started)
                if chunk.usage is not None:
                    usage = chunk.usage
                    if not chunk.choices:
                        if ctx.include_usage:
                            yield chunk
                        continue
                    if not ctx.include_usage:
                        chunk.usage = None
                text = chunk_text(chunk)
                sent_chars += len(text)
                if keep:
                    ctx.answer += [text]
                for stage in after:
                    chunk = stage.on_chunk(ctx, chunk)
                yield chunk
        except OwnlightError as exc:
            error = exc
            raise
        except (GeneratorExit, asyncio.CancelledError):
            # The client left mid-stream: recorded as such, and charged for what it got
            # (the upstream's usage never came: estimated, about four characters a token).
            error = ClientDisconnected("client disconnected mid-stream")
            if usage is None and ctx.request is not None:
                usage = Usage(estimate_tokens(ctx.request, ctx.slots), (sent_chars + 3) // 4)
            raise
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            self.commit(self.charge_and_describe(ctx, usage, error), failing=error is not None)

    def commit(self, record: RequestRecord, failing: bool = False) -> None:
        """The request's record, durable before its answer is sent (fail closed)."""
        with self.observer.committing(record):
            try:
                self.ledger.put(record)
            except AuditUnavailableError:
                if failing:  # already answering with an error: that error stands
                    log.error("request %s failed and could not be recorded",
                              record.request_id)
                    return
                raise AuditUnavailable(
                    "The audit ledger could not record this request.") from None

    def charge_and_describe(self, ctx: RequestContext, usage: Usage | None,
               error: OwnlightError | None = None) -> RequestRecord:
        """Charge budgets, settle rate limits and describe the request (``audit/recorder.py``)."""
        record = request_record(ctx, usage, error, self.ledger, self.budgets, self.metrics)
        if ctx.admission is not None and self.limits is not None:
            used = ctx.usage or {}
            try:
                self.limits.settle(ctx.admission, int(used.get("total_tokens") or 0))
            except CountersUnavailable:  # the reservation lapses with its minute
                log.warning("request %s: rate-limit tokens not settled (Redis unreachable)",
                            record.request_id)
        return record

    # -- not a request: POST /v1/privacy/scan -----------------------------------------

    def scan_texts(self, body: Any) -> Json:
        """``POST /v1/privacy/scan`` with this server's shield (``privacy/scan.py``)."""
        return scan_texts(self.privacy or self._default_shield(), body)

    def _default_shield(self) -> PrivacyShield:
        if self._fallback_shield is None:
            self._fallback_shield = PrivacyShield()
        return self._fallback_shield

