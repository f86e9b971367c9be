"""A request's record for the ledger: what was asked, how it was routed and served,
what was found and replaced (types and counts, never values), usage and cost.

Building the record charges the principal's budget for a target outside the domain, and
settles the money the route reserved in the shared counters (failed requests too: their
reservation is released).
"""

from __future__ import annotations

import time
from typing import Any

from ownlight.audit.ledger import Ledger
from ownlight.audit.metrics import Metrics
from ownlight.audit.records import RequestRecord
from ownlight.errors import OwnlightError
from ownlight.knowledge.citations import CitationPrompt
from ownlight.protocol.model import Chunk, Json, Response, Usage
from ownlight.routing.budgets import BudgetBook
from ownlight.stages.context import RequestContext


def request_record(ctx: RequestContext, usage: Usage | None, error: OwnlightError | None,
                   ledger: Ledger, budgets: BudgetBook, metrics: Metrics) -> RequestRecord:
    """Charge budgets and describe the request: route, reason, types found (no values)."""
    ctx.usage = _usage_dict(usage)
    usage_json = ctx.usage
    served = ctx.route.served_by if ctx.route else None
    cost = 0.0
    if served is not None and not served.inside_domain and ctx.principal is not None:
        cost = served.price.cost(usage_json)
    held = ctx.route.reservation if ctx.route is not None else None
    if ctx.principal is not None and (cost > 0 or held is not None):
        budgets.charge(ctx.principal, cost, held)  # settles what was reserved, if anything
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
        replica=ctx.replica,
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
        prompt=_sealed_prompt(ctx, ledger),
        answer=ledger.seal("".join(ctx.answer)),
    )
    metrics.observe(record, seconds)
    return record


def answer_text(response: Response) -> str:
    """A whole answer's text and tool calls, as the record keeps them."""
    parts = []
    for choice in response.choices:
        parts.append(choice.text or "")
        parts += [f"{c.name}({c.arguments})" for c in choice.tool_calls]
    return "\n".join(p for p in parts if p)


def chunk_text(chunk: Chunk) -> str:
    """One chunk's text and tool-call arguments, as the record keeps them."""
    return "".join((d.text or "") + "".join(t.arguments for t in d.tool_calls)
                   for d in chunk.choices)


def _sealed_prompt(ctx: RequestContext, ledger: Ledger) -> Any:
    if ctx.prompt_mac is not None and ledger.bodies == "hashed":
        return ledger.hashed(ctx.prompt_mac)  # the egress record hashed this text
    return ledger.seal("\n".join(s.text for s in ctx.slots))


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
