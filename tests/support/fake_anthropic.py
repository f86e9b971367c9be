"""A real Anthropic-Messages-compatible HTTP server on 127.0.0.1, faults chosen per request.

Ownlight's ``anthropic`` backend must speak the wire protocol Anthropic really speaks,
so this fake checks requests the way the real API does (``anthropic-version`` header,
``max_tokens``, ``messages``, tools with an ``input_schema``: 400
``invalid_request_error`` otherwise) and answers with the real shapes: a ``message``
object, or the ``event:``/``data:`` event sequence ``message_start``,
``content_block_start``, ``ping``, ``content_block_delta``..., ``content_block_stop``,
``message_delta`` (stop reason and usage), ``message_stop``.

The requested ``model`` picks the behaviour:

    fake-echo     answers the text "You said: <last user message text>"; streamed as
                  text_delta pieces of 3 characters
    fake-tools    calls the first tool offered with {"text": <last user message text>},
                  stop_reason tool_use; streamed as input_json_delta pieces of 3 characters
    fake-500      answers 500 with an Anthropic ``api_error`` body
    fake-529      answers 529 with an Anthropic ``overloaded_error`` body

Every request body is kept in ``received`` and its headers (lower-cased names) in
``headers``, so tests can assert what left Ownlight.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from tests.support.loopback import LoopbackServer

Json = dict[str, Any]


def error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}},
                             status=status)


class FakeAnthropic(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[Json] = []
        self.headers: list[dict[str, str]] = []
        self.url = f"http://127.0.0.1:{self.port}"
        self._ids = 0

    def __enter__(self) -> FakeAnthropic:
        super().__enter__()
        return self

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)

    # -- requests -----------------------------------------------------------------------

    @staticmethod
    def invalid(body: Any, headers: dict[str, str]) -> str | None:
        """What the real API would refuse with 400 (a message), else None."""
        if "anthropic-version" not in headers:
            return "anthropic-version: header is required"
        if not isinstance(body, dict):
            return "body: a JSON object is expected"
        if not isinstance(body.get("model"), str):
            return "model: Field required"
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            return "max_tokens: Field required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: Field required"
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
            if not isinstance(message.get("content"), str | list):
                return f"messages.{i}.content: Field required"
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            return "system: Input should be a valid string or list"
        for i, tool in enumerate(body.get("tools") or []):
            if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"),
                                                                       dict):
                return f"tools.{i}: name and input_schema are required"
        return None

    @staticmethod
    def _text(content: Any) -> str:
        if isinstance(content, str):
            return content
        texts: list[str] = []
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(str(block.get("text", "")))
        return "".join(texts)

    def last_user_text(self, body: Json) -> str:
        users = [m for m in body["messages"] if m.get("role") == "user"]
        return self._text(users[-1]["content"]) if users else ""

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}_fake{self._ids:04d}"

    def _content(self, body: Json) -> tuple[list[Json], str]:
        """The answer's content blocks and stop reason."""
        text = self.last_user_text(body)
        if body["model"] == "fake-tools" and body.get("tools"):
            tool = body["tools"][0]
            return [{"type": "tool_use", "id": self._new_id("toolu"), "name": tool["name"],
                     "input": {"text": text}}], "tool_use"
        return [{"type": "text", "text": f"You said: {text}"}], "end_turn"

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return error(400, "invalid_request_error", "body: invalid JSON")
        self.received.append(body)
        self.headers.append(headers)
        problem = self.invalid(body, headers)
        if problem is not None:
            return error(400, "invalid_request_error", problem)
        if body["model"] == "fake-500":
            return error(500, "api_error", "Internal server error")
        if body["model"] == "fake-529":
            return error(529, "overloaded_error", "Overloaded")
        content, stop_reason = self._content(body)
        usage = {"input_tokens": 12, "output_tokens": 5}
        message = {"id": self._new_id("msg"), "type": "message", "role": "assistant",
                   "model": body["model"], "content": content, "stop_reason": stop_reason,
                   "stop_sequence": None, "usage": usage}
        if body.get("stream"):
            return await self._stream(request, message)
        return web.json_response(message)

    # -- the event stream ---------------------------------------------------------------

    async def _stream(self, request: web.Request, message: Json) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)

        async def send(event: Json) -> None:
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
                                 .encode())
            await asyncio.sleep(0.002)

        start = {**message, "content": [], "stop_reason": None,
                 "usage": {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1}}
        await send({"type": "message_start", "message": start})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                opened: Json = {"type": "text", "text": ""}
                whole, delta_type, key = block["text"], "text_delta", "text"
            else:
                opened = {**block, "input": {}}
                whole, delta_type, key = json.dumps(block["input"]), "input_json_delta", \
                    "partial_json"
            await send({"type": "content_block_start", "index": index, "content_block": opened})
            if index == 0:
                await send({"type": "ping"})
            for i in range(0, len(whole), 3):
                await send({"type": "content_block_delta", "index": index,
                            "delta": {"type": delta_type, key: whole[i : i + 3]}})
            await send({"type": "content_block_stop", "index": index})
        await send({"type": "message_delta",
                    "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                    "usage": {"output_tokens": message["usage"]["output_tokens"]}})
        await send({"type": "message_stop"})
        return response
