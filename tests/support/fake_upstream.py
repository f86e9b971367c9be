"""A real OpenAI-compatible HTTP server on 127.0.0.1 with faults chosen per request.

The requested ``model`` picks the behaviour, so one server covers every case:

    fake-model     answers normally (chat, completions, embeddings, streams)
    fake-slow      waits ``slow_seconds`` before answering
    fake-500       answers 500
    fake-429       answers 429
    fake-cut       starts a stream, then drops the connection mid-answer
    fake-context   answers 400 with a context-length message
    fake-400       answers 400 with an upstream message about one request
    fake-echo      answers "You said: <last user message>", streamed 3 characters a chunk
    fake-tools     calls the first tool offered with {"text": <last user message>, "tool": <its
                   description>}; streamed, the arguments come 3 characters a chunk
    fake-json      answers the JSON text {"echo": <last user message>}, streamed 3 at a time
    fake-hang      never answers
    fake-trickle   answers one byte every 0.2 s (a stream: one event, then the same trickle)
    fake-429-wait  answers 429 with Retry-After: 2
    fake-short     promises a 1,157-byte body, sends 20 bytes and closes

and any model named in ``failing`` answers 500 until it is removed (recovery tests).

Every request body is kept in ``received`` so tests can assert what left Ownlight.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from tests.support.loopback import LoopbackServer, free_port

__all__ = ["FakeUpstream", "free_port"]


class FakeUpstream(LoopbackServer):
    def __init__(self, reply: str = "Hello from upstream", slow_seconds: float = 3.0):
        super().__init__()
        self.reply = reply
        self.slow_seconds = slow_seconds
        self.received: list[dict[str, Any]] = []
        self.failing: set[str] = set()  # models that answer 500 until removed
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeUpstream:
        super().__enter__()
        return self

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completion)
        app.router.add_post("/v1/embeddings", self._embeddings)

    async def _fault(self, request: web.Request,
                     body: dict[str, Any]) -> web.StreamResponse | None:
        model = body.get("model", "")
        if model == "fake-hang":
            await asyncio.sleep(3600)
        if model == "fake-trickle":
            return await self._trickle(request, body)
        if model == "fake-429-wait":
            return web.json_response({"error": {"message": "slow down"}}, status=429,
                                     headers={"Retry-After": "2"})
        if model == "fake-short":
            response = web.StreamResponse(headers={"Content-Type": "application/json",
                                                   "Content-Length": "1157"})
            await response.prepare(request)
            await response.write(b'{"id": "chatcmpl-sho')
            assert request.transport is not None
            request.transport.close()
            return response
        if model in self.failing:
            return web.json_response({"error": {"message": "down for now"}}, status=500)
        if model == "fake-slow":
            await asyncio.sleep(self.slow_seconds)
        if model == "fake-500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if model == "fake-429":
            return web.json_response({"error": {"message": "slow down"}}, status=429)
        if model == "fake-400":
            return web.json_response(
                {"error": {"message": "Unsupported value: 'temperature'"}}, status=400)
        if model == "fake-context":
            return web.json_response(
                {"error": {"message": "This model's maximum context length is 8 tokens"}},
                status=400,
            )
        return None

    async def _trickle(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        stream = bool(body.get("stream"))
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream" if stream else "application/json"})
        await response.prepare(request)
        if stream:
            first = {"id": "x", "object": "chat.completion.chunk", "created": 1,
                     "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": "Hel"},
                                  "finish_reason": None}]}
            await response.write(b"data: " + json.dumps(first).encode() + b"\n\n")
        for byte in b'{"id": "chatcmpl-trickle", "choices": []}' * 100:
            await response.write(bytes([byte]))
            await asyncio.sleep(0.2)
        return response

    @staticmethod
    def _last_user(body: dict[str, Any]) -> str:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        if not users:
            return str(body.get("prompt", ""))
        content = users[-1]["content"]
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content)

    def _reply_for(self, body: dict[str, Any]) -> str:
        if body.get("model") == "fake-echo":
            return f"You said: {self._last_user(body)}"
        if body.get("model") == "fake-json":
            return json.dumps({"echo": self._last_user(body)})
        return self.reply

    def _tool_call(self, body: dict[str, Any]) -> dict[str, Any]:
        tool = body["tools"][0]["function"]
        arguments = json.dumps({"text": self._last_user(body),
                                "tool": tool.get("description", "")})
        return {"id": "call_fake1", "type": "function",
                "function": {"name": tool["name"], "arguments": arguments}}

    def _pieces(self, body: dict[str, Any]) -> list[str]:
        reply = self._reply_for(body)
        if body.get("model") in ("fake-echo", "fake-json"):
            return [reply[i : i + 3] for i in range(0, len(reply), 3)]
        words = reply.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        fault = await self._fault(request, body)
        if fault is not None:
            return fault
        if body.get("model") == "fake-tools" and body.get("tools"):
            if body.get("stream"):
                return await self._stream_tool_call(request, body)
            message = {"role": "assistant", "content": None,
                       "tool_calls": [self._tool_call(body)]}
            finish = "tool_calls"
        else:
            if body.get("stream"):
                return await self._stream(request, body, chat=True)
            message = {"role": "assistant", "content": self._reply_for(body)}
            finish = "stop"
        return web.json_response({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": i, "finish_reason": finish, "message": message}
                        for i in range(int(body.get("n") or 1))],
            "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11},
        })

    async def _stream_tool_call(self, request: web.Request,
                                body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        call = self._tool_call(body)
        arguments = call["function"]["arguments"]
        deltas = [{"index": 0, "id": call["id"], "type": "function",
                   "function": {"name": call["function"]["name"], "arguments": ""}}]
        deltas += [{"index": 0, "function": {"arguments": arguments[i : i + 3]}}
                   for i in range(0, len(arguments), 3)]
        for delta in deltas:
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1,
                     "model": body["model"],
                     "choices": [{"index": 0, "delta": {"tool_calls": [delta]},
                                  "finish_reason": None}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        end = {"id": "x", "object": "chat.completion.chunk", "created": 1,
               "model": body["model"],
               "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
        await response.write(b"data: " + json.dumps(end).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        fault = await self._fault(request, body)
        if fault is not None:
            return fault
        if body.get("stream"):
            return await self._stream(request, body, chat=False)
        return web.json_response({
            "id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "text": self._reply_for(body), "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        })

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return web.json_response({
            "object": "list", "model": body["model"],
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                     for i, _ in enumerate(inputs)],
            "usage": {"prompt_tokens": 2, "total_tokens": 2},
        })

    async def _stream(self, request: web.Request, body: dict[str, Any],
                      chat: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = self._pieces(body)
        for i, piece in enumerate(words):
            choice: dict[str, Any] = (
                {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                if chat else {"index": 0, "text": piece, "finish_reason": None}
            )
            chunk = {"id": "x", "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": 1, "model": body["model"], "choices": [choice]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if body["model"] == "fake-cut" and i == 1:
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-answer
                return response
            await asyncio.sleep(0.01)
        final = {"index": 0, "delta": {}, "finish_reason": "stop"} if chat else {
            "index": 0, "text": "", "finish_reason": "stop"}
        await response.write(b"data: " + json.dumps(
            {"id": "x", "object": "chat.completion.chunk", "created": 1,
             "model": body["model"], "choices": [final]}).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"id": "x", "object": "chat.completion.chunk", "created": 1,
                     "model": body["model"], "choices": [],
                     "usage": {"prompt_tokens": 7, "completion_tokens": len(words),
                               "total_tokens": 7 + len(words)}}
            await response.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response
