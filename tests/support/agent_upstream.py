"""A scripted cloud for agent CLIs: one tool call, then text, on both agent protocols.

The Codex CLI speaks the Responses API and Claude Code the Messages API, both streamed;
Ownlight passes them on to a Messages upstream or an OpenAI-compatible Chat Completions
one. This real HTTP server on 127.0.0.1 answers all three the way the frontier APIs do,
so an agent's whole tool loop can pass through Ownlight in a test:

- the first turn of a conversation (no tool output yet) is answered with a call to the
  tool named by ``tool`` with ``arguments`` — Codex's ``exec_command`` / ``shell`` running
  ``cat FILE``, Claude Code's ``Read`` of ``FILE``;
- a turn that carries a tool's output is answered with text quoting that output, so a
  test can see the value the agent read come back restored in the final answer;
- any other request (Claude Code's title and quota probes) gets a short text.

Every request is kept in ``received`` as ``(method, path with query, headers, body)``:
``tests/data/agents/`` holds the recorded bodies of the pinned agent releases.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.support.loopback import LoopbackServer

Json = dict[str, Any]
QUOTE = "The file says: "


class AgentUpstream(LoopbackServer):
    def __init__(self, tools: dict[str, Json] | None = None) -> None:
        """``tools`` maps a tool name the agent offers to the arguments to call it with."""
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tools = tools or {}
        self.received: list[tuple[str, str, dict[str, str], Any]] = []

    def __enter__(self) -> AgentUpstream:
        super().__enter__()
        return self

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._any)

    def bodies(self, path: str) -> list[Json]:
        return [body for _, p, _, body in self.received if p.split("?")[0].endswith(path)]

    async def _any(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.received.append((request.method, request.path_qs, headers, body))
        path = request.path
        if request.method != "POST" or not isinstance(body, dict):
            return web.json_response({"ok": True})
        if path.endswith("/messages/count_tokens"):
            return web.json_response({"input_tokens": len(raw) // 4})
        if path.endswith("/messages"):
            return await self._messages(request, body)
        if path.endswith("/responses"):
            return await self._responses(request, body)
        if path.endswith("/chat/completions"):
            return await self._chat(request, body)
        return web.json_response({"error": {"message": f"no route {path}"}}, status=404)

    # -- what to answer ------------------------------------------------------------------

    def _tool_to_call(self, offered: list[str]) -> tuple[str, Json] | None:
        for name, arguments in self.tools.items():
            if name in offered:
                return name, arguments
        return None

    # -- Messages --------------------------------------------------------------------------

    async def _messages(self, request: web.Request, body: Json) -> web.StreamResponse:
        messages = body.get("messages") or []
        output = _anthropic_tool_output(messages)
        offered = [t.get("name", "") for t in body.get("tools") or [] if isinstance(t, dict)]
        call = None if output is not None else self._tool_to_call(offered)
        text = QUOTE + output if output is not None else "Ready."
        if call:
            block: Json = {"type": "tool_use", "id": "toolu_01", "name": call[0], "input": {}}
            delta: Json = {"type": "input_json_delta", "partial_json": json.dumps(call[1])}
            stop = "tool_use"
        else:
            block = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": text}
            stop = "end_turn"
        usage = {"input_tokens": 10, "output_tokens": 5}
        message: Json = {"id": "msg_01", "type": "message", "role": "assistant",
                         "model": body.get("model"), "content": [], "stop_reason": None,
                         "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            final = dict(block)
            if call:
                final["input"] = call[1]
            else:
                final["text"] = text
            return web.json_response({**message, "content": [final], "stop_reason": stop})
        events: list[tuple[str, Json]] = [
            ("message_start", {"type": "message_start", "message": message}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": block}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": stop, "stop_sequence": None},
                               "usage": {"output_tokens": 5}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        return await _sse(request, events)

    # -- Responses -------------------------------------------------------------------------

    async def _responses(self, request: web.Request, body: Json) -> web.StreamResponse:
        items = body.get("input") if isinstance(body.get("input"), list) else []
        output = _responses_tool_output(items)
        offered = _responses_tool_names(body.get("tools") or [])
        call = None if output is not None else self._tool_to_call(offered)
        response: Json = {"id": "resp_01", "object": "response", "created_at": 1,
                          "status": "in_progress", "model": body.get("model"), "output": []}
        if call:
            item: Json = {"type": "function_call", "id": "fc_01", "call_id": "call_01",
                          "name": call[0], "arguments": json.dumps(call[1]),
                          "status": "completed"}
        else:
            text = QUOTE + output if output is not None else "Ready."
            item = {"type": "message", "id": "msg_01", "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
        done = {**response, "status": "completed", "output": [item],
                "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                          "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens_details": {"reasoning_tokens": 0}}}
        if not body.get("stream"):
            return web.json_response(done)
        events: list[tuple[str, Json]] = [
            ("response.created", {"type": "response.created", "response": response}),
            ("response.output_item.added", {"type": "response.output_item.added",
                                            "output_index": 0, "item": item}),
        ]
        if item["type"] == "message":
            events.append(("response.output_text.delta", {
                "type": "response.output_text.delta", "item_id": "msg_01", "output_index": 0,
                "content_index": 0, "delta": item["content"][0]["text"]}))
        events += [
            ("response.output_item.done", {"type": "response.output_item.done",
                                           "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "response": done}),
        ]
        for n, (_, data) in enumerate(events):
            data["sequence_number"] = n
        return await _sse(request, events)


    # -- Chat Completions ------------------------------------------------------------------

    async def _chat(self, request: web.Request, body: Json) -> web.StreamResponse:
        messages = body.get("messages") or []
        last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
        output = str(last.get("content")) if last.get("role") == "tool" else None
        offered = [t.get("function", {}).get("name", "") for t in body.get("tools") or []
                   if isinstance(t, dict)]
        call = None if output is not None else self._tool_to_call(offered)
        text = QUOTE + output if output is not None else "Ready."
        calls = [{"index": 0, "id": "call_01", "type": "function",
                  "function": {"name": call[0], "arguments": json.dumps(call[1])}}] if call else []
        finish = "tool_calls" if call else "stop"
        message: Json = {"role": "assistant", "content": None if call else text}
        if calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
        base = {"id": "chatcmpl-01", "created": 1, "model": body.get("model")}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if not body.get("stream"):
            return web.json_response({**base, "object": "chat.completion", "usage": usage,
                                      "choices": [{"index": 0, "message": message,
                                                   "finish_reason": finish}]})
        delta: Json = {"role": "assistant", **({"tool_calls": calls} if call
                                                else {"content": text})}
        chunks = [{**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                  {**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
                  {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}]
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _anthropic_tool_output(messages: list[Any]) -> str | None:
    """The text of the last message's tool_result, if it is one."""
    if not messages or not isinstance(messages[-1], dict):
        return None
    content = messages[-1].get("content")
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, str):
                return inner
            return " ".join(b.get("text", "") for b in inner or [] if isinstance(b, dict))
    return None


def _responses_tool_output(items: list[Any]) -> str | None:
    for item in reversed(items):
        if not isinstance(item, dict):
            continue
        if item.get("type") in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            if isinstance(output, list):
                return " ".join(p.get("text", "") for p in output if isinstance(p, dict))
            return str(output)
        if item.get("role") == "user":
            return None
    return None


def _responses_tool_names(tools: list[Any]) -> list[str]:
    names = []
    for tool in tools:
        if isinstance(tool, dict):
            names.append(str(tool.get("name", "")))
            names += _responses_tool_names(tool.get("tools") or [])
    return names


async def _sse(request: web.Request, events: list[tuple[str, Json]]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for name, data in events:
        await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
    await response.write_eof()
    return response
