"""OpenAI Chat Completions, Completions and Embeddings: wire JSON <-> canonical model.

Both directions live here, because Ownlight stands on both sides of this protocol:
the front-end parses what clients send (``parse_request``) and renders answers
(``render_response``, ``render_chunk``); the OpenAI-compatible backend renders
requests for upstreams (``render_request``) and parses their answers
(``parse_response``, ``parse_chunk``). Parsing checks the shape as it goes, so a bad
body becomes a 400 naming the field (``messages[2].tool_calls[0].function.arguments``),
never a traceback later.
"""

from __future__ import annotations

import re
import time
from typing import Any, TypeVar

from ownlight.errors import InvalidRequest, clip
from ownlight.protocol.fields import bounded_number
from ownlight.protocol.model import (
    Choice,
    ChoiceDelta,
    Chunk,
    Embedding,
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
    TokenLogprob,
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

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MAX_N = 128
# Content part types Ownlight does not model but passes to an upstream as they are.
PART_TYPES = frozenset({"input_audio", "file", "refusal"})

# Top-level fields each operation models; anything else is ``extra``.
_COMMON = {"model", "stream", "stream_options", "user", "metadata", "knowledge"}
_SAMPLING = {"max_tokens", "temperature", "top_p", "stop", "seed", "n",
             "presence_penalty", "frequency_penalty"}
MODELLED = {
    Operation.CHAT: _COMMON | _SAMPLING | {
        "messages", "max_completion_tokens", "tools", "tool_choice", "parallel_tool_calls",
        "response_format", "logprobs", "top_logprobs"},
    Operation.COMPLETION: _COMMON | _SAMPLING | {"prompt", "logprobs"},
    Operation.EMBEDDING: {"model", "input", "encoding_format", "dimensions", "user"},
}

T = TypeVar("T")


# == parsing a client's request =========================================================


def parse_request(operation: Operation, body: Any) -> Request:
    """Check a wire body and translate it; raises ``InvalidRequest`` naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    request = Request(operation, checked_model(body.get("model")))
    request.extra = {k: v for k, v in body.items() if k not in MODELLED[operation]}
    if operation is Operation.EMBEDDING:
        _embedding_fields(body, request)
        return request
    _common_fields(body, request)
    if operation is Operation.CHAT:
        _chat_fields(body, request)
    else:
        _completion_fields(body, request)
    return request


def _common_fields(body: Json, r: Request) -> None:
    r.stream = _opt(body, "stream", bool) or False
    options = _opt(body, "stream_options", dict) or {}
    r.include_usage = bool(options.get("include_usage"))
    r.user = _opt(body, "user", str)
    metadata = _opt(body, "metadata", dict)
    if metadata is not None:
        if not all(isinstance(v, str) for v in metadata.values()):
            raise InvalidRequest("metadata values must be strings", param="metadata")
        r.metadata = metadata
    r.knowledge = body.get("knowledge")
    stop = body.get("stop")
    if isinstance(stop, str):
        stops = [stop]
    elif stop is None:
        stops = []
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise InvalidRequest("stop must be a string or a list of strings", param="stop")
    if len(stops) > 4:
        raise InvalidRequest("stop may hold at most 4 sequences", param="stop")
    max_tokens = _opt(body, "max_completion_tokens", int)
    if max_tokens is None:
        max_tokens = _opt(body, "max_tokens", int)
    if max_tokens is not None and max_tokens < 1:
        raise InvalidRequest("max_tokens must be at least 1", param="max_tokens")
    n = _opt(body, "n", int)
    if n is not None and not 1 <= n <= MAX_N:
        raise InvalidRequest(f"n must be between 1 and {MAX_N}", param="n")
    r.sampling = Sampling(
        max_tokens=max_tokens,
        temperature=bounded_number(body, "temperature", 0, 2),
        top_p=bounded_number(body, "top_p", 0, 1),
        stop=stops,
        seed=_opt(body, "seed", int),
        n=n or 1,
        presence_penalty=bounded_number(body, "presence_penalty", -2, 2),
        frequency_penalty=bounded_number(body, "frequency_penalty", -2, 2),
    )


def _chat_fields(body: Json, r: Request) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    r.turns = [_turn(m, f"messages[{i}]") for i, m in enumerate(messages)]
    r.tools = [_tool(t, f"tools[{i}]") for i, t in enumerate(_opt(body, "tools", list) or [])]
    r.tool_choice = _tool_choice(body.get("tool_choice"), r.tools)
    r.parallel_tool_calls = _opt(body, "parallel_tool_calls", bool)
    r.response_format = _response_format(body.get("response_format"))
    r.sampling.logprobs = _opt(body, "logprobs", bool) or False
    top = _opt(body, "top_logprobs", int)
    if top is not None:
        if not 0 <= top <= 20:
            raise InvalidRequest("top_logprobs must be between 0 and 20", param="top_logprobs")
        if not r.sampling.logprobs:
            raise InvalidRequest("top_logprobs needs logprobs set to true",
                                 param="top_logprobs")
    r.sampling.top_logprobs = top


def _completion_fields(body: Json, r: Request) -> None:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        r.prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        r.prompts = list(prompt)
    elif isinstance(prompt, list) and prompt and all(
            isinstance(p, int) or (isinstance(p, list) and all(isinstance(x, int) for x in p))
            for p in prompt):
        r.extra["prompt"] = prompt  # token arrays: only an upstream can read them
    else:
        raise InvalidRequest("prompt must be a string, a list of strings or token arrays",
                             param="prompt")
    top = _opt(body, "logprobs", int)
    if top is not None:
        if not 0 <= top <= 5:
            raise InvalidRequest("logprobs must be between 0 and 5", param="logprobs")
        r.sampling.logprobs, r.sampling.top_logprobs = True, top


def _embedding_fields(body: Json, r: Request) -> None:
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [raw]
    ok = isinstance(raw, list) and bool(raw) and (
        all(isinstance(x, str) for x in raw) or all(isinstance(x, int) for x in raw)
        or all(isinstance(x, list) and all(isinstance(t, int) for t in x) for x in raw))
    if not ok:
        raise InvalidRequest("input must be a string, a list of strings or token arrays",
                             param="input")
    assert isinstance(raw, list)
    r.inputs = raw
    r.encoding_format = _opt(body, "encoding_format", str)
    if r.encoding_format not in (None, "float", "base64"):
        raise InvalidRequest("encoding_format must be 'float' or 'base64'",
                             param="encoding_format")
    r.dimensions = _opt(body, "dimensions", int)
    if r.dimensions is not None and r.dimensions < 1:
        raise InvalidRequest("dimensions must be at least 1", param="dimensions")
    r.user = _opt(body, "user", str)


_MESSAGE_FIELDS = {"role", "content", "name", "tool_calls", "tool_call_id"}


def _turn(message: Any, where: str) -> Turn:
    if not isinstance(message, dict):
        raise InvalidRequest(f"{where} must be an object", param=where)
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequest(f"{where}.role must be one of {', '.join(ROLES)}",
                             param=f"{where}.role")
    name = _opt(message, "name", str, where)
    extra = {k: v for k, v in message.items() if k not in _MESSAGE_FIELDS}
    content = message.get("content")
    if role == "tool" or role == "function":
        call_id = message.get("tool_call_id")
        if role == "tool" and not isinstance(call_id, str):
            raise InvalidRequest(f"Missing required parameter: '{where}.tool_call_id'.",
                                 param=f"{where}.tool_call_id")
        result = ToolResult(call_id if isinstance(call_id, str) else "",
                            _content(content, f"{where}.content", role),
                            name if role == "function" else None)
        return Turn("tool", [result], None if role == "function" else name, extra)
    parts: list[Part] = list(_content(content, f"{where}.content", role))
    if role == "assistant":
        calls = _opt(message, "tool_calls", list, where) or []
        parts += [_tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls)]
    elif "tool_calls" in message:
        raise InvalidRequest(f"{where}.tool_calls is only allowed on assistant messages",
                             param=f"{where}.tool_calls")
    if role != "assistant" and content is None:
        raise InvalidRequest(f"Missing required parameter: '{where}.content'.",
                             param=f"{where}.content")
    return Turn(role, parts, name, extra)


def _content(content: Any, where: str, role: str) -> list[TextPart | ImagePart | OpaquePart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or a list of content parts",
                             param=where)
    parts: list[TextPart | ImagePart | OpaquePart] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            raise InvalidRequest(f"{at} must be an object with a type", param=at)
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise InvalidRequest(f"{at}.text must be a string", param=f"{at}.text")
            parts.append(TextPart(part["text"]))
        elif kind == "image_url" and role == "user":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise InvalidRequest(f"{at}.image_url.url must be a string",
                                     param=f"{at}.image_url.url")
            parts.append(ImagePart(image["url"], _opt(image, "detail", str, at)))
        elif kind == "refusal" and role == "assistant":
            parts.append(OpaquePart(part))
        elif role == "user" and kind in ("input_audio", "file"):
            parts.append(OpaquePart(part))
        else:
            raise InvalidRequest(f"{at}: content parts of type {clip(kind)} are not allowed in "
                                 f"{role} messages", param=f"{at}.type")
    return parts


def _tool_call(call: Any, where: str) -> ToolCall:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(call.get("id"), str):
        raise InvalidRequest(f"{where} must have an id and a function", param=where)
    if not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
        raise InvalidRequest(f"{where}.function needs a name and arguments (a JSON string)",
                             param=f"{where}.function")
    return ToolCall(call["id"], fn["name"], fn["arguments"])


def _tool(tool: Any, where: str) -> ToolSpec:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise InvalidRequest(f"{where}: only tools of type 'function' are supported",
                             param=f"{where}.type")
    fn = tool.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidRequest(f"Missing required parameter: '{where}.function.name'.",
                             param=f"{where}.function.name")
    if not TOOL_NAME.match(fn["name"]):
        raise InvalidRequest(f"{where}.function.name must match {TOOL_NAME.pattern}",
                             param=f"{where}.function.name")
    parameters = _opt(fn, "parameters", dict, f"{where}.function")
    if parameters is not None:
        check_schema(parameters, f"{where}.function.parameters")
    return ToolSpec(fn["name"], _opt(fn, "description", str, f"{where}.function"),
                    parameters, _opt(fn, "strict", bool, f"{where}.function"))


def _tool_choice(raw: Any, tools: list[ToolSpec]) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        choice = ToolChoice(raw)
    elif isinstance(raw, dict) and raw.get("type") == "function" and isinstance(
            (raw.get("function") or {}).get("name"), str):
        choice = ToolChoice("function", raw["function"]["name"])
        if choice.name not in {t.name for t in tools}:
            raise InvalidRequest(f"tool_choice names {clip(choice.name)}, which is not in tools",
                                 param="tool_choice")
    else:
        raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or "
                             '{"type": "function", "function": {"name": ...}}',
                             param="tool_choice")
    if not tools and choice.mode != "none":
        raise InvalidRequest("tool_choice is only allowed when tools are specified",
                             param="tool_choice")
    return choice


def _response_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind == "json_schema":
        spec = raw.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidRequest("response_format.json_schema needs a name and a schema",
                                 param="response_format.json_schema")
        schema = _opt(spec, "schema", dict, "response_format.json_schema") or {}
        check_schema(schema, "response_format.json_schema.schema")
        return ResponseFormat("json_schema", schema, spec["name"],
                              _opt(spec, "description", str, "response_format.json_schema"),
                              _opt(spec, "strict", bool, "response_format.json_schema"))
    raise InvalidRequest("response_format.type must be 'text', 'json_object' or 'json_schema'",
                         param="response_format.type")


def _opt(body: Json, key: str, kind: type[T], where: str = "") -> T | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        name = f"{where}.{key}" if where else key
        raise InvalidRequest(f"Invalid type for '{name}': expected {_KINDS[kind]}.", param=name)
    return value


_KINDS: dict[type, str] = {bool: "a boolean", int: "an integer", str: "a string",
                           dict: "an object", list: "an array"}



# == rendering a request for an upstream ==================================================


def render_request(r: Request, max_tokens_field: str = "max_tokens") -> Json:
    """The wire body for an OpenAI-compatible upstream (``model`` set by the backend).

    The length limit goes in ``max_tokens_field``: ``max_tokens`` is what most servers
    read; OpenAI's reasoning models want ``max_completion_tokens``.
    """
    body: Json = {**(r.extra if r.protocol == "openai" else {}), "model": r.model}
    if r.operation is Operation.EMBEDDING:
        body["input"] = r.inputs
        _put(body, "encoding_format", r.encoding_format)
        _put(body, "dimensions", r.dimensions)
        _put(body, "user", r.user)
        return body
    if r.operation is Operation.CHAT:
        messages = [{"role": "system", "content": r.instructions}] if r.instructions else []
        rendered = [m for t in r.turns for m in _render_turn(t, r.protocol == "openai")]
        # A turn of only parts this protocol cannot carry (another's reasoning items) is left out.
        body["messages"] = messages + [m for m in rendered
                                       if m.get("content") not in ([], "") or m.get("tool_calls")
                                       or m.get("role") == "tool"]
        if r.tools:
            body["tools"] = [_render_tool(t) for t in r.tools]
        if r.tool_choice is not None:
            c = r.tool_choice
            body["tool_choice"] = ({"type": "function", "function": {"name": c.name}}
                                   if c.mode == "function" else c.mode)
        _put(body, "parallel_tool_calls", r.parallel_tool_calls)
        if r.response_format is not None:
            body["response_format"] = _render_format(r.response_format)
        if r.sampling.logprobs:
            body["logprobs"] = True
            _put(body, "top_logprobs", r.sampling.top_logprobs)
    elif "prompt" not in body:
        body["prompt"] = r.prompts[0] if len(r.prompts) == 1 else r.prompts
    if r.operation is Operation.COMPLETION and r.sampling.logprobs:
        body["logprobs"] = r.sampling.top_logprobs or 0
    s = r.sampling
    for name, value in ((max_tokens_field, s.max_tokens), ("temperature", s.temperature),
                        ("top_p", s.top_p), ("seed", s.seed),
                        ("presence_penalty", s.presence_penalty),
                        ("frequency_penalty", s.frequency_penalty),
                        ("stop", s.stop or None), ("n", s.n if s.n != 1 else None),
                        ("user", r.user), ("metadata", r.metadata)):
        _put(body, name, value)
    if r.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _put(body: Json, key: str, value: Any) -> None:
    if value is not None:
        body[key] = value


def _render_turn(turn: Turn, own_extra: bool) -> list[Json]:
    """One message, or for a tool result holding images two: OpenAI's tool messages carry
    text only, so the images follow in a user message that says where they came from."""
    message: Json = dict(turn.extra) if own_extra else {}
    if turn.role == "tool":
        result = next(p for p in turn.parts if isinstance(p, ToolResult))
        text = "".join(p.text for p in result.parts if isinstance(p, TextPart))
        if not result.call_id and result.name:
            message.update(role="function", name=result.name, content=text)
            return [message]
        message.update(role="tool", tool_call_id=result.call_id, content=text)
        if turn.name:
            message["name"] = turn.name
        images = [p for p in result.parts if isinstance(p, ImagePart)]
        if not images:
            return [message]
        return [message, {"role": "user", "content": _render_content(
            [TextPart(f"Images returned by tool call {result.call_id}:"), *images], flat=False)}]
    message["role"] = turn.role
    content = [p for p in turn.parts if not isinstance(p, ToolCall) and not (
        isinstance(p, OpaquePart) and p.data.get("type") not in PART_TYPES)]
    calls = turn.tool_calls
    message["content"] = _render_content(content, flat=turn.role != "user") if content or \
        not calls else None
    if turn.name:
        message["name"] = turn.name
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
    return [message]


def _render_content(parts: list[Any], flat: bool) -> str | list[Json]:
    """A plain string when every part is text (every server reads that), else parts."""
    if all(isinstance(p, TextPart) for p in parts) and (flat or len(parts) <= 1):
        return "".join(p.text for p in parts)
    out: list[Json] = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            image = {"url": p.url} | ({"detail": p.detail} if p.detail else {})
            out.append({"type": "image_url", "image_url": image})
        elif isinstance(p, OpaquePart):  # only PART_TYPES reach here (_render_turn)
            out.append(p.data)
    return out


def _render_tool(tool: ToolSpec) -> Json:
    fn: Json = {"name": tool.name}
    _put(fn, "description", tool.description)
    _put(fn, "parameters", tool.parameters)
    _put(fn, "strict", tool.strict)
    return {"type": "function", "function": fn}


def _render_format(fmt: ResponseFormat) -> Json:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    spec: Json = {"name": fmt.name or "response", "schema": fmt.schema or {}}
    _put(spec, "description", fmt.description)
    _put(spec, "strict", fmt.strict)
    return {"type": "json_schema", "json_schema": spec}


# == parsing an upstream's answer =========================================================


def parse_response(operation: Operation, body: Json) -> Response:
    """An upstream's JSON answer as a canonical response; unknown fields are kept."""
    known = {"id", "object", "created", "model", "choices", "data", "usage"}
    response = Response(operation, str(body.get("model") or ""), str(body.get("id") or ""),
                        int(body.get("created") or time.time()),
                        usage=_usage(body.get("usage")),
                        extra={k: v for k, v in body.items() if k not in known})
    if operation is Operation.EMBEDDING:
        response.embeddings = [Embedding(int(d.get("index", i)), d.get("embedding"))
                               for i, d in enumerate(body.get("data") or [])]
        return response
    for i, raw in enumerate(body.get("choices") or []):
        if not isinstance(raw, dict):
            continue
        choice = Choice(int(raw.get("index", i)), finish_reason=raw.get("finish_reason"))
        message = raw.get("message")
        if isinstance(message, dict):
            choice.text = message.get("content")
            choice.refusal = message.get("refusal")
            choice.tool_calls = [_call(c) for c in message.get("tool_calls") or []
                                 if isinstance(c, dict)]
        else:
            choice.text = raw.get("text")
        choice.logprobs = _logprobs(raw.get("logprobs"))
        response.choices.append(choice)
    return response


def _call(raw: Json) -> ToolCall:
    fn = raw.get("function") or {}
    return ToolCall(str(raw.get("id") or ""), str(fn.get("name") or ""),
                    str(fn.get("arguments") or ""))


def parse_chunk(operation: Operation, raw: Json) -> Chunk:
    known = {"id", "object", "created", "model", "choices", "usage"}
    chunk = Chunk(operation, str(raw.get("model") or ""), str(raw.get("id") or ""),
                  int(raw.get("created") or 0), usage=_usage(raw.get("usage")),
                  extra={k: v for k, v in raw.items() if k not in known})
    for i, c in enumerate(raw.get("choices") or []):
        delta = c.get("delta")
        if isinstance(delta, dict):
            calls = [ToolCallDelta(int(t.get("index", n)), t.get("id"),
                                   (t.get("function") or {}).get("name"),
                                   (t.get("function") or {}).get("arguments") or "")
                     for n, t in enumerate(delta.get("tool_calls") or [])]
            piece = ChoiceDelta(int(c.get("index", i)), delta.get("role"), delta.get("content"),
                                calls, c.get("finish_reason"), refusal=delta.get("refusal"))
        else:
            piece = ChoiceDelta(int(c.get("index", i)), text=c.get("text"),
                                finish_reason=c.get("finish_reason"))
        piece.logprobs = _logprobs(c.get("logprobs"))
        chunk.choices.append(piece)
    return chunk


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    extra = {k: v for k, v in raw.items()
             if k not in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0),
                 extra)


