"""Egress protection as a wrapper backend (pydantic-ai's ``WrapperModel`` is the shape):
around a target outside the domain it pseudonymizes the request, makes the egress record
durable in the ledger before the first byte leaves (if it cannot, nothing is sent), calls
the wrapped backend, and restores placeholders in the whole answer or in each chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ownlight.audit.ledger import AuditUnavailableError, Ledger
from ownlight.audit.metrics import Metrics
from ownlight.audit.records import EgressRecord
from ownlight.backends.base import Backend, BackendResult
from ownlight.errors import AuditUnavailable, PolicyRefused
from ownlight.privacy.stage import Egress, PrivacyShield
from ownlight.protocol.model import Chunk, Request, Response
from ownlight.protocol.slots import text_slots
from ownlight.stages.base import Timer, untimed
from ownlight.stages.context import RequestContext


class EgressBackend:
    """``wrapped``, seen from inside the domain: what it gets is protected and recorded,
    what it answers is restored. One per request and target (the vault is the request's)."""

    def __init__(self, wrapped: Backend, ctx: RequestContext, privacy: PrivacyShield | None,
                 ledger: Ledger, metrics: Metrics, timer: Timer = untimed):
        self.wrapped = wrapped
        self.ctx = ctx
        self.privacy = privacy
        self.ledger = ledger
        self.metrics = metrics
        self.timer = timer
        self.replica: str | None = None

    @property
    def wire_protocol(self) -> str | None:
        return self.wrapped.wire_protocol

    def label_for(self, result: BackendResult) -> str:
        return self.wrapped.label_for(result)

    def replica_for(self, result: BackendResult) -> str | None:
        return self.replica  # asked of the wrapped answer, before it was restored

    async def execute(self, request: Request) -> BackendResult:
        with self.timer("privacy.egress"):
            sent = self.protect(request)
        with self.timer("ledger.egress"):
            self.record(request, sent)
        result = await self.wrapped.execute(sent)
        self.replica = self.wrapped.replica_for(result)
        egress = self.ctx.egress
        if egress is None or not egress.vault.placeholders():  # nothing to put back
            return result
        if isinstance(result, Response):
            return egress.restore_response(result)
        return _restored(egress, result)

    def protect(self, request: Request) -> Request:
        """Outside the domain, sensitive values travel as placeholders (or are refused)."""
        ctx = self.ctx
        if self.privacy is None:
            return request
        if ctx.findings is None:
            raise PolicyRefused(
                f"The privacy check of this request failed: {ctx.privacy_failure or 'unknown'}"
                ". It may not leave the domain, and nothing was sent.",
                code="privacy_check_failed")
        if ctx.egress is None:
            ctx.egress = self.privacy.egress(json_text=request.wants_json)
        return self.privacy.pseudonymize(request, ctx.findings, ctx.egress)

    def record(self, request: Request, sent: Request) -> None:
        """What is about to leave, durable in the ledger before the first byte is sent;
        if it cannot be written, nothing is sent."""
        ctx = self.ctx
        unchanged = sent is request  # nothing pseudonymized: the payload is the prompt
        if unchanged:
            payload = "\n".join(slot.text for slot in ctx.slots)
        elif ctx.egress is not None and ctx.egress.replaced is not None:
            # the request's slots with the placeholders put in: the same text as the
            # pseudonymized copy's slots, without walking it again (tool schemas: ~60 µs)
            replaced = ctx.egress.replaced
            payload = "\n".join(replaced.get(slot.path, slot.text) for slot in ctx.slots)
        else:
            payload = "\n".join(slot.text for slot in text_slots(sent))
        principal = ctx.principal
        digest = self.ledger.mac(payload)
        if unchanged:
            ctx.prompt_mac = digest
        record = EgressRecord(
            request_id=ctx.incoming.request_id, target=self.wrapped.route_label,
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
        self.metrics.observe_egress(record.target, record.payload_bytes)


async def _restored(egress: Egress, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    """Placeholders in each chunk back to the real values (stream-safe: text that may be
    half a placeholder waits for the next chunk)."""
    try:
        async for chunk in chunks:
            yield egress.restore_chunk(chunk)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
