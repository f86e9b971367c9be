"""The Responses API's ``mcp`` tool, run by Ownlight itself for any backend.

A request whose ``tools`` name a configured MCP server (``{"type": "mcp", "server_label":
NAME}``) never reaches a backend as a hosted tool: the server's tools this caller may use
are offered to the model as function tools named ``NAME__tool``; when the model calls
one, Ownlight calls it through the hub as the caller (access rules, pins, shield, guard,
ledger), hands the result back and asks the model again, up to ``[mcp] max_tool_rounds``
times. Each round goes through the whole pipeline like any request. The answer carries
OpenAI's documented items — ``mcp_list_tools``, ``mcp_call``, ``mcp_approval_request`` —
before the final message, and the same as stream events when ``stream`` is true.

A client-given ``server_url`` is refused: Ownlight reaches only the servers its admin
configured, so a request cannot send tool traffic somewhere nobody approved.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ownlight.audit.ledger import AuditUnavailableError
from ownlight.audit.records import RequestRecord, new_request_id
from ownlight.errors import InvalidRequest, OwnlightError, UpstreamError
from ownlight.mcp.hub import ToolHub
from ownlight.mcp.types import Tool, ToolCallError, ToolResult
from ownlight.pipeline import GatewayRequest
from ownlight.principal import Principal
from ownlight.protocol import responses as wire
from ownlight.protocol.model import Json, Operation
from ownlight.runtime import Runtime

from .frontend import Exchange

#: fields of an ``mcp`` tool Ownlight reads; anything else is refused, not ignored
KNOWN_FIELDS = {"type", "server_label", "allowed_tools", "require_approval",
                "server_description", "server_url", "headers", "authorization",
                "connector_id"}
log = logging.getLogger("ownlight.api")
DECLINED = "The user declined this tool call; it was not made."


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def has_mcp_tools(body: Any) -> bool:
    tools = body.get("tools") if isinstance(body, dict) else None
    return isinstance(tools, list) and any(
        isinstance(t, dict) and t.get("type") == "mcp" for t in tools)


@dataclass
class McpServerUse:
    """One ``mcp`` tool of the request: a configured server, narrowed and gated."""

    label: str
    allowed: set[str] | None  # tool names (unqualified), None for all
    always: set[str] | None  # tools that need approval; None means every tool
    never: set[str] = field(default_factory=set)  # tools that never need approval
    tools: dict[str, Tool] = field(default_factory=dict)  # qualified name -> tool

    def needs_approval(self, tool: str) -> bool:
        if tool in self.never:
            return False
        return self.always is None or tool in self.always


def _names(value: Any, where: str) -> set[str]:
    """``["a", "b"]`` or ``{"tool_names": ["a", "b"]}`` (the two forms OpenAI accepts)."""
    if isinstance(value, dict):
        value = value.get("tool_names", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{where} must be a list of tool names", param=where)
    return set(value)


def parse_use(tool: Json, where: str, hub: ToolHub | None) -> McpServerUse:
    """Check one ``mcp`` tool; fail closed on anything Ownlight would not honour."""
    unknown = set(tool) - KNOWN_FIELDS
    if unknown:
        raise InvalidRequest(f"{where}: unknown field {sorted(unknown)[0]!r}",
                             param=f"{where}.{sorted(unknown)[0]}")
    for refused in ("server_url", "connector_id"):
        if tool.get(refused) is not None:
            raise InvalidRequest(
                f"{where}.{refused}: Ownlight reaches only MCP servers its admin configured "
                "([mcp.servers.NAME]), so tool traffic never goes somewhere nobody approved; "
                "name one with server_label", param=f"{where}.{refused}")
    for refused in ("headers", "authorization"):
        if tool.get(refused) is not None:
            raise InvalidRequest(
                f"{where}.{refused}: credentials for an MCP server are kept by Ownlight's "
                "configuration, never passed through from a request", param=f"{where}.{refused}")
    label = tool.get("server_label")
    known = set(hub.upstreams) | ({"ownlight"} if hub and hub.builtins else set()) \
        if hub is not None else set()
    if not isinstance(label, str) or label not in known:
        names = ", ".join(sorted(known)) or "none is configured"
        raise InvalidRequest(f"{where}.server_label must name a configured MCP server "
                             f"({names})", param=f"{where}.server_label")
    allowed = tool.get("allowed_tools")
    use = McpServerUse(label, None if allowed is None else _names(
        allowed, f"{where}.allowed_tools"), None)
    approval = tool.get("require_approval", "always")
    if approval == "never":
        use.always = set()
    elif approval == "always":
        use.always = None
    elif isinstance(approval, dict) and set(approval) <= {"always", "never"}:
        use.always = _names(approval["always"], f"{where}.require_approval.always") \
            if "always" in approval else set()
        use.never = _names(approval.get("never", []), f"{where}.require_approval.never")
        if "always" not in approval and "never" not in approval:
            use.always = None
    else:
        raise InvalidRequest(f"{where}.require_approval must be 'always', 'never' or "
                             "{'always': ..., 'never': ...}", param=f"{where}.require_approval")
    return use


def record_refusal(runtime: Runtime, principal: Principal, request_id: str, operation: str,
                   endpoint: str, body: Json, exc: OwnlightError) -> None:
    """A request refused before anything was sent (a ``server_url`` above all) is in the
    ledger like any other."""
    record = RequestRecord(
        request_id=request_id, operation=operation, endpoint=endpoint,
        principal=principal.name, tenant=principal.tenant, groups=list(principal.groups),
        model=str(body.get("model")), status=exc.status, error_code=exc.code,
        reason=exc.message)
    try:
        runtime.pipeline.ledger.put(record)
    except AuditUnavailableError:
        log.error("the refused MCP request %s could not be recorded", request_id)


def list_item(use: McpServerUse) -> Json:
    return {"type": "mcp_list_tools", "id": new_id("mcpl"), "server_label": use.label,
            "tools": [{"name": t.tool, "description": t.description,
                       "input_schema": t.input_schema, "annotations": t.annotations}
                      for t in use.tools.values()], "error": None}


def function_tool(tool: Tool) -> Json:
    return {"type": "function", "name": tool.name, "description": tool.description,
            "parameters": tool.input_schema or {"type": "object", "properties": {}}}


def _sum_usage(total: Json | None, usage: Json | None) -> Json | None:
    if usage is None:
        return total
    if total is None:
        return dict(usage)
    return {**total, **{k: total.get(k, 0) + usage.get(k, 0)
                        for k in ("input_tokens", "output_tokens", "total_tokens")}}


ExchangeFactory = Callable[[], Exchange]


class McpToolLoop:
    """One Responses request with ``mcp`` tools: prepared (checked, tools listed), then
    run as a series of pipeline rounds yielding output items as they are made."""

    def __init__(self, runtime: Runtime, principal: Principal, key: str | None,
                 headers: dict[str, str], body: Json, endpoint: str,
                 exchange: ExchangeFactory):
        self.runtime, self.principal, self.key = runtime, principal, key
        self.headers, self.body, self.endpoint = headers, body, endpoint
        self.exchange = exchange
        self.response_id = new_id("resp")
        self.uses: dict[str, McpServerUse] = {}
        self.by_name: dict[str, McpServerUse] = {}  # qualified tool name -> its server
        self.other_tools: list[Any] = []
        self.input: list[Json] = []
        self.early: list[Json] = []  # items made before the first round (approved calls)
        self.final: Json | None = None
        self.stored_input: list[Json] = []
        self.rounds_run = 0
        self.streamed = body.get("stream") is True

    @property
    def hub(self) -> ToolHub:
        assert self.runtime.mcp is not None
        return self.runtime.mcp

    async def prepare(self) -> None:
        """Everything that can refuse the request with a 400, before anything is sent;
        a refusal is recorded in the ledger (a ``server_url`` one above all)."""
        try:
            await self._prepare()
        except OwnlightError as exc:
            record_refusal(self.runtime, self.principal, self.response_id, "responses.mcp",
                           self.endpoint, self.body, exc)
            raise

    async def _prepare(self) -> None:
        body = self.body
        for i, tool in enumerate(body.get("tools") or []):
            if isinstance(tool, dict) and tool.get("type") == "mcp":
                use = parse_use(tool, f"tools[{i}]", self.runtime.mcp)
                if use.label in self.uses:
                    raise InvalidRequest(f"tools[{i}]: server {use.label!r} is named twice",
                                         param=f"tools[{i}].server_label")
                self.uses[use.label] = use
            else:
                self.other_tools.append(tool)
        raw = body.get("input", [])
        self.input = [{"type": "message", "role": "user",
                       "content": [{"type": "input_text", "text": raw}]}] \
            if isinstance(raw, str) else list(raw) if isinstance(raw, list) else raw
        if not isinstance(self.input, list):
            raise InvalidRequest("input must be a string or a list of items", param="input")
        self.input = [y for x in self.input for y in _as_history(_normalized(x))]
        listed = await self.hub.list_tools(self.principal)
        for use in self.uses.values():
            use.tools = {t.name: t for t in listed if t.server == use.label
                         and (use.allowed is None or t.tool in use.allowed)}
            self.by_name.update({name: use for name in use.tools})
        self._first_choice()  # a tool_choice naming no offered tool is a 400 now
        await self._approvals()

    async def _approvals(self) -> None:
        """``mcp_approval_response`` items answer an earlier response's requests: an
        approved call is made now; a declined one is reported to the model, not made."""
        answers = [x for x in self.input if isinstance(x, dict)
                   and x.get("type") == "mcp_approval_response"]
        if not answers:
            return
        self.input = [x for x in self.input if x not in answers]
        previous = self.body.get("previous_response_id")
        if not isinstance(previous, str):
            raise InvalidRequest("an mcp_approval_response needs the previous_response_id "
                                 "of the response that asked", param="previous_response_id")
        earlier, _ = self.runtime.responses.get(self.principal, previous)
        asked = {x.get("id"): x for x in earlier.get("output") or []
                 if x.get("type") == "mcp_approval_request"}
        for answer in answers:
            request = asked.get(answer.get("approval_request_id"))
            if request is None:
                raise InvalidRequest("approval_request_id names no mcp_approval_request of "
                                     "the previous response", param="input")
            use = self.uses.get(request["server_label"])
            qualified = f"{request['server_label']}__{request['name']}"
            if use is None or qualified not in use.tools:
                raise InvalidRequest(f"the approved tool {request['name']!r} is not offered "
                                     "in this request's tools", param="tools")
            call_id = request["id"]
            self.input.append({"type": "function_call", "call_id": call_id,
                               "name": qualified, "arguments": request["arguments"]})
            if answer.get("approve") is True:
                item, output = await self._call(use, qualified, request["arguments"])
                item["approval_request_id"] = request["id"]
                self.early.append(item)
            else:
                output = DECLINED
            self.input.append({"type": "function_call_output", "call_id": call_id,
                               "output": output})

    async def items(self) -> AsyncIterator[Json]:
        """Output items in order, ending with the last round's; ``self.final`` is then set."""
        output: list[Json] = []
        for use in self.uses.values():
            item = list_item(use)
            output.append(item)
            yield item
        for item in self.early:
            output.append(item)
            yield item
        offered = self.other_tools + [function_tool(t) for u in self.uses.values()
                                      for t in u.tools.values()]
        rounds = max(1, self.runtime.config.settings.mcp.max_tool_rounds)
        usage: Json | None = None
        rendered: Json = {}
        stored_input: list[Json] | None = None
        incomplete = True
        for _ in range(rounds):
            async for piece in self._round(offered):
                if "_done" in piece:
                    rendered, context = piece["_done"]
                else:
                    yield piece  # a streamed message's event, passed on as it comes
            if stored_input is None:
                stored_input = context
            usage = _sum_usage(usage, rendered.get("usage"))
            calls = [x for x in rendered.get("output") or []
                     if x.get("type") == "function_call" and x.get("name") in self.by_name]
            rest = [x for x in rendered.get("output") or [] if x not in calls]
            if calls:  # what the model said before calling is kept; its own calls wait
                rest = [x for x in rest if x.get("type") == "message"]
            for item in rest:
                output.append(item)
                yield {"_streamed": item} if self.streamed and item.get("type") == "message" \
                    else item
            if not calls:
                incomplete = False
                break
            waiting = False
            for call in calls:
                use = self.by_name[call["name"]]
                tool = use.tools[call["name"]]
                if use.needs_approval(tool.tool):
                    item = {"type": "mcp_approval_request", "id": new_id("mcpr"),
                            "server_label": use.label, "name": tool.tool,
                            "arguments": call["arguments"]}
                    waiting = True
                    output.append(item)
                    yield item
                    continue
                item, result = await self._call(use, call["name"], call["arguments"])
                output.append(item)
                yield item
                self.input.append({"type": "function_call", "call_id": call["call_id"],
                                   "name": call["name"], "arguments": call["arguments"]})
                self.input.append({"type": "function_call_output",
                                   "call_id": call["call_id"], "output": result})
            if waiting:  # the client answers with mcp_approval_response items
                incomplete = False
                break
        rendered.update({"id": self.response_id, "output": output, "usage": usage,
                         "tools": self.body.get("tools"),
                         "tool_choice": self.body.get("tool_choice") or "auto",
                         "store": self.body.get("store", True) is not False,
                         "previous_response_id": self.body.get("previous_response_id")})
        if incomplete:
            rendered["status"] = "incomplete"
            rendered["incomplete_details"] = {"reason": "max_tool_rounds"}
        self.final = rendered
        self.stored_input = stored_input or []

    async def _round(self, offered: list[Any]) -> AsyncIterator[Json]:
        """One pass through the pipeline: the conversation so far, the tools as functions.
        Streamed, a message's events are passed on (``{"_event": ...}``) as they come;
        the last piece is ``{"_done": (response, stored input)}``."""
        body = {**self.body, "tools": offered, "input": self.input,
                "stream": self.streamed, "store": False}
        if not offered:
            body.pop("tools")
        if self.rounds_run == 0:
            body["tool_choice"] = self._first_choice()
        else:  # a forced call is forced once, or the model would call it for ever
            body.pop("tool_choice", None)
        if body.get("tool_choice") is None:
            body.pop("tool_choice", None)
        self.rounds_run += 1
        exchange = self.exchange()
        result = await self.runtime.pipeline.handle(GatewayRequest(
            Operation.CHAT, body, self.key, exchange.parse, self.headers, new_request_id(),
            endpoint=self.endpoint), principal=self.principal)
        context = list(getattr(exchange, "context", [])) + list(self.input)
        if result.stream is None:
            assert result.body is not None
            yield {"_done": (exchange.render(result.body), context)}
            return
        kinds: dict[int, str] = {}  # output index -> item type, in this round's stream
        rendered: Json | None = None
        async for event in exchange.events(result.stream):
            kind = event["type"]
            if kind == "response.output_item.added":
                kinds[event["output_index"]] = event["item"]["type"]
            if kind in ("response.completed", "response.incomplete"):
                rendered = event["response"]
            elif kind == "response.failed":
                error = event["response"].get("error") or {}
                raise UpstreamError(str(error.get("message") or "the model failed"))
            elif kinds.get(event.get("output_index", -1)) == "message":
                yield {"_event": event}
        if rendered is None:
            raise UpstreamError("the model's stream ended before its answer")
        yield {"_done": (rendered, context)}

    def _first_choice(self) -> Any:
        """OpenAI's ``{"type": "mcp", "server_label": S, "name": T}`` as the function it
        is offered as; any other choice as sent."""
        choice = self.body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "mcp":
            use = self.uses.get(choice.get("server_label"))  # type: ignore[arg-type]
            if use is None:
                raise InvalidRequest("tool_choice.server_label names no mcp tool of this "
                                     "request", param="tool_choice.server_label")
            name = choice.get("name")
            if name is None:
                return "required"
            qualified = f"{use.label}__{name}"
            if qualified not in use.tools:
                raise InvalidRequest(f"tool_choice.name: {name!r} is not offered to this "
                                     "caller", param="tool_choice.name")
            return {"type": "function", "name": qualified}
        return choice

    async def _call(self, use: McpServerUse, qualified: str, arguments: str
                    ) -> tuple[Json, str]:
        return await call_tool(self.hub, self.principal, self.response_id, use, qualified,
                               arguments)

    def store(self) -> None:
        if self.final is not None and self.final.get("store"):
            self.runtime.responses.save(self.principal, self.final, self.stored_input)


