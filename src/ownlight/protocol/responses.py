"""The OpenAI Responses API: wire JSON <-> canonical model (front-end side).

``input`` items become canonical turns (messages, ``function_call`` and
``function_call_output`` items), and a canonical answer becomes a ``response`` object
with ``output`` items, or the documented event stream (``response.created`` ...
``response.completed``, each with a ``sequence_number``). A stored response keeps its
input items and output (``output_to_items``): that is how ``previous_response_id``
continues a conversation and ``GET /v1/responses/{id}/input_items`` answers.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ownlight.errors import InvalidRequest, OwnlightError, clip
from ownlight.protocol.fields import bounded_number, optional_list
from ownlight.protocol.model import (
    Choice,
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
    ToolChoice,
    ToolResult,
    ToolSpec,
    Turn,
    Usage,
    checked_model,
)
from ownlight.protocol.openai import TOOL_NAME
from ownlight.protocol.schema import check_schema

#: A namespace's function ``spawn_agent`` in ``multi_agent_v1`` is offered to models as
#: ``multi_agent_v1__spawn_agent`` (a plain function name every backend accepts).
NAMESPACE_SEPARATOR = "__"
CUSTOM_INPUT_SCHEMA: Json = {"type": "object", "properties": {"input": {"type": "string"}},
                             "required": ["input"], "additionalProperties": False}
MODELLED = {"model", "input", "instructions", "tools", "tool_choice", "text",
            "max_output_tokens", "temperature", "top_p", "metadata", "stream", "store",
            "previous_response_id", "user", "parallel_tool_calls", "knowledge", "truncation",
            "include", "stream_options", "top_logprobs"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


@dataclass
class ResponsesCall:
    """What the front-end keeps beside the canonical request: storage and echo fields."""

    request: Request
    store: bool
    previous_response_id: str | None
    items: list[Json]  # this request's own input, as items
    echo: Json  # fields a response object repeats back
    #: canonical tool name -> how the client declared it: ``("custom", name)`` for a
    #: free-form tool, ``("namespace", name)`` for a function inside a namespace
    tool_kinds: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)

    def output_item(self, call_id: str, name: str, arguments: str, item_id: str,
                    status: str = "completed") -> Json:
        """A call as the client declared its tool: function, namespaced or custom."""
        return call_item(self.tool_kinds, call_id, name, arguments, item_id, status)


# == parsing ===========================================================================


def parse_call(body: Any) -> ResponsesCall:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = checked_model(body.get("model"))
    items = _input_items(body.get("input"))
    request = Request(Operation.CHAT, model, protocol="openai.responses")
    request.extra = {k: v for k, v in body.items() if k not in MODELLED}
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("instructions must be a string", param="instructions")
    request.instructions = instructions
    request.turns = items_to_turns(items)
    kinds = _tools(request, optional_list(body, "tools"))
    request.tool_choice = _tool_choice(body.get("tool_choice"), request.tools)
    parallel = body.get("parallel_tool_calls")
    request.parallel_tool_calls = parallel if isinstance(parallel, bool) else None
    request.response_format = _format((body.get("text") or {}).get("format")
                                      if isinstance(body.get("text"), dict) else None)
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool)
                                   or not isinstance(max_tokens, int) or max_tokens < 1):
        raise InvalidRequest("max_output_tokens must be a positive integer",
                             param="max_output_tokens")
    top = body.get("top_logprobs")
    request.sampling = Sampling(max_tokens=max_tokens,
                                temperature=bounded_number(body, "temperature", 0, 2),
                                top_p=bounded_number(body, "top_p", 0, 1),
                                logprobs=isinstance(top, int) and top > 0,
                                top_logprobs=top if isinstance(top, int) else None)
    request.stream = body.get("stream") is True
    request.include_usage = True
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(v, str)
                                                     for v in metadata.values()):
            raise InvalidRequest("metadata must map strings to strings", param="metadata")
        request.metadata = metadata
    user = body.get("user")
    request.user = user if isinstance(user, str) else None
    request.knowledge = body.get("knowledge")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise InvalidRequest("previous_response_id must be a string",
                             param="previous_response_id")
    echo = {k: body.get(k) for k in ("instructions", "metadata", "temperature", "top_p",
                                     "max_output_tokens", "tool_choice", "tools", "user")}
    echo["text"] = body.get("text") or {"format": {"type": "text"}}
    echo["parallel_tool_calls"] = parallel if isinstance(parallel, bool) else True
    return ResponsesCall(request, body.get("store", True) is not False, previous, items, echo,
                         kinds)


def _input_items(raw: Any) -> list[Json]:
    if isinstance(raw, str):
        return [{"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": raw}]}]
    if not isinstance(raw, list):
        raise InvalidRequest("input must be a string or a list of items", param="input")
    items = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRequest(f"input[{i}] must be an object", param=f"input[{i}]")
        item = dict(item)
        item.setdefault("type", "message")
        if item["type"] == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        items.append(item)
    items_to_turns(items)  # checks every item now, naming the bad one
    return items


def items_to_turns(items: list[Json]) -> list[Turn]:
    """Input items (this request's, or a stored conversation's) as canonical turns."""
    turns: list[Turn] = []
    for i, item in enumerate(items):
        at = f"input[{i}]"
        kind = item.get("type")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequest(f"{at}.role must be user, assistant, system or developer",
                                     param=f"{at}.role")
            content = item.get("content")
            if not isinstance(content, list):
                raise InvalidRequest(f"{at}.content must be a string or a list of parts",
                                     param=f"{at}.content")
            parts = [_part(p, f"{at}.content[{j}]") for j, p in enumerate(content)]
            turns.append(Turn(role, parts))
        elif kind in ("function_call", "custom_tool_call"):
            _add_call(turns, _call(item, kind, at))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            text = output if isinstance(output, str) else orjson.dumps(output).decode()
            turns.append(Turn("tool", [ToolResult(_str(item, "call_id", at),
                                                  [TextPart(text)])]))
        elif isinstance(kind, str):
            # reasoning, item_reference...: kept and scanned, riding on the turn before
            # (never a "user" turn of its own, which would hide the real question)
            if turns:
                turns[-1].parts.append(OpaquePart(item))
            else:
                turns.append(Turn("system", [OpaquePart(item)]))
        else:
            raise InvalidRequest(f"{at}.type is required", param=f"{at}.type")
    return turns


def _call(item: Json, kind: str, at: str) -> ToolCall:
    """A function call (perhaps in a namespace) or a free-form call, as a canonical call."""
    name = _str(item, "name", at)
    if kind == "custom_tool_call":
        arguments = orjson.dumps({"input": _str(item, "input", at)}).decode()
        return ToolCall(_str(item, "call_id", at), name, arguments)
    space = item.get("namespace")
    if isinstance(space, str) and space:
        name = f"{space}{NAMESPACE_SEPARATOR}{name}"
    return ToolCall(_str(item, "call_id", at), name, _str(item, "arguments", at))


def _add_call(turns: list[Turn], call: ToolCall) -> None:
    if turns and turns[-1].role == "assistant":
        turns[-1].parts.append(call)  # parallel calls share one assistant turn
    else:
        turns.append(Turn("assistant", [call]))


def _part(part: Any, at: str) -> Part:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        if not isinstance(part.get("text"), str):
            raise InvalidRequest(f"{at}.text must be a string", param=f"{at}.text")
        return TextPart(part["text"])
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        return ImagePart(part["image_url"], part.get("detail"))
    if isinstance(kind, str):
        return OpaquePart(part)
    raise InvalidRequest(f"{at} must be a content part with a type", param=at)


def _str(item: Json, key: str, at: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise InvalidRequest(f"{at}.{key} must be a string", param=f"{at}.{key}")
    return value


def _tools(request: Request, tools: list[Any]) -> dict[str, tuple[str, str, str | None]]:
    """``tools`` onto the request: functions as they are, a namespace's functions under
    ``NAMESPACE__NAME``, a free-form ``custom`` tool as a function of one string
    ``input``; hosted tools (``web_search``, ``file_search``, ``tool_search``...) are kept
    as sent for an upstream that runs them. Returns how each canonical name was declared.
    """
    kinds: dict[str, tuple[str, str, str | None]] = {}
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            request.tools.append(_function(tool, where))
        elif kind == "namespace":
            space = tool.get("name")
            if not isinstance(space, str) or not TOOL_NAME.match(space):
                raise InvalidRequest(f"{where}.name must match {TOOL_NAME.pattern}",
                                     param=f"{where}.name")
            for j, inner in enumerate(optional_list(tool, "tools")):
                spec = _function(inner, f"{where}.tools[{j}]")
                flat = f"{space}{NAMESPACE_SEPARATOR}{spec.name}"
                kinds[flat] = ("namespace", spec.name, space)
                spec.name = flat
                intro = tool.get("description")
                if isinstance(intro, str) and intro:
                    spec.description = f"{intro}\n\n{spec.description or ''}".strip()
                request.tools.append(spec)
        elif kind == "custom":
            spec = _custom(tool, where)
            kinds[spec.name] = ("custom", spec.name, None)
            request.tools.append(spec)
        elif isinstance(kind, str):
            request.hosted_tools.append(tool)
        else:
            raise InvalidRequest(f"{where}.type is required", param=f"{where}.type")
    return kinds


def _function(tool: Any, where: str) -> ToolSpec:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise InvalidRequest(f"{where}: a function tool is expected", param=f"{where}.type")
    name = tool.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise InvalidRequest(f"{where}.name must match {TOOL_NAME.pattern}",
                             param=f"{where}.name")
    parameters = tool.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise InvalidRequest(f"{where}.parameters must be an object",
                                 param=f"{where}.parameters")
        check_schema(parameters, f"{where}.parameters")
    description = tool.get("description")
    strict = tool.get("strict")
    return ToolSpec(name, description if isinstance(description, str) else None, parameters,
                    strict if isinstance(strict, bool) else None)


def _custom(tool: Json, where: str) -> ToolSpec:
    """A free-form tool (Codex's ``apply_patch``): its input is one string. A grammar it
    declares is shown to the model in the description, so any backend can follow it."""
    name = tool.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise InvalidRequest(f"{where}.name must match {TOOL_NAME.pattern}",
                             param=f"{where}.name")
    description = tool.get("description")
    text = description if isinstance(description, str) else ""
    fmt = tool.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(
            fmt.get("definition"), str):
        text += (f"\n\nThe input is free text in this {fmt.get('syntax', '')} grammar:\n"
                 + fmt["definition"])
    return ToolSpec(name, text.strip() or None, dict(CUSTOM_INPUT_SCHEMA))


def call_item(kinds: dict[str, tuple[str, str, str | None]], call_id: str, name: str,
              arguments: str, item_id: str, status: str = "completed") -> Json:
    """An output item for one tool call, in the shape of the tool the client declared."""
    kind, own_name, space = kinds.get(name, ("function", name, None))
    if kind == "custom":
        return {"type": "custom_tool_call", "id": item_id, "call_id": call_id,
                "name": own_name, "input": custom_input(arguments), "status": status}
    item: Json = {"type": "function_call", "id": item_id, "call_id": call_id,
                  "name": own_name, "arguments": arguments, "status": status}
    if space is not None:
        item["namespace"] = space
    return item


def custom_input(arguments: str) -> str:
    """The free-form input inside a call's ``{"input": ...}`` arguments."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return value["input"]
    return arguments


def _tool_choice(raw: Any, tools: list[ToolSpec]) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(raw)
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(
            raw.get("name"), str):
        if raw["name"] not in {t.name for t in tools}:
            raise InvalidRequest(f"tool_choice names {clip(raw['name'])}, which is not in tools",
                                 param="tool_choice")
        return ToolChoice("function", raw["name"])
    raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or "
                         '{"type": "function", "name": ...}', param="tool_choice")


