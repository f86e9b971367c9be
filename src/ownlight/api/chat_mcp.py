"""MCP tools for Chat Completions, through Ownlight's ``mcp`` extension field.

Chat Completions has no ``mcp`` tool, so Ownlight reads one more top-level field: ``"mcp":
[{"server_label": NAME, "allowed_tools": [...], "require_approval": "never"}]``, the same
objects as the Responses API's ``mcp`` tools (``type`` may be left out). The loop is the
Responses one's: the server's tools this caller may use are offered to the model as
functions ``NAME__tool``, Ownlight makes the calls the model asks for through the hub
(access, pins, shield, guard, ledger), hands the results back as ``tool`` messages and asks
again, up to ``[mcp] max_tool_rounds`` times. The answer is an ordinary
``chat.completion`` with one more field, ``mcp_calls``: each call made, like the Responses
API's ``mcp_call`` items.

Chat Completions keeps no state between requests, so it cannot stop for a person to
approve a call and carry on later: a tool that would need approval is refused with a 400
naming ``require_approval``, and the Responses API is the one that asks.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ownlight.audit.records import new_request_id
from ownlight.errors import InvalidRequest, OwnlightError
from ownlight.mcp.hub import ToolHub
from ownlight.pipeline import GatewayRequest
from ownlight.principal import Principal
from ownlight.protocol.model import Json, Operation
from ownlight.runtime import Runtime

from .frontend import Exchange
from .responses_mcp import McpServerUse, call_tool, parse_use, record_refusal

FIELD = "mcp"


def has_mcp_field(body: Any) -> bool:
    return isinstance(body, dict) and body.get(FIELD) is not None


def _function(tool: Any) -> Json:
    return {"type": "function", "function": {
        "name": tool.name, "description": tool.description,
        "parameters": tool.input_schema or {"type": "object", "properties": {}}}}


class ChatMcpLoop:
    """One Chat Completions request with the ``mcp`` field, run as pipeline rounds."""

    def __init__(self, runtime: Runtime, principal: Principal, key: str | None,
                 headers: Mapping[str, str], body: Json, endpoint: str, exchange: Exchange):
        self.runtime, self.principal, self.key = runtime, principal, key
        self.headers, self.body, self.endpoint = dict(headers), body, endpoint
        self.exchange = exchange
        self.request_id = f"chatcmpl-{secrets.token_hex(12)}"
        self.uses: dict[str, McpServerUse] = {}
        self.by_name: dict[str, McpServerUse] = {}

    @property
    def hub(self) -> ToolHub:
        assert self.runtime.mcp is not None
        return self.runtime.mcp

    async def prepare(self) -> None:
        """Everything that can refuse the request, before anything is sent; recorded."""
        try:
            await self._prepare()
        except OwnlightError as exc:
            record_refusal(self.runtime, self.principal, self.request_id, "chat.mcp",
                           self.endpoint, self.body, exc)
            raise

    async def _prepare(self) -> None:
        servers = self.body.get(FIELD)
        if not isinstance(servers, list) or not all(isinstance(s, dict) for s in servers):
            raise InvalidRequest("mcp must be a list of objects, each naming a configured "
                                 "MCP server in server_label", param=FIELD)
        for i, server in enumerate(servers):
            where = f"{FIELD}[{i}]"
            if server.get("type", "mcp") != "mcp":
                raise InvalidRequest(f"{where}.type must be 'mcp'", param=f"{where}.type")
            use = parse_use({**server, "type": "mcp"}, where, self.runtime.mcp)
            if use.label in self.uses:
                raise InvalidRequest(f"{where}: server {use.label!r} is named twice",
                                     param=f"{where}.server_label")
            self.uses[use.label] = use
        listed = await self.hub.list_tools(self.principal)
        for i, use in enumerate(self.uses.values()):
            use.tools = {t.name: t for t in listed if t.server == use.label
                         and (use.allowed is None or t.tool in use.allowed)}
            gated = sorted(t.tool for t in use.tools.values() if use.needs_approval(t.tool))
            if gated:
                raise InvalidRequest(
                    f"{FIELD}[{i}].require_approval: Chat Completions cannot pause for a "
                    f"person to approve a call ({', '.join(gated)} would need it); set "
                    "'never' for the tools to offer, or use the Responses API, which asks",
                    param=f"{FIELD}[{i}].require_approval")
            self.by_name.update({name: use for name in use.tools})
        self._first_choice()

    def _first_choice(self) -> Any:
        """``{"type": "mcp", "server_label": S, "name": T}`` as the function it is offered
        as; any other choice as sent."""
        choice = self.body.get("tool_choice")
        if not (isinstance(choice, dict) and choice.get("type") == "mcp"):
            return choice
        use = self.uses.get(str(choice.get("server_label")))
        if use is None:
            raise InvalidRequest("tool_choice.server_label names no server of this request's "
                                 "mcp field", param="tool_choice.server_label")
        name = choice.get("name")
        if name is None:
            return "required"
        qualified = f"{use.label}__{name}"
        if qualified not in use.tools:
            raise InvalidRequest(f"tool_choice.name: {name!r} is not offered to this caller",
                                 param="tool_choice.name")
        return {"type": "function", "function": {"name": qualified}}

    async def run(self) -> Json:
        """The whole answer: the last round's completion, usage summed over the rounds,
        and ``mcp_calls``."""
        messages = list(self.body.get("messages") or [])
        offered = list(self.body.get("tools") or []) + [
            _function(t) for u in self.uses.values() for t in u.tools.values()]
        rounds = max(1, self.runtime.config.settings.mcp.max_tool_rounds)
        made: list[Json] = []
        usage: Json = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        rendered: Json = {}
        for round_number in range(rounds):
            rendered = await self._round(messages, offered, first=round_number == 0)
            for k in usage:
                usage[k] += int((rendered.get("usage") or {}).get(k) or 0)
            choice = (rendered.get("choices") or [{}])[0]
            message = choice.get("message") or {}
            calls = message.get("tool_calls") or []
            ours = [c for c in calls if (c.get("function") or {}).get("name") in self.by_name]
            if not ours:
                break
            messages.append({"role": "assistant", "content": message.get("content"),
                             "tool_calls": calls})
            for call in ours:
                item, output = await self._call(call)
                made.append(item)
                messages.append({"role": "tool", "tool_call_id": call.get("id"),
                                 "content": output})
            theirs = [c for c in calls if c not in ours]
            if theirs:  # the client's own functions: its turn, with Ownlight's calls made
                message["tool_calls"] = theirs
                break
        else:
            rendered["incomplete_details"] = {"reason": "max_tool_rounds"}
        rendered.update(id=self.request_id, usage=usage, mcp_calls=made)
        return rendered

    async def _round(self, messages: list[Any], offered: list[Any], *, first: bool) -> Json:
        body = {k: v for k, v in self.body.items() if k not in (FIELD, "stream_options")}
        body.update(messages=messages, stream=False)
        if offered:
            body["tools"] = offered
        choice = self._first_choice() if first else None  # a forced call is forced once
        if choice is None:
            body.pop("tool_choice", None)
        else:
            body["tool_choice"] = choice
        result = await self.runtime.pipeline.handle(GatewayRequest(
            Operation.CHAT, body, self.key, self.exchange.parse, self.headers,
            new_request_id(), endpoint=self.endpoint), principal=self.principal)
        assert result.body is not None
        return self.exchange.render(result.body)

    async def _call(self, call: Json) -> tuple[Json, str]:
        function = call.get("function") or {}
        name = str(function.get("name"))
        item, output = await call_tool(self.hub, self.principal, self.request_id,
                                       self.by_name[name], name,
                                       str(function.get("arguments") or "{}"))
        return {**item, "id": call.get("id") or item["id"]}, output


async def chunks(answer: Json, include_usage: bool) -> AsyncIterator[Json]:
    """A finished answer as Chat Completions chunks: the calls made ride on the first."""
    choice = (answer.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    base = {"id": answer["id"], "object": "chat.completion.chunk",
            "created": answer.get("created") or int(time.time()), "model": answer.get("model")}

    def chunk(delta: Json, finish: str | None = None, **extra: Any) -> Json:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra}

    yield chunk({"role": "assistant", "content": ""}, mcp_calls=answer.get("mcp_calls"))
    if message.get("content"):
        yield chunk({"content": message["content"]})
    for i, call in enumerate(message.get("tool_calls") or []):
        yield chunk({"tool_calls": [{"index": i, **call}]})
    yield chunk({}, choice.get("finish_reason") or "stop")
    if include_usage:
        yield {**base, "choices": [], "usage": answer.get("usage")}