async def call_tool(hub: ToolHub, principal: Principal, request_id: str, use: McpServerUse,
                    qualified: str, arguments: str) -> tuple[Json, str]:
    """One tool call through the hub: its ``mcp_call`` item and what the model reads."""
    tool = use.tools[qualified]
    item: Json = {"type": "mcp_call", "id": new_id("mcp"), "server_label": use.label,
                  "name": tool.tool, "arguments": arguments, "output": None,
                  "error": None, "status": "completed"}
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        message = "The arguments are not valid JSON; the tool was not called."
        item.update(status="failed", error=_error(message))
        return item, message
    try:
        result: ToolResult = await hub.call_tool(principal, qualified, parsed,
                                                 request_id=request_id)
    except ToolCallError as exc:
        item.update(status="failed", error=_error(exc.message))
        return item, f"Error: {exc.message}"
    if result.is_error:
        item.update(status="failed", error={"type": "mcp_tool_execution_error",
                                            "content": result.content})
        return item, f"Error: {result.text}"
    item["output"] = result.text
    return item, result.text


def _as_history(item: Any) -> list[Any]:
    """An earlier answer's items sent back as input (clients that keep the conversation
    themselves): a call as the function call and result the model made and read; a
    listing or an unanswered approval request is not the model's to read."""
    kind = item.get("type") if isinstance(item, dict) else None
    if kind in ("mcp_list_tools", "mcp_approval_request"):
        return []
    if kind == "mcp_call":
        return wire.output_to_items([item])
    return [item]


