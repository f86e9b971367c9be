"""The hub's vocabulary: a tool as a caller sees it, a call's result, and its errors.

Kept free of the ``mcp`` SDK's types so the Responses/Chat tool loop and the ``/mcp``
endpoint can both build on it without caring how the upstream was reached."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Between a server's name and its tool's name in a qualified name: valid in MCP tool
#: names (``[A-Za-z0-9_.-]``) and in OpenAI function names (``^[a-zA-Z0-9_-]{1,64}$``).
SEPARATOR = "__"


def qualified(server: str, tool: str) -> str:
    """``server__tool``: the name a caller lists and calls."""
    return f"{server}{SEPARATOR}{tool}"


def split_qualified(name: str) -> tuple[str, str]:
    """``server__tool`` → ``("server", "tool")``; raises ``ToolNotFound`` if there is no prefix."""
    server, sep, tool = name.partition(SEPARATOR)
    if not sep or not server or not tool:
        raise ToolNotFound(name)
    return server, tool


@dataclass(frozen=True)
class Tool:
    """One tool a caller may list and call.

    ``name`` is qualified (``server__tool``); ``server``/``tool`` are its parts;
    ``input_schema`` is the JSON Schema the upstream declared (usable as an OpenAI
    function's ``parameters``); ``inside_domain`` says whether arguments leave the domain."""

    name: str
    server: str
    tool: str
    description: str
    input_schema: dict[str, Any]
    inside_domain: bool = True
    title: str | None = None
    annotations: dict[str, Any] | None = None


@dataclass
class ToolResult:
    """What a call answered, already restored for the caller and guarded.

    ``content`` is a list of MCP content blocks as plain dicts (``{"type": "text", "text": ...}``,
    images/resources passed through); ``text`` joins the text blocks (what a model should
    read as the tool's output); ``structured`` is the upstream's ``structuredContent`` if
    any (restored); ``is_error`` is the upstream's own ``isError`` (the call went through,
    the tool reported failure). ``guard_verdict`` is ``"clean"``, ``"quoted"`` or
    ``"dropped"``; ``audit_id`` is the ``request_id`` its ledger records carry;
    ``pseudonymized`` counts the values replaced by type (empty inside the domain)."""

    content: list[dict[str, Any]]
    text: str
    structured: dict[str, Any] | None = None
    is_error: bool = False
    guard_verdict: str = "clean"
    pseudonymized: dict[str, int] = field(default_factory=dict)
    audit_id: str | None = None
    latency_ms: float = 0.0


class ToolCallError(Exception):
    """A call that did not produce a result; nothing is returned to the caller but this
    message. ``code`` is stable and machine-readable; ``status`` is the outcome recorded in
    the ledger and in ``/metrics``. Every subclass is recorded before it is raised."""

    code = "tool_error"
    status = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ToolNotFound(ToolCallError):
    """Unknown, denied to this caller, or withheld (unapproved/changed/poisoned definition):
    the three are indistinguishable to the caller on purpose."""

    code = "tool_not_found"
    status = "denied"

    def __init__(self, name: str):
        super().__init__(f"No tool named {name!r} is available to this caller.")
        self.name = name


class ToolRefused(ToolCallError):
    """The shield refused the arguments (red-line data, or the privacy check failed):
    nothing was sent to the server."""

    code = "tool_refused"
    status = "refused"


class ToolInvalidArguments(ToolCallError):
    """The arguments are not a JSON object (or not what an Ownlight tool takes): nothing
    was sent."""

    code = "invalid_arguments"
    status = "refused"


class ToolTimeout(ToolCallError):
    """The server did not answer within its ``timeout``."""

    code = "tool_timeout"
    status = "timeout"


class ToolOutputTooLarge(ToolCallError):
    """The server's answer exceeded its ``max_output_bytes``; nothing of it is returned."""

    code = "tool_output_too_large"
    status = "too_large"


class ToolUnavailable(ToolCallError):
    """The server is down, restarting, or failed the call at the protocol level."""

    code = "tool_unavailable"
    status = "unavailable"


class GuardFailed(ToolCallError):
    """The injection guard could not read the result (its model failed): nothing of the
    result is passed on (fail closed), and the call is recorded as such."""

    code = "guard_unavailable"
    status = "guard_unavailable"


class AuditFailed(ToolCallError):
    """The ledger could not record the call before it left: nothing was sent (fail closed)."""

    code = "audit_unavailable"
    status = "audit_unavailable"


class AuthorizationRequired(ToolCallError):
    """The server needs the caller's own OAuth authorization, which Ownlight does not hold
    (yet, or any more): ``authorization_url`` is where the caller grants it. Nothing was sent."""

    code = "authorization_required"
    status = "unauthorized"

    def __init__(self, server: str, authorization_url: str):
        super().__init__(f"The MCP server {server} needs your authorization first: open "
                         f"{authorization_url} (with your Ownlight key or console session), "
                         "then call again.")
        self.authorization_url = authorization_url
