"""The Anthropic Messages API: wire JSON <-> canonical model, both directions.

Ownlight stands on both sides of this protocol too: the ``/v1/messages`` front-end
parses what Claude Code and the ``anthropic`` SDK send and renders answers and event
streams; the ``anthropic`` backend renders canonical requests for an Anthropic upstream
and parses its answers and events. A user message's ``tool_result`` blocks become
canonical tool turns (one per result), so every other protocol and backend reads them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ownlight.errors import InvalidRequest, OwnlightError, UpstreamError, clip
from ownlight.protocol.fields import bounded_number, optional_list
from ownlight.protocol.model import (
    Choice,
    ChoiceDelta,
    Chunk,
    ImagePart,
    Json,
    OpaquePart,
    Operation,
    Part,
    Request,
    Response,
    ResponseFormat,
    Sampling,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolResult,
    ToolSpec,
    Turn,
    Usage,
    checked_model,
)
from ownlight.protocol.schema import check_schema

DEFAULT_MAX_TOKENS = 4096
# Block types Ownlight does not model but passes to an Anthropic upstream as they are.
BLOCK_TYPES = frozenset({"thinking", "redacted_thinking", "document", "search_result"})
# ``metadata`` is not modelled: its ``user_id`` (Claude Code puts device and session ids
# in it) goes to an Anthropic upstream as it came, and to no other protocol's ``user``.
MODELLED = {"model", "system", "messages", "tools", "tool_choice", "stop_sequences",
            "max_tokens", "temperature", "top_p", "stream", "knowledge"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "content_filter": "refusal"}
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                  "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
               409: "invalid_request_error", 413: "request_too_large",
               415: "invalid_request_error", 422: "invalid_request_error",
               429: "rate_limit_error", 503: "overloaded_error"}


# == parsing a client's request =========================================================


def parse_request(operation: Operation, body: Any) -> Request:
    """A Messages body as a canonical chat request; raises ``InvalidRequest`` naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = checked_model(body.get("model"))
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("max_tokens: a positive integer is required", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Field required", param="messages")
    request = Request(Operation.CHAT, model, protocol="anthropic")
    request.extra = {k: v for k, v in body.items() if k not in MODELLED}
    system = _system(body.get("system"))
    request.turns = [Turn("system", system)] if system else []
    for i, message in enumerate(messages):
        request.turns += _turns(message, f"messages.{i}")
    for i, tool in enumerate(optional_list(body, "tools")):
        if isinstance(tool, dict) and tool.get("type") not in (None, "custom"):
            request.hosted_tools.append(tool)  # a server tool (web search, code execution)
        else:
            request.tools.append(_tool(tool, f"tools.{i}"))
    request.tool_choice, request.parallel_tool_calls = _tool_choice(body.get("tool_choice"),
                                                                    request.tools)
    stops = optional_list(body, "stop_sequences")
    if not all(isinstance(s, str) for s in stops):
        raise InvalidRequest("stop_sequences: a list of strings is expected",
                             param="stop_sequences")
    request.sampling = Sampling(max_tokens=max_tokens,
                                temperature=bounded_number(body, "temperature", 0, 1),
                                top_p=bounded_number(body, "top_p", 0, 1), stop=list(stops))
    request.stream = body.get("stream") is True
    request.include_usage = True
    request.knowledge = body.get("knowledge")
    return request


def _system(raw: Any) -> list[Part]:
    """``system`` as text parts, one per block, each block's ``cache_control`` kept."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [TextPart(raw)] if raw else []
    if isinstance(raw, list) and all(isinstance(b, dict) and isinstance(b.get("text"), str)
                                     for b in raw):
        return [TextPart(b["text"], _extra(b, ("type", "text"))) for b in raw]
    raise InvalidRequest("system: a string or a list of text blocks is expected",
                         param="system")


def _extra(block: Json, modelled: tuple[str, ...]) -> Json | None:
    """A block's wire fields Ownlight does not model (``cache_control``...), or None."""
    rest = {k: v for k, v in block.items() if k not in modelled}
    return rest or None


def _turns(message: Any, where: str) -> list[Turn]:
    """One message -> canonical turns: each tool_result its own tool turn, in order.

    A ``system`` message inside ``messages`` (Claude Code sends them for models it does not
    know) is a system turn where it stands.
    """
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant",
                                                                    "system"):
        raise InvalidRequest(f"{where}.role: 'user', 'assistant' or 'system' is expected",
                             param=f"{where}.role")
    role = message["role"]
    content = message.get("content")
    if isinstance(content, str):
        return [Turn(role, [TextPart(content)])]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: a string or a list of blocks is expected",
                             param=f"{where}.content")
    turns: list[Turn] = []
    parts: list[Part] = []
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result" and role == "user":
            if parts:
                turns.append(Turn(role, parts))
                parts = []
            turns.append(Turn("tool", [_tool_result(block, at)]))
        else:
            parts.append(_block(block, kind, role, at))
    if parts or not turns:
        turns.append(Turn(role, parts))
    return turns


