"""The hub: every configured upstream MCP server behind one place that knows who may see
and call what, and that runs each call through the shield, the guard and the ledger.

The gateway builds one ``ToolHub`` at start-up (``Runtime.mcp``); both the ``/mcp``
endpoint and the Responses/Chat ``mcp`` tool loop call it."""

from __future__ import annotations

from typing import Any

from ownlight.mcp.types import Tool, ToolResult
from ownlight.principal import Principal


class ToolHub:
    """Aggregated, per-caller, pinned, shielded and audited tools.

    Lifecycle: ``await hub.start()`` (starts stdio servers, connects HTTP ones, loads
    pins) and ``await hub.stop()``; the runtime does both.

    ``await hub.list_tools(principal)``: the tools this caller may call, qualified
    ``server__tool`` — only those the access rules allow, whose definition hash matches the
    approved pin and whose description passed the guard. Servers that are down contribute
    nothing (no error). Includes Ownlight's own ``ownlight__knowledge_search`` when the
    knowledge base is on.

    ``await hub.call_tool(principal, "server__tool", {...}, request_id="...")`` → ``ToolResult``:
    checks the caller may call it (else ``ToolNotFound``, recorded); outside the domain
    pseudonymizes every string in the arguments and refuses red-line values
    (``ToolRefused``, nothing sent); records the call in the ledger before it leaves
    (``AuditFailed`` if it cannot); calls with the server's ``timeout`` (``ToolTimeout``)
    and ``max_output_bytes`` (``ToolOutputTooLarge``); restores placeholders in the result;
    runs the untrusted-content guard on the result text (quote or drop per ``[guard]``);
    records the outcome and counts it in ``/metrics``. Every raised error is a
    ``ToolCallError`` subclass whose ``message`` is safe to show the caller.
    ``request_id`` ties the ledger records to the caller's request (the Responses id, or
    the MCP request's id).
    """

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def list_tools(self, principal: Principal) -> list[Tool]:
        raise NotImplementedError

    async def call_tool(self, principal: Principal, qualified_name: str,
                        arguments: dict[str, Any], *, request_id: str) -> ToolResult:
        raise NotImplementedError
