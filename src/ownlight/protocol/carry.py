"""What of a client's request reaches a backend, and what is left behind.

A field Ownlight does not model (``Request.extra``, the ``extra`` of blocks and tools,
hosted tools, protocol betas) travels only to an upstream that speaks the protocol it came
in; every other backend goes without it. Nothing is refused for it: the client is told
what was left out in ``x-ownlight-dropped``, and the ledger keeps the same list.
"""

from __future__ import annotations

import re

from ownlight.protocol.model import Request, TextPart, ToolCall, ToolResult

#: The header that names what a backend did not receive.
HEADER = "x-ownlight-dropped"
#: The names come from the client (field names, tool types): in a header they keep only
#: characters that cannot break it or its encoding, and the list is cut short.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:=\[\]-]")
MAX_NAME, MAX_NAMES = 64, 40


def dropped(request: Request, wire_protocol: str | None) -> list[str]:
    """Names of the client's fields this backend does not receive, sorted."""
    names = set(request.dropped)
    if request.protocol == wire_protocol:
        return _safe(names)
    names.update(request.extra)
    names.update(f"tools[type={t.get('type')}]" for t in request.hosted_tools)
    names.update(f"tools[].{key}" for t in request.tools for key in t.extra or ())
    for turn in request.turns:
        names.update(f"messages[].{key}" for key in turn.extra)
        for part in turn.parts:
            if isinstance(part, TextPart | ToolCall | ToolResult) and part.extra:
                names.update(f"content[].{key}" for key in part.extra)
    if request.betas:
        names.add("anthropic-beta")
    return _safe(names)


def _safe(names: set[str]) -> list[str]:
    clean = sorted({_UNSAFE.sub("?", name)[:MAX_NAME] for name in names})
    return clean if len(clean) <= MAX_NAMES else [*clean[:MAX_NAMES], "..."]