def _block(block: Any, kind: Any, role: str, at: str) -> Part:
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{at}.text: a string is expected", param=f"{at}.text")
        return TextPart(block["text"], _extra(block, ("type", "text")))
    if kind == "image":
        return _image(block, at)
    if kind == "tool_use" and role == "assistant":
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise InvalidRequest(f"{at}: tool_use needs an id and a name", param=at)
        return ToolCall(block["id"], block["name"], orjson.dumps(block.get("input", {})).decode(),
                        _extra(block, ("type", "id", "name", "input")))
    if isinstance(kind, str):
        return OpaquePart(block)  # thinking, documents...: kept, and scanned
    raise InvalidRequest(f"{at}: a content block needs a type", param=f"{at}.type")


def _image(block: Json, at: str) -> ImagePart | OpaquePart:
    source = block.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest(f"{at}.source: an image needs a source", param=f"{at}.source")
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return ImagePart(source["url"])
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        return ImagePart(f"data:{source.get('media_type', 'image/png')};base64,{source['data']}")
    return OpaquePart(block)


def _tool_result(block: Json, at: str) -> ToolResult:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str):
        raise InvalidRequest(f"{at}.tool_use_id: Field required", param=f"{at}.tool_use_id")
    content = block.get("content")
    parts: list[TextPart | ImagePart | OpaquePart] = []
    if isinstance(content, str):
        parts = [TextPart(content)]
    elif isinstance(content, list):
        for k, inner in enumerate(content):
            kind = inner.get("type") if isinstance(inner, dict) else None
            part = _block(inner, kind, "user", f"{at}.content.{k}")
            parts.append(part if not isinstance(part, ToolCall | ToolResult) else OpaquePart(inner))
    if block.get("is_error"):
        parts.insert(0, TextPart("Error: "))
    return ToolResult(call_id, parts, extra=_extra(block, ("type", "tool_use_id", "content")))


def _tool(tool: Any, where: str) -> ToolSpec:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise InvalidRequest(f"{where}.name: Field required", param=f"{where}.name")
    schema = tool.get("input_schema")
    if tool.get("type") not in (None, "custom") or not isinstance(schema, dict):
        raise InvalidRequest(f"{where}: only custom tools with an input_schema are supported",
                             param=f"{where}.input_schema")
    check_schema(schema, f"{where}.input_schema")
    description = tool.get("description")
    return ToolSpec(tool["name"], description if isinstance(description, str) else None, schema,
                    extra=_extra(tool, ("type", "name", "description", "input_schema")))


def _tool_choice(raw: Any, tools: list[ToolSpec]) -> tuple[ToolChoice | None, bool | None]:
    if raw is None:
        return None, None
    kind = raw.get("type") if isinstance(raw, dict) else None
    parallel = None if not isinstance(raw, dict) or "disable_parallel_tool_use" not in raw \
        else not raw["disable_parallel_tool_use"]
    if kind in ("auto", "none"):
        return ToolChoice(kind), parallel
    if kind == "any":
        return ToolChoice("required"), parallel
    if kind == "tool" and isinstance(raw.get("name"), str):
        if raw["name"] not in {t.name for t in tools}:
            raise InvalidRequest(f"tool_choice.name: no tool named {clip(raw['name'])}",
                                 param="tool_choice.name")
        return ToolChoice("function", raw["name"]), parallel
    raise InvalidRequest("tool_choice.type: one of auto, any, tool, none is expected",
                         param="tool_choice")