def _logprobs(raw: Any) -> list[TokenLogprob] | None:
    if not isinstance(raw, dict):
        return None
    if isinstance(raw.get("content"), list):
        return [TokenLogprob(t["token"], float(t["logprob"]), t.get("bytes"),
                             [(x["token"], float(x["logprob"])) for x in t.get("top_logprobs")
                              or []])
                for t in raw["content"] if isinstance(t, dict)]
    tokens = raw.get("tokens")
    if isinstance(tokens, list):  # legacy completions shape
        values = raw.get("token_logprobs") or []
        tops = raw.get("top_logprobs") or []
        return [TokenLogprob(tok, float(values[i] if i < len(values) else 0.0), None,
                             list((tops[i] or {}).items()) if i < len(tops) else [])
                for i, tok in enumerate(tokens)]
    return None


# == rendering an answer for a client =====================================================


def render_response(r: Response) -> Json:
    if r.operation is Operation.EMBEDDING:
        return {"object": "list",
                "data": [{"object": "embedding", "index": e.index, "embedding": e.vector}
                         for e in r.embeddings],
                "model": r.model, **r.extra, "usage": _render_usage(r.usage, chat=False)}
    chat = r.operation is Operation.CHAT
    body: Json = {"id": r.id, "object": "chat.completion" if chat else "text_completion",
                  "created": r.created, "model": r.model,
                  "choices": [(_chat_choice if chat else _text_choice)(c) for c in r.choices]}
    body.update(r.extra)
    if r.usage is not None:
        body["usage"] = _render_usage(r.usage)
    return body