def _normalized(item: Any) -> Any:
    """A message item whose content is a string, as a list of parts (as it is stored)."""
    if isinstance(item, dict) and item.get("type", "message") == "message" \
            and isinstance(item.get("content"), str):
        kind = "output_text" if item.get("role") == "assistant" else "input_text"
        return {**item, "type": "message",
                "content": [{"type": kind, "text": item["content"]}]}
    return item


def _error(message: str) -> Json:
    return {"type": "mcp_tool_execution_error",
            "content": [{"type": "text", "text": message}]}


async def run(loop: McpToolLoop) -> Json:
    """The whole answer at once (``stream`` false)."""
    async for _ in loop.items():
        pass
    assert loop.final is not None
    loop.store()
    return loop.final


class _Events:
    """Numbered events, each a snapshot (items change after they are announced)."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> Json:
        event = orjson.loads(orjson.dumps({"type": kind, "sequence_number": self.sequence,
                                           **fields}))
        self.sequence += 1
        return event  # type: ignore[no-any-return]


async def events(loop: McpToolLoop) -> AsyncIterator[Json]:
    """The documented event stream: each item announced as the loop makes it (a tool
    call's events as it is made), then ``response.completed``; a failure after the start
    becomes ``response.failed``."""
    event = _Events()
    shell: Json = {"id": loop.response_id, "object": "response", "status": "in_progress",
             "model": loop.body.get("model"), "output": [], "tools": loop.body.get("tools"),
             "created_at": int(time.time()), "error": None, "incomplete_details": None,
             "parallel_tool_calls": True, "tool_choice": "auto"}
    yield event("response.created", response=shell)
    yield event("response.in_progress", response=shell)
    index = 0
    try:
        async for item in loop.items():
            if "_event" in item:  # a message streamed as the model writes it
                raw = {k: v for k, v in item["_event"].items()
                       if k not in ("type", "sequence_number")}
                raw["output_index"] = index
                yield event(item["_event"]["type"], **raw)
                if item["_event"]["type"] == "response.output_item.done":
                    index += 1
                continue
            if "_streamed" in item:  # its events have gone already
                continue
            for e in _item_events(event, item, index):
                yield e
            index += 1
    except OwnlightError as exc:
        yield event("response.failed", response={**shell, "status": "failed", "error": {
            "code": exc.code, "message": exc.message}})
        return
    assert loop.final is not None
    loop.store()
    kind = "response.incomplete" if loop.final.get("status") == "incomplete" \
        else "response.completed"
    yield event(kind, response=loop.final)


def _item_events(event: _Events, item: Json, index: int) -> list[Json]:
    at = {"item_id": item.get("id"), "output_index": index}
    kind = item.get("type")
    if kind == "mcp_list_tools":
        return [event("response.output_item.added", output_index=index,
                      item={**item, "tools": []}),
                event("response.mcp_list_tools.in_progress", **at),
                event("response.mcp_list_tools.completed", **at),
                event("response.output_item.done", output_index=index, item=item)]
    if kind == "mcp_call":
        done = "response.mcp_call.failed" if item.get("error") else "response.mcp_call.completed"
        return [event("response.output_item.added", output_index=index,
                      item={**item, "output": None, "error": None, "status": "in_progress",
                            "arguments": ""}),
                event("response.mcp_call.in_progress", **at),
                event("response.mcp_call_arguments.delta", **at, delta=item["arguments"]),
                event("response.mcp_call_arguments.done", **at, arguments=item["arguments"]),
                event(done, **at),
                event("response.output_item.done", output_index=index, item=item)]
    if kind == "message":
        out = [event("response.output_item.added", output_index=index,
                     item={**item, "status": "in_progress", "content": []})]
        for j, part in enumerate(item.get("content") or []):
            where = {**at, "content_index": j}
            text = part.get("text", "")
            out += [event("response.content_part.added", **where,
                          part={**part, "text": ""}),
                    event("response.output_text.delta", **where, delta=text, logprobs=[]),
                    event("response.output_text.done", **where, text=text, logprobs=[]),
                    event("response.content_part.done", **where, part=part)]
        return out + [event("response.output_item.done", output_index=index, item=item)]
    if kind == "function_call":
        return [event("response.output_item.added", output_index=index,
                      item={**item, "arguments": "", "status": "in_progress"}),
                event("response.function_call_arguments.delta", **at,
                      delta=item["arguments"]),
                event("response.function_call_arguments.done", **at,
                      arguments=item["arguments"]),
                event("response.output_item.done", output_index=index, item=item)]
    return [event("response.output_item.added", output_index=index, item=item),
            event("response.output_item.done", output_index=index, item=item)]


__all__ = ["McpToolLoop", "events", "has_mcp_tools", "run"]