# == rendering a request for an Anthropic upstream =======================================


def render_request(r: Request) -> Json:
    """The Messages body for an Anthropic upstream (``model`` set by the backend).

    A request that came in on this protocol keeps its shape: system blocks and every
    ``cache_control`` marker where the client put them (prompt caching depends on it),
    server tools, ``thinking``, ``context_management``, ``metadata`` and the other fields
    Ownlight does not model. Only the text inside has been pseudonymized.
    """
    if r.sampling.n != 1:
        raise InvalidRequest("n must be 1 for an Anthropic model", param="n")
    same = r.protocol == "anthropic"
    body: Json = {**(r.extra if same else {}), "model": r.model,
                  "max_tokens": r.sampling.max_tokens or DEFAULT_MAX_TOKENS}
    lead = next((i for i, t in enumerate(r.turns) if t.role not in ("system", "developer")),
                len(r.turns))
    blocks = [TextPart(r.instructions)] if r.instructions else []
    blocks += [p for t in r.turns[:lead] for p in t.parts if isinstance(p, TextPart) and p.text]
    wanted = _format_instructions(r.response_format)
    if wanted:
        blocks.append(TextPart(wanted))
    if blocks and same and any(b.extra for b in blocks):
        body["system"] = [{"type": "text", "text": b.text, **(b.extra or {})} for b in blocks]
    elif blocks:
        body["system"] = "\n\n".join(b.text for b in blocks)
    mid_system = same and any("mid-conversation-system" in b for b in r.betas)
    body["messages"] = _render_messages(r.turns[lead:], same, mid_system)
    tools: list[Json] = [{"name": t.name, "description": t.description or "",
                          "input_schema": t.parameters or {"type": "object"},
                          **((t.extra or {}) if same else {})} for t in r.tools]
    if same:
        tools += r.hosted_tools
    if tools:
        body["tools"] = tools
    choice = _render_tool_choice(r.tool_choice, r.parallel_tool_calls)
    if choice is not None and tools:
        body["tool_choice"] = choice
    s = r.sampling
    for key, value in (("temperature", s.temperature), ("top_p", s.top_p),
                       ("stop_sequences", s.stop or None)):
        if value is not None:
            body[key] = value
    if r.user and "metadata" not in body:
        body["metadata"] = {"user_id": r.user}
    if r.stream:
        body["stream"] = True
    return body


def _format_instructions(fmt: ResponseFormat | None) -> str:
    """Anthropic has no JSON mode: the answer format is asked for in words."""
    if fmt is None or not fmt.is_json:
        return ""
    if fmt.schema:
        return ("Answer only with a JSON object that matches this JSON schema, no other text: "
                + orjson.dumps(fmt.schema).decode())
    return "Answer only with a JSON object, no other text."


def _render_messages(turns: list[Turn], same: bool, mid_system: bool) -> list[Json]:
    """Turns as alternating user/assistant messages; tool results go in user messages.

    A system turn after the conversation began stays a ``system`` message when the client
    declared the mid-conversation-system beta; otherwise it becomes a user text block in
    ``<system-reminder>`` tags, the form Anthropic's own clients use for such context.
    """
    messages: list[Json] = []
    for turn in turns:
        role = "assistant" if turn.role == "assistant" else "user"
        blocks = [b for b in (_render_part(p, same) for p in turn.parts) if b is not None]
        if turn.role in ("system", "developer"):
            if mid_system:
                role = "system"
            else:
                blocks = [{**b, "text": f"<system-reminder>\n{b['text']}\n</system-reminder>"}
                          for b in blocks if b.get("type") == "text"]
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += blocks
        else:
            messages.append({"role": role, "content": blocks})
    return messages


