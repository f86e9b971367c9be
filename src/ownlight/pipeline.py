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
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from ownlight.audit.ledger import AuditUnavailableError, Ledger
from ownlight.audit.metrics import Metrics
from ownlight.audit.records import EgressRecord, RequestRecord
from ownlight.auth import KeyStore, Principal
from ownlight.backends.base import BackendResult, Json, Operation
from ownlight.errors import (
    AuditUnavailable,
    ClientDisconnected,
    ContextLengthExceeded,
    EndpointNotServed,
    InvalidRequest,
    OwnlightError,
    PermissionDenied,
    PolicyRefused,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from ownlight.guard.model import Verdict
from ownlight.guard.stage import GuardFacts, InjectionGuard
from ownlight.knowledge.citations import (
    CitationPrompt,
    CitationStream,
    attach_citations,
    unsourced_answer,
    with_sources,
)
from ownlight.knowledge.service import KnowledgeService
from ownlight.knowledge.types import Hit
from ownlight.privacy.levels import LEVELS
from ownlight.privacy.stage import Egress, Findings, PrivacyShield
from ownlight.protocol import carry
from ownlight.protocol.model import (
    Chunk,
    Request,
    Response,
    TextPart,
    ToolResult,
    Usage,
)
from ownlight.protocol.slots import Slot, estimate_tokens, last_user_text, text_slots
from ownlight.routing.budgets import BudgetBook
from ownlight.routing.decision import RouteDecision, Target
from ownlight.routing.health import HealthTracker
from ownlight.routing.router import UNSCANNED, Router, RouteRequest

log = logging.getLogger("ownlight.pipeline")

A = TypeVar("A", Response, Chunk)

# Scanning this much text inline would hold the event loop for more than a moment.
INLINE_SCAN_CHARS = 4000


def new_request_id() -> str:
    """``req_`` and 32 hex digits: the time in milliseconds, then 80 random bits.

    Time first, so ids arrive in nearly ascending order and the ledger's index on them
    grows at its right edge instead of splitting pages all over (a third of a record's
    insert cost with random ids).
    """
    return f"req_{time.time_ns() // 1_000_000:012x}{_random_bytes(10).hex()}"


class _RandomPool:
    """Random bytes from the OS, fetched 4 KiB at a time. ``os.urandom`` is a system call
    that lets go of the GIL; on the request path the event loop would then wait for the
    audit writer thread to give it back, once per request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pool = b""
        self.at = 0

    def __call__(self, n: int) -> bytes:
        with self.lock:
            if self.at + n > len(self.pool):
                self.pool, self.at = secrets.token_bytes(4096), 0
            self.at += n
            return self.pool[self.at - n:self.at]


_random_bytes = _RandomPool()


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
    prompt_mac: str | None = None  # the prompt's salted hash, when the egress record made it
    #: ``x-ownlight-*`` headers the serving in-process backend added to its answer
    backend_headers: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # client fields the backend did not get

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
        if self.sensitivity != "unknown":
            headers["x-ownlight-sensitivity"] = self.sensitivity
        if self.grounding is not None:  # how many sources the answer may cite; "none" warns
            headers["x-ownlight-grounding"] = str(len(self.grounding.citations) or "none")
        if self.dropped:
            headers[carry.HEADER] = ", ".join(self.dropped)
        if self.guard is not None and (self.guard.untrusted or self.guard.input_flagged):
            g = self.guard
            headers["x-ownlight-guard"] = (
                f"untrusted={g.tool_results_flagged + g.chunks_flagged + g.chunks_withheld}; "
                f"chunks_withheld={g.chunks_withheld}; "
                f"input={'flagged' if g.input_flagged else 'ok'}")
        return headers


class Pipeline:
    def __init__(self, keys: KeyStore, router: Router, budgets: BudgetBook,
                 privacy: PrivacyShield | None, ledger: Ledger,
                 health: HealthTracker | None = None,
                 knowledge: KnowledgeService | None = None,
                 deadline: float = 120.0, metrics: Metrics | None = None,
                 guard: InjectionGuard | None = None):
        self.keys = keys
        self.guard = guard
        self.metrics = metrics or Metrics()
        self.deadline = deadline
        self.knowledge = knowledge
        self.router = router
        self.budgets = budgets
        self.privacy = privacy
        self.ledger = ledger
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
            self.precheck(ctx)
            await self.retrieve(ctx)
            if self._unsourced(ctx):  # sources required, none readable: no model asked
                assert ctx.request is not None and ctx.grounding is not None
                result = unsourced_answer(ctx.request, ctx.grounding.collections)
            else:
                await self.guard_input(ctx)
                await self.classify(ctx)
                ctx.route = await self.route(ctx)
                result = await self.call_backend(ctx)
        except OwnlightError as exc:
            self.commit(self.record(ctx, None, exc), failing=True)
            raise
        except asyncio.CancelledError:
            self.ledger.append(self.record(ctx, None, ClientDisconnected("client gone")))
            raise
        except Exception:
            self.ledger.append(self.record(ctx, None, OwnlightError("internal error")))
            raise
        if isinstance(result, Response):
            result = self.cite(ctx, self.guard_output(ctx, self.restore(ctx, result)))
            if self.ledger.bodies != "none":
                ctx.answer = [_answer_text(result)]
            self.commit(self.record(ctx, result.usage))
            return GatewayResponse(ctx.headers(), body=result)
        return GatewayResponse(ctx.headers(), stream=self._finish_stream(ctx, result))

    def scan_texts(self, body: Any) -> Json:
        """``POST /v1/privacy/scan``: spans and level for one or many texts (the route has
        checked the caller's key)."""
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequest("input must be a string or a non-empty list of strings",
                                 param="input")
        shield = self.privacy or self._default_shield()
        found = [shield.scan(t) for t in texts]
        levels = [shield.level([spans]) for spans in found]
        return {
            "object": "list",
            "data": [{"index": i, "level": level,
                      "spans": [s.to_dict() | {"recognizer": s.recognizer} for s in spans]}
                     for i, (spans, level) in enumerate(zip(found, levels, strict=True))],
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

    async def retrieve(self, ctx: RequestContext) -> None:
        """Knowledge chunks the principal may read, as numbered sources in a system message.

        Collections come from the body (``"knowledge": ["handbook"]``) and from a routed
        alias bound to them. The ACL is applied inside the search query, so the prompt
        (and the classify stage after this one) only ever sees readable text.
        """
        assert ctx.request is not None and ctx.principal is not None
        raw = ctx.request.knowledge
        routed = self.router.routed.get(ctx.alias)
        bound = routed.knowledge if routed is not None else ()
        if raw is None and not bound:
            return
        if ctx.operation is not Operation.CHAT:
            raise InvalidRequest("knowledge works with chat completions only", param="knowledge")
        if self.knowledge is None:
            raise InvalidRequest("The knowledge base is turned off on this server "
                                 "(knowledge.enabled).", param="knowledge")
        query = self.knowledge.parse(raw, bound)
        ctx.request.knowledge = None
        question = last_user_text(ctx.request)
        if query is None or not question.strip():
            return
        screen = self._screen_chunks(ctx) if self.guard is not None else None
        ctx.grounding = await self.knowledge.ground(ctx.principal, question, query, screen)
        with_sources(ctx.request, ctx.grounding.system)

    def _unsourced(self, ctx: RequestContext) -> bool:
        return (ctx.grounding is not None and not ctx.grounding.citations
                and self.knowledge is not None and self.knowledge.require_sources)

    def _screen_chunks(self, ctx: RequestContext) -> Callable[[Hit], bool]:
        """Retrieved chunks that score as injections are left out of the sources."""
        guard = self.guard
        assert guard is not None
        facts = ctx.guard = ctx.guard or GuardFacts()

        def keep(hit: Hit) -> bool:
            if guard.scan_untrusted(hit.text).injection:
                facts.documents.append([hit.collection, hit.document_id])
                if guard.untrusted_action == "drop":
                    facts.chunks_withheld += 1
                    return False
                facts.chunks_flagged += 1
            return True

        return keep

    async def guard_input(self, ctx: RequestContext) -> None:
        """Prompt-injection scan: tool results (untrusted) and the newest user turn.

        What is scored is what the user typed and what the tools returned, never the
        client's own instructions: system and developer turns are not read, nor the
        context blocks an agent inserts into a user turn or a tool result (Claude Code's
        ``<system-reminder>``, the Codex CLI's ``<environment_context>`` and its header on
        command output). Untrusted content that scores as an injection is withheld or
        quoted inert, whole; the user turn is flagged, blocked or isolated as
        ``guard.input_action`` says.
        """
        if self.guard is None or ctx.request is None or ctx.operation is not Operation.CHAT:
            return
        request, guard = ctx.request, self.guard
        facts = ctx.guard = ctx.guard or GuardFacts()
        results = [p for turn in request.turns for p in turn.parts if isinstance(p, ToolResult)]
        returned = [guard.returned_text(r) for r in results]
        user = next((t for t in reversed(request.turns) if t.role == "user"), None)
        typed = guard.typed_text(user) if user is not None else ""
        size = sum(map(len, returned)) + len(typed)
        def scan_all() -> list[Verdict]:
            return [*map(guard.scan_untrusted, returned), guard.scan(typed)]

        verdicts = (await asyncio.to_thread(scan_all) if size > INLINE_SCAN_CHARS
                    else scan_all())
        for result, text, verdict in zip(results, returned, verdicts, strict=False):
            if text and verdict.injection:
                facts.tool_results_flagged += 1
                whole = "".join(q.text for q in result.parts if isinstance(q, TextPart))
                result.parts = [TextPart(guard.neutralise(whole))]
        verdict = verdicts[-1]
        facts.input_score = round(verdict.score, 4) if typed else None
        if not (typed and verdict.injection):
            return
        facts.input_flagged = True
        facts.action = guard.action_for(ctx.principal)
        if facts.action == "block":
            raise InvalidRequest(
                "This request looks like a prompt injection (an attempt to override the "
                "assistant's instructions), and this key's policy blocks those.",
                code="injection_blocked")
        if facts.action == "isolate" and user is not None:
            user.parts = [TextPart(guard.isolate(user.text()))] + [
                p for p in user.parts if not isinstance(p, TextPart)]

    async def classify(self, ctx: RequestContext) -> None:
        """Sensitive spans in every slot of the request -> its sensitivity level.

        A detector that fails or overruns ``privacy.scan_timeout`` marks the request
        unscanned: it may still be served inside the domain, but nothing of it may leave
        (fail closed). Short requests are scanned inline (a thread hop costs more than the
        scan) and judged against the budget afterwards; long ones run in a thread that the
        request stops waiting for at the deadline.
        """
        assert ctx.request is not None
        ctx.slots = text_slots(ctx.request)
        if self.privacy is None:
            return
        privacy, slots = self.privacy, ctx.slots
        started = time.perf_counter()
        try:
            if sum(len(s.text) for s in slots) > INLINE_SCAN_CHARS:
                ctx.findings = await asyncio.wait_for(
                    asyncio.to_thread(privacy.classify_slots, slots), privacy.scan_timeout)
            else:
                ctx.findings = privacy.classify_slots(slots)
            if time.perf_counter() - started > privacy.scan_timeout:
                raise TimeoutError
        except TimeoutError:
            self._scan_failed(ctx, f"it took longer than {privacy.scan_timeout:g} s "
                                   "(privacy.scan_timeout)")
            return
        except Exception as exc:
            log.exception("privacy scan failed for %s", ctx.incoming.request_id)
            self._scan_failed(ctx, f"a detector failed ({type(exc).__name__})")
            return
        ctx.sensitivity = ctx.findings.level

    @staticmethod
    def _scan_failed(ctx: RequestContext, why: str) -> None:
        log.warning("privacy scan of %s failed: %s", ctx.incoming.request_id, why)
        ctx.findings, ctx.sensitivity, ctx.privacy_failure = None, UNSCANNED, why

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

    def protect_egress(self, ctx: RequestContext, target: Target) -> Request:
        """Outside the domain, sensitive values travel as placeholders (or are refused)."""
        assert ctx.request is not None
        if target.inside_domain or self.privacy is None:
            return ctx.request
        if ctx.findings is None:
            raise PolicyRefused(
                f"The privacy check of this request failed: {ctx.privacy_failure or 'unknown'}"
                ". It may not leave the domain, and nothing was sent.",
                code="privacy_check_failed")
        if ctx.egress is None:
            ctx.egress = self.privacy.egress(json_text=ctx.request.wants_json)
        return self.privacy.pseudonymize(ctx.request, ctx.findings, ctx.egress)

    async def call_backend(self, ctx: RequestContext) -> BackendResult:
        """Try each target in order (with retries and circuit breakers); fail over on trouble.

        Only availability errors fail over; a stream fails over only before its first
        chunk, which ``_attempt`` waits for, so nothing has reached the client yet.
        """
        assert ctx.route is not None
        deadline = self.deadline_for(ctx.alias)
        try:
            async with asyncio.timeout(deadline):
                return await self._call_targets(ctx, ctx.route)
        except TimeoutError:
            raise UpstreamTimeout(
                f"No answer within the deadline of {deadline:g} s (upstream.deadline); "
                "retries and fallbacks included.", code="deadline_exceeded") from None

    def deadline_for(self, alias: str) -> float:
        """The alias's own ``deadline``, else ``upstream.deadline``."""
        backend = self.router.backends.get(alias)
        own = backend.entry.extra.get("deadline") if backend is not None else None
        return float(own) if own is not None else self.deadline

    async def _call_targets(self, ctx: RequestContext, route: RouteDecision) -> BackendResult:
        last_error: OwnlightError | None = None
        for target in route.targets:
            try:
                result = await self.health.call(
                    target.alias, target.health, partial(self._attempt, ctx, target)
                )
            except (UpstreamError, RateLimited, EndpointNotServed) as exc:
                last_error = exc
                route.failures.append(f"{target.alias} {exc.code}")
                continue
            route.served_by = target
            return result
        assert last_error is not None
        raise last_error

    async def _attempt(self, ctx: RequestContext, target: Target) -> BackendResult:
        request = self.protect_egress(ctx, target)
        if not target.inside_domain:
            self.record_egress(ctx, target, request)
        result = await target.backend.execute(request)
        ctx.dropped = carry.dropped(request, target.backend.wire_protocol)
        label = target.backend.label_for(result)
        own = ctx.backend_headers if target.backend.wire_protocol is None else {}
        if isinstance(result, Response):
            own.update(_backend_headers(result.extra))
        else:
            result = await _started(result, own)
        ctx.served_label = label
        return result

    def restore(self, ctx: RequestContext, answer: A) -> A:
        """Placeholders in the answer back to the real values, on our side only."""
        if ctx.egress is None or not self._served_outside(ctx):
            return answer
        if isinstance(answer, Chunk):
            return ctx.egress.restore_chunk(answer)  # type: ignore[return-value]
        return ctx.egress.restore_response(answer)  # type: ignore[arg-type,return-value]

    def guard_output(self, ctx: RequestContext, answer: A) -> A:
        """Leak checks on the answer. Pass-through: the guard issue fills it."""
        return answer

    def cite(self, ctx: RequestContext, response: Response) -> Response:
        """A grounded answer carries its numbered sources: ``citations`` and the footer."""
        if ctx.grounding is not None and self.knowledge is not None:
            attach_citations(response, ctx.grounding.citations, self.knowledge.sources_footer)
        return response

    def record_egress(self, ctx: RequestContext, target: Target, request: Request) -> None:
        """What is about to leave, durable in the ledger before the first byte is sent;
        if it cannot be written, nothing is sent."""
        unchanged = request is ctx.request  # nothing pseudonymized: the payload is the prompt
        if unchanged:
            payload = "\n".join(slot.text for slot in ctx.slots)
        elif ctx.egress is not None and ctx.egress.replaced is not None:
            # the request's slots with the placeholders put in: the same text as the
            # pseudonymized copy's slots, without walking it again (tool schemas: ~60 µs)
            replaced = ctx.egress.replaced
            payload = "\n".join(replaced.get(slot.path, slot.text) for slot in ctx.slots)
        else:
            payload = "\n".join(slot.text for slot in text_slots(request))
        principal = ctx.principal
        digest = self.ledger.mac(payload)
        if unchanged:
            ctx.prompt_mac = digest
        record = EgressRecord(
            request_id=ctx.incoming.request_id, target=target.label,
            principal=principal.name if principal else None,
            tenant=principal.tenant if principal else None,
            pseudonymized=ctx.egress.vault.counts() if ctx.egress else {},
            payload_sha256=digest,
            payload_bytes=len(payload) if payload.isascii() else len(payload.encode()))
        try:
            self.ledger.put(record)
        except AuditUnavailableError:
            raise AuditUnavailable("The audit ledger could not record this request, so "
                                   "nothing was sent outside the domain.") from None
        self.metrics.observe_egress(target.label, record.payload_bytes)

    def commit(self, record: RequestRecord, failing: bool = False) -> None:
        """The request's record, durable before its answer is sent (fail closed)."""
        try:
            self.ledger.put(record)
        except AuditUnavailableError:
            if failing:  # already answering with an error: that error stands
                log.error("request %s failed and could not be recorded", record.request_id)
                return
            raise AuditUnavailable("The audit ledger could not record this request.") from None

    def record(self, ctx: RequestContext, usage: Usage | None,
               error: OwnlightError | None = None) -> RequestRecord:
        """Charge budgets and describe the request: route, reason, types found (no values)."""
        ctx.usage = _usage_dict(usage)
        usage_json = ctx.usage
        served = ctx.route.served_by if ctx.route else None
        cost = 0.0
        if served is not None and not served.inside_domain and ctx.principal is not None:
            cost = served.price.cost(usage_json)
            self.budgets.charge(ctx.principal, cost)
        principal = ctx.principal
        seconds = time.perf_counter() - ctx.started
        record = RequestRecord(
            request_id=ctx.incoming.request_id,
            operation=ctx.operation.value,
            endpoint=ctx.incoming.endpoint or ctx.operation.value,
            groups=list(principal.groups) if principal else [],
            status=error.status if error else 200,
            error_code=error.code if error else None,
            principal=principal.name if principal else None,
            tenant=principal.tenant if principal else None,
            model=ctx.alias or None,
            route=(ctx.served_label or served.label) if served else None,
            reason=ctx.route.explain() if ctx.route else None,
            inside_domain=served.inside_domain if served else None,
            sensitivity=ctx.sensitivity,
            found=ctx.findings.counts if ctx.findings else {},
            knowledge=_knowledge_facts(ctx.grounding),
            injection=ctx.guard.to_dict() if ctx.guard is not None else None,
            dropped=ctx.dropped or None,
            pseudonymized=ctx.egress.vault.counts() if ctx.egress else {},
            usage=usage_json,
            cost_usd=cost,
            latency_ms=round(seconds * 1000, 3),
            prompt=self._sealed_prompt(ctx),
            answer=self.ledger.seal("".join(ctx.answer)),
        )
        self.metrics.observe(record, seconds)
        return record

    def _sealed_prompt(self, ctx: RequestContext) -> Any:
        if ctx.prompt_mac is not None and self.ledger.bodies == "hashed":
            return self.ledger.hashed(ctx.prompt_mac)  # the egress record hashed this text
        return self.ledger.seal("\n".join(s.text for s in ctx.slots))

    # -- streams ----------------------------------------------------------------------

    def _served_outside(self, ctx: RequestContext) -> bool:
        served = ctx.route.served_by if ctx.route else None
        return served is not None and not served.inside_domain

    async def _finish_stream(
        self, ctx: RequestContext, chunks: AsyncIterator[Chunk]
    ) -> AsyncIterator[Chunk]:
        """Run the after-call stages chunk by chunk; hide usage unless it was asked for."""
        usage: Usage | None = None
        error: OwnlightError | None = None
        cite = (CitationStream(ctx.grounding.citations, self.knowledge.sources_footer)
                if ctx.grounding is not None and self.knowledge is not None else None)
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
                chunk = self.guard_output(ctx, self.restore(ctx, chunk))
                text = _chunk_text(chunk)
                sent_chars += len(text)
                if keep:
                    ctx.answer += [text]
                yield cite.chunk(chunk) if cite is not None else chunk
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
            self.commit(self.record(ctx, usage, error), failing=error is not None)


def _answer_text(response: Response) -> str:
    parts = []
    for choice in response.choices:
        parts.append(choice.text or "")
        parts += [f"{c.name}({c.arguments})" for c in choice.tool_calls]
    return "\n".join(p for p in parts if p)


def _chunk_text(chunk: Chunk) -> str:
    return "".join((d.text or "") + "".join(t.arguments for t in d.tool_calls)
                   for d in chunk.choices)


def _usage_dict(usage: Usage | None) -> Json | None:
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def _knowledge_facts(grounding: CitationPrompt | None) -> Json | None:
    """What the request log keeps of a grounded request: which documents were sources."""
    if grounding is None:
        return None
    return {"documents": [(c["collection"], c["document_id"]) for c in grounding.citations]}


def _backend_headers(extra: Json) -> dict[str, str]:
    """The ``x-ownlight-*`` headers an in-process backend put in an answer's ``extra``,
    taken out of it (``x-ownlight-max-tokens``: the answer's budget was lowered)."""
    return {k: str(extra.pop(k)) for k in [k for k in extra if k.startswith("x-ownlight-")]}


async def _started(chunks: AsyncIterator[Chunk],
                   headers: dict[str, str]) -> AsyncIterator[Chunk]:
    """Wait for a stream's first chunk, so early failures raise before any byte is sent;
    take the backend's headers from it."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        return _empty()
    headers.update(_backend_headers(first.extra))
    return _prepend(first, chunks)


async def _empty() -> AsyncIterator[Chunk]:
    return
    yield


async def _prepend(first: Chunk, rest: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