def _format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind == "json_schema":
        schema = raw.get("schema")
        if not isinstance(schema, dict) or not isinstance(raw.get("name"), str):
            raise InvalidRequest("text.format needs a name and a schema", param="text.format")
        check_schema(schema, "text.format.schema")
        description, strict = raw.get("description"), raw.get("strict")
        if description is not None and not isinstance(description, str):
            raise InvalidRequest("text.format.description must be a string",
                                 param="text.format.description")
        if strict is not None and not isinstance(strict, bool):
            raise InvalidRequest("text.format.strict must be a boolean",
                                 param="text.format.strict")
        return ResponseFormat("json_schema", schema, raw["name"], description, strict)
    raise InvalidRequest("text.format.type must be text, json_object or json_schema",
                         param="text.format.type")




# == rendering ===========================================================================


def output_items(choice: Choice, call: ResponsesCall) -> list[Json]:
    """The ``output`` of a response: a message with its text, then tool calls."""
    items: list[Json] = []
    if choice.text:
        items.append(_message_item(new_id("msg"), choice.text, "completed"))
    for tool_call in choice.tool_calls:
        items.append(call.output_item(tool_call.id, tool_call.name, tool_call.arguments,
                                      new_id("fc")))
    return items


def _message_item(item_id: str, text: str, status: str) -> Json:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def response_object(response_id: str, model: str, created: float, status: str,
                    output: list[Json], usage: Usage | None, call: ResponsesCall,
                    finish: str | None = None, extra: Json | None = None) -> Json:
    incomplete = {"reason": "max_output_tokens"} if finish == "length" else None
    body: Json = {
        "id": response_id, "object": "response", "created_at": int(created),
        "status": "incomplete" if incomplete and status == "completed" else status,
        "error": None, "incomplete_details": incomplete, "model": model, "output": output,
        "previous_response_id": call.previous_response_id, "store": call.store,
        "reasoning": {"effort": None, "summary": None}, "truncation": "disabled",
        **call.echo,
        "tool_choice": call.echo.get("tool_choice") or "auto",
        "tools": call.echo.get("tools") or [],
        "usage": _usage(usage) if usage is not None else None,
    }
    body.update(extra or {})
    return body