def _render_part(part: Part, same: bool = False) -> Json | None:
    extra = (getattr(part, "extra", None) or {}) if same else {}
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text, **extra} if part.text else None
    if isinstance(part, ImagePart):
        return _render_image(part)
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name,
                "input": _json_object(part.arguments), **extra}
    if isinstance(part, ToolResult):
        inner = part.parts
        if extra.get("is_error") and inner and isinstance(inner[0], TextPart) \
                and inner[0].text == "Error: ":
            inner = inner[1:]  # the prefix other protocols need; this one has is_error
        content = [b for b in (_render_part(p, same) for p in inner) if b is not None]
        return {"type": "tool_result", "tool_use_id": part.call_id, "content": content,
                **extra}
    return part.data if part.data.get("type") in BLOCK_TYPES else None


def _render_image(part: ImagePart) -> Json:
    if part.url.startswith("data:") and ";base64," in part.url:
        head, data = part.url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": head, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _json_object(arguments: str) -> Any:
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"value": value}


def _render_tool_choice(choice: ToolChoice | None, parallel: bool | None) -> Json | None:
    if choice is None and parallel is None:
        return None
    mode = choice.mode if choice is not None else "auto"
    out: Json = {"type": {"required": "any", "function": "tool"}.get(mode, mode)}
    if mode == "function" and choice is not None:
        out["name"] = choice.name
    if parallel is False and mode != "none":
        out["disable_parallel_tool_use"] = True
    return out


# == parsing an Anthropic upstream's answer ===============================================


def parse_response(body: Json) -> Response:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in body.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            calls.append(ToolCall(str(block.get("id") or ""), str(block.get("name") or ""),
                                  orjson.dumps(block.get("input") or {}).decode()))
    finish = FINISH_REASONS.get(str(body.get("stop_reason")), "stop")
    choice = Choice(0, "".join(texts) if texts or not calls else None, calls, finish)
    return Response(Operation.CHAT, str(body.get("model") or ""), str(body.get("id") or ""),
                    int(time.time()), [choice], usage=_usage(body.get("usage")))


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(int(raw.get("input_tokens") or 0), int(raw.get("output_tokens") or 0))


class EventReader:
    """An Anthropic event stream as canonical chunks (one reader per stream)."""

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = int(time.time())
        self.usage = Usage()
        self._tools: dict[int, int] = {}  # content block index -> tool call index

    def read(self, event: Json) -> Iterator[Chunk]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id, self.model = str(message.get("id") or ""), str(message.get("model") or "")
            self.usage.prompt_tokens = int((message.get("usage") or {}).get("input_tokens") or 0)
            yield self._chunk(ChoiceDelta(0, role="assistant", text=""))
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tools.setdefault(int(event.get("index", 0)), len(self._tools))
                yield self._chunk(ChoiceDelta(0, tool_calls=[ToolCallDelta(
                    index, str(block.get("id") or ""), str(block.get("name") or ""), "")]))
            elif block.get("type") == "text" and block.get("text"):
                yield self._chunk(ChoiceDelta(0, text=str(block["text"])))
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                yield self._chunk(ChoiceDelta(0, text=str(delta.get("text") or "")))
            elif delta.get("type") == "input_json_delta":
                index = self._tools.get(int(event.get("index", 0)), 0)
                yield self._chunk(ChoiceDelta(0, tool_calls=[ToolCallDelta(
                    index, arguments=str(delta.get("partial_json") or ""))]))
        elif kind == "message_delta":
            usage = event.get("usage") or {}
            self.usage.completion_tokens = int(usage.get("output_tokens") or 0)
            if usage.get("input_tokens"):
                self.usage.prompt_tokens = int(usage["input_tokens"])
            reason = (event.get("delta") or {}).get("stop_reason")
            yield self._chunk(ChoiceDelta(0, finish_reason=FINISH_REASONS.get(str(reason),
                                                                              "stop")))
        elif kind == "message_stop":
            yield Chunk(Operation.CHAT, self.model, self.id, self.created, [], self.usage)
        elif kind == "error":
            error = event.get("error") or {}
            raise UpstreamError(f"upstream stream failed: {error.get('message', 'error')}")

    def _chunk(self, delta: ChoiceDelta) -> Chunk:
        return Chunk(Operation.CHAT, self.model, self.id, self.created, [delta])


