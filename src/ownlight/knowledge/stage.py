"""Grounding as a stage: retrieve readable sources before the call, cite them after.

With ``knowledge.require_sources`` and nothing readable found, the stage answers itself
(nothing is asked of a model), and the answer still takes the way back through ``after``.
"""

from __future__ import annotations

from collections.abc import Callable

from ownlight.backends.base import BackendResult, Operation
from ownlight.errors import InvalidRequest
from ownlight.knowledge.citations import (
    CitationStream,
    attach_citations,
    unsourced_answer,
    with_sources,
)
from ownlight.knowledge.service import KnowledgeService
from ownlight.knowledge.types import Hit
from ownlight.protocol.model import Chunk, Response
from ownlight.protocol.slots import last_user_text
from ownlight.routing.router import Router
from ownlight.stages.base import Stage
from ownlight.stages.context import RequestContext

#: per request, a filter over retrieved chunks (the guard's screen), or None
Screen = Callable[[RequestContext], Callable[[Hit], bool] | None]


class GroundingStage(Stage):
    name = "knowledge"

    def __init__(self, knowledge: KnowledgeService | None, router: Router,
                 screen: Screen | None = None):
        self.knowledge = knowledge
        self.router = router
        self.screen = screen

    async def before(self, ctx: RequestContext) -> BackendResult | None:
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
            return None
        if ctx.operation is not Operation.CHAT:
            raise InvalidRequest("knowledge works with chat completions only", param="knowledge")
        if self.knowledge is None:
            raise InvalidRequest("The knowledge base is turned off on this server "
                                 "(knowledge.enabled).", param="knowledge")
        query = self.knowledge.parse(raw, bound)
        ctx.request.knowledge = None
        question = last_user_text(ctx.request)
        if query is None or not question.strip():
            return None
        screen = self.screen(ctx) if self.screen is not None else None
        ctx.grounding = grounding = await self.knowledge.ground(
            ctx.principal, question, query, screen)
        with_sources(ctx.request, grounding.system)
        if not grounding.citations and self.knowledge.require_sources:
            # sources required, none readable: no model is asked
            return unsourced_answer(ctx.request, grounding.collections)
        return None

    def after(self, ctx: RequestContext, answer: Response) -> Response:
        """A grounded answer carries its numbered sources: ``citations`` and the footer."""
        if ctx.grounding is not None and self.knowledge is not None:
            attach_citations(answer, ctx.grounding.citations, self.knowledge.sources_footer)
        return answer

    def on_chunk(self, ctx: RequestContext, chunk: Chunk) -> Chunk:
        if ctx.grounding is None or self.knowledge is None:
            return chunk
        cite = ctx.state.get(self.name)
        if cite is None:
            cite = ctx.state[self.name] = CitationStream(ctx.grounding.citations,
                                                         self.knowledge.sources_footer)
        return cite.chunk(chunk)