def render_response(response: Response, call: ResponsesCall, response_id: str) -> Json:
    choice = response.choices[0] if response.choices else Choice(0, "")
    return response_object(response_id, response.model, response.created, "completed",
                           output_items(choice, call), response.usage, call,
                           choice.finish_reason,
                           response.extra)


def _usage(u: Usage) -> Json:
    return {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": u.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": u.total_tokens}


def output_to_items(output: list[Json]) -> list[Json]:
    """A response's output items as input items for the next turn."""
    items: list[Json] = []
    for item in output:
        if item.get("type") == "message":
            items.append({"type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": c.get("text", "")}
                                      for c in item.get("content") or []]})
        elif item.get("type") in ("function_call", "custom_tool_call"):
            items.append({k: v for k, v in item.items() if k not in ("id", "status")})
        elif item.get("type") == "mcp_call":  # a call Ownlight made: the model's history
            error = item.get("error")
            result = item.get("output") if error is None else \
                f"Error: {orjson.dumps(error).decode()}"
            name = f"{item.get('server_label')}{NAMESPACE_SEPARATOR}{item.get('name')}"
            items.append({"type": "function_call", "call_id": item.get("id"), "name": name,
                          "arguments": item.get("arguments") or "{}"})
            items.append({"type": "function_call_output", "call_id": item.get("id"),
                          "output": result or ""})
    return items