# == rendering an answer for a client =====================================================


def render_response(r: Response) -> Json:
    choice = r.choices[0] if r.choices else Choice(0, "")
    content: list[Json] = []
    if choice.text:
        content.append({"type": "text", "text": choice.text})
    for call in choice.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name,
                        "input": _json_object(call.arguments)})
    usage = r.usage or Usage()
    body: Json = {"id": _message_id(r.id), "type": "message", "role": "assistant",
                  "model": r.model, "content": content,
                  "stop_reason": STOP_REASONS.get(choice.finish_reason or "stop", "end_turn"),
                  "stop_sequence": None,
                  "usage": {"input_tokens": usage.prompt_tokens,
                            "output_tokens": usage.completion_tokens}}
    body.update(r.extra)
    return body


def _message_id(upstream: str) -> str:
    return upstream if upstream.startswith("msg_") else "msg_" + uuid.uuid4().hex[:24]


@dataclass
class EventWriter:
    """Canonical chunks as Anthropic's event sequence (one writer per stream).

    Text and each tool call are content blocks, opened on their first delta and
    closed when the next block begins or the message ends.
    """

    model: str
    id: str = field(default_factory=lambda: "msg_" + uuid.uuid4().hex[:24])
    _block: int = -1
    _open: tuple[str, int] | None = None  # ("text", 0) or ("tool", tool call index)
    _started: bool = False
    _finish: str = "stop"
    _usage: Usage = field(default_factory=Usage)

    def events(self, chunk: Chunk) -> Iterator[Json]:
        if not self._started:
            self._started = True
            self.model = chunk.model or self.model
            yield {"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}
            yield {"type": "ping"}
        if chunk.usage is not None:
            self._usage = chunk.usage
        for delta in chunk.choices:
            if delta.index != 0:
                continue
            if delta.text:
                yield from self._open_block(("text", 0), {"type": "text", "text": ""})
                yield {"type": "content_block_delta", "index": self._block,
                       "delta": {"type": "text_delta", "text": delta.text}}
            for call in delta.tool_calls:
                if call.id is not None or self._open != ("tool", call.index):
                    yield from self._open_block(("tool", call.index), {
                        "type": "tool_use", "id": call.id or f"toolu_{call.index}",
                        "name": call.name or "", "input": {}})
                if call.arguments:
                    yield {"type": "content_block_delta", "index": self._block,
                           "delta": {"type": "input_json_delta",
                                     "partial_json": call.arguments}}
            if delta.finish_reason is not None:
                self._finish = delta.finish_reason

    def close(self) -> Iterator[Json]:
        """The end of the message: close the open block, then stop reason and usage."""
        if not self._started:
            yield from self.events(Chunk(Operation.CHAT, self.model))
        if self._open is not None:
            yield {"type": "content_block_stop", "index": self._block}
            self._open = None
        yield {"type": "message_delta",
               "delta": {"stop_reason": STOP_REASONS.get(self._finish, "end_turn"),
                         "stop_sequence": None},
               "usage": {"input_tokens": self._usage.prompt_tokens,
                         "output_tokens": self._usage.completion_tokens}}
        yield {"type": "message_stop"}

    def _open_block(self, key: tuple[str, int], start: Json) -> Iterator[Json]:
        if self._open == key:
            return
        if self._open is not None:
            yield {"type": "content_block_stop", "index": self._block}
        self._block += 1
        self._open = key
        yield {"type": "content_block_start", "index": self._block, "content_block": start}


async def render_stream(chunks: AsyncIterator[Chunk], model: str) -> AsyncIterator[Json]:
    """The whole event stream; an error after the start becomes an ``error`` event."""
    writer = EventWriter(model)
    try:
        async for chunk in chunks:
            for event in writer.events(chunk):
                yield event
    except OwnlightError as exc:
        yield error_body(exc)
        return
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    for event in writer.close():
        yield event


def error_body(error: OwnlightError) -> Json:
    kind = ERROR_TYPES.get(error.status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}
