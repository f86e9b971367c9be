"""The injection guard applied to a request: its user turn, tool results and the
retrieved chunks it would read (the grounding stage asks ``screen`` for those)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ownlight.backends.base import BackendResult, Operation
from ownlight.errors import GuardUnavailable, InvalidRequest
from ownlight.guard.model import Verdict
from ownlight.guard.stage import GuardFacts, InjectionGuard
from ownlight.knowledge.types import Hit
from ownlight.protocol.model import TextPart, ToolResult
from ownlight.stages.base import Stage
from ownlight.stages.context import RequestContext

log = logging.getLogger(__name__)

# Scanning this much text inline would hold the event loop for more than a moment.
INLINE_SCAN_CHARS = 4000


class GuardStage(Stage):
    name = "guard"

    def __init__(self, guard: InjectionGuard | None):
        self.guard = guard

    def screen(self, ctx: RequestContext) -> Callable[[Hit], bool] | None:
        """Retrieved chunks that score as injections are left out of the sources."""
        guard = self.guard
        if guard is None:
            return None
        facts = ctx.guard = ctx.guard or GuardFacts()

        def keep(hit: Hit) -> bool:
            if guard.scan_chunk(hit.text, hit.injection_score).injection:
                facts.documents.append([hit.collection, hit.document_id])
                if guard.untrusted_action == "drop":
                    facts.chunks_withheld += 1
                    return False
                facts.chunks_flagged += 1
            return True

        return keep

    async def before(self, ctx: RequestContext) -> BackendResult | None:
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
            return None
        request, guard = ctx.request, self.guard
        facts = ctx.guard = ctx.guard or GuardFacts()
        results = [p for turn in request.turns for p in turn.parts if isinstance(p, ToolResult)]
        returned = [guard.returned_text(r) for r in results]
        user = next((t for t in reversed(request.turns) if t.role == "user"), None)
        typed = guard.typed_text(user) if user is not None else ""
        size = sum(map(len, returned)) + len(typed)
        def scan_all() -> list[Verdict]:
            return [*map(guard.scan_untrusted, returned), guard.scan(typed)]

        # e5's second look at a tool result takes tens of milliseconds: off the event loop
        slow = size > INLINE_SCAN_CHARS or (any(returned) and guard.reads_by_meaning())
        try:
            verdicts = await asyncio.to_thread(scan_all) if slow else scan_all()
        except Exception as exc:  # a safety check that fails: refuse, send nothing
            log.error("the injection guard failed: %s", exc)
            raise GuardUnavailable(
                "The injection guard could not read this request's tool results or user "
                "turn, so nothing was sent on. Try again; if it persists, the server's log "
                "says why.") from None
        for result, text, verdict in zip(results, returned, verdicts, strict=False):
            if text and verdict.injection:
                facts.tool_results_flagged += 1
                whole = "".join(q.text for q in result.parts if isinstance(q, TextPart))
                result.parts = [TextPart(guard.neutralise(whole))]
        verdict = verdicts[-1]
        facts.input_score = round(verdict.score, 4) if typed else None
        if not (typed and verdict.injection):
            return None
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
        return None