def _chat_choice(c: Choice) -> Json:
    message: Json = {"role": "assistant", "content": c.text, "refusal": c.refusal}
    if c.tool_calls:
        message["tool_calls"] = [
            {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
            for t in c.tool_calls]
    return {"index": c.index, "message": message,
            "logprobs": _render_logprobs(c.logprobs, chat=True),
            "finish_reason": c.finish_reason}


def _text_choice(c: Choice) -> Json:
    return {"index": c.index, "text": c.text or "",
            "logprobs": _render_logprobs(c.logprobs, chat=False),
            "finish_reason": c.finish_reason}


def render_chunk(c: Chunk) -> Json:
    chat = c.operation is Operation.CHAT
    body: Json = {"id": c.id, "object": "chat.completion.chunk" if chat else "text_completion",
                  "created": c.created, "model": c.model,
                  "choices": [(_chat_delta if chat else _text_delta)(d) for d in c.choices]}
    body.update(c.extra)
    if c.usage is not None:
        body["usage"] = _render_usage(c.usage)
    return body


def _chat_delta(d: ChoiceDelta) -> Json:
    delta: Json = {}
    if d.role is not None:
        delta["role"] = d.role
    if d.text is not None:
        delta["content"] = d.text
    if d.refusal is not None:
        delta["refusal"] = d.refusal
    if d.tool_calls:
        delta["tool_calls"] = [_render_call_delta(t) for t in d.tool_calls]
    return {"index": d.index, "delta": delta,
            "logprobs": _render_logprobs(d.logprobs, chat=True),
            "finish_reason": d.finish_reason}


def _render_call_delta(t: ToolCallDelta) -> Json:
    out: Json = {"index": t.index}
    fn: Json = {"arguments": t.arguments}
    if t.id is not None:
        out.update(id=t.id, type="function")
    if t.name is not None:
        fn["name"] = t.name
    out["function"] = fn
    return out


def _text_delta(d: ChoiceDelta) -> Json:
    return {"index": d.index, "text": d.text or "",
            "logprobs": _render_logprobs(d.logprobs, chat=False),
            "finish_reason": d.finish_reason}


def _render_usage(u: Usage | None, chat: bool = True) -> Json:
    u = u or Usage()
    if not chat:
        return {"prompt_tokens": u.prompt_tokens, "total_tokens": u.total_tokens}
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens, **u.extra}


def _render_logprobs(tokens: list[TokenLogprob] | None, chat: bool) -> Json | None:
    if tokens is None:
        return None
    if chat:
        return {"content": [
            {"token": t.token, "logprob": t.logprob, "bytes": t.bytes or list(t.token.encode()),
             "top_logprobs": [{"token": s, "logprob": v, "bytes": list(s.encode())}
                              for s, v in t.top]}
            for t in tokens], "refusal": None}
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t.token)
    return {"tokens": [t.token for t in tokens],
            "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [dict(t.top) for t in tokens],
            "text_offset": offsets}