@dataclass
class EventWriter:
    """Canonical chunks as the Responses API's event stream (one writer per stream)."""

    call: ResponsesCall
    response_id: str
    model: str
    created: float = field(default_factory=time.time)
    sequence: int = 0
    output: list[Json] = field(default_factory=list)
    _text: Json | None = None  # the open message item
    _tools: dict[int, Json] = field(default_factory=dict)  # tool call index -> its item
    _arguments: dict[int, str] = field(default_factory=dict)  # tool call index -> its JSON
    _finish: str | None = None
    usage: Usage | None = None
    final: Json | None = None  # the completed response object, once written

    def start(self) -> Iterator[Json]:
        snapshot = self._object("in_progress", [])
        yield self._event("response.created", response=snapshot)
        yield self._event("response.in_progress", response=snapshot)

    def events(self, chunk: Chunk) -> Iterator[Json]:
        if chunk.usage is not None:
            self.usage = chunk.usage
        for delta in chunk.choices:
            if delta.index != 0:
                continue
            if delta.text:
                yield from self._text_delta(delta.text)
            for piece in delta.tool_calls:
                item = self._tools.get(piece.index)
                if item is None:
                    item = self.call.output_item(piece.id or new_id("call"), piece.name or "",
                                                 "", new_id("fc"), "in_progress")
                    self._tools[piece.index] = item
                    self._arguments[piece.index] = ""
                    yield from self._add(item)
                if piece.arguments:
                    self._arguments[piece.index] += piece.arguments
                    if item["type"] == "function_call":  # a free-form input comes whole
                        item["arguments"] += piece.arguments
                        yield self._event("response.function_call_arguments.delta",
                                          item_id=item["id"], output_index=self._index(item),
                                          delta=piece.arguments)
            if delta.finish_reason is not None:
                self._finish = delta.finish_reason

    def close(self, extra: Json | None = None) -> Iterator[Json]:
        if self._text is not None:
            text = self._text["content"][0]["text"]
            where = {"item_id": self._text["id"], "output_index": self._index(self._text),
                     "content_index": 0}
            yield self._event("response.output_text.done", **where, text=text)
            yield self._event("response.content_part.done", **where,
                              part=self._text["content"][0])
            self._text["status"] = "completed"
            yield self._event("response.output_item.done", output_index=where["output_index"],
                              item=self._text)
        for index, item in self._tools.items():
            where = {"item_id": item["id"], "output_index": self._index(item)}
            if item["type"] == "custom_tool_call":
                item["input"] = custom_input(self._arguments[index])
                yield self._event("response.custom_tool_call_input.done", **where,
                                  input=item["input"])
            else:
                yield self._event("response.function_call_arguments.done", **where,
                                  arguments=item["arguments"])
            item["status"] = "completed"
            yield self._event("response.output_item.done", output_index=self._index(item),
                              item=item)
        self.final = self._object("completed", self.output, extra)
        kind = "response.incomplete" if self.final["status"] == "incomplete" \
            else "response.completed"
        yield self._event(kind, response=self.final)

    def _text_delta(self, text: str) -> Iterator[Json]:
        if self._text is None:
            self._text = _message_item(new_id("msg"), "", "in_progress")
            part = self._text["content"][0]
            self._text["content"] = []
            yield from self._add(self._text)
            self._text["content"].append(part)
            yield self._event("response.content_part.added", item_id=self._text["id"],
                              output_index=self._index(self._text), content_index=0,
                              part={"type": "output_text", "text": "", "annotations": []})
        self._text["content"][0]["text"] += text
        yield self._event("response.output_text.delta", item_id=self._text["id"],
                          output_index=self._index(self._text), content_index=0, delta=text)

    def _add(self, item: Json) -> Iterator[Json]:
        self.output.append(item)
        yield self._event("response.output_item.added", output_index=len(self.output) - 1,
                          item=item)

    def _index(self, item: Json) -> int:
        return next(i for i, x in enumerate(self.output) if x is item)

    def _object(self, status: str, output: list[Json], extra: Json | None = None) -> Json:
        return response_object(self.response_id, self.model, self.created, status,
                               orjson.loads(orjson.dumps(output)), self.usage, self.call,
                               self._finish, extra)

    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return orjson.loads(orjson.dumps(event))  # a snapshot: items change afterwards


async def render_stream(chunks: AsyncIterator[Chunk], writer: EventWriter,
                        extra: Json | None = None) -> AsyncIterator[Json]:
    """The whole event stream; a failure after the start becomes ``response.failed``."""
    for event in writer.start():
        yield event
    try:
        async for chunk in chunks:
            if chunk.model:
                writer.model = chunk.model
            if chunk.extra.get("citations"):
                extra = {**(extra or {}), "citations": chunk.extra["citations"]}
            for event in writer.events(chunk):
                yield event
    except OwnlightError as exc:
        failed = writer._object("failed", writer.output)
        failed["error"] = {"code": exc.code, "message": exc.message}
        yield writer._event("response.failed", response=failed)
        return
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    for event in writer.close(extra):
        yield event
