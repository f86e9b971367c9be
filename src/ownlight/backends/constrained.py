"""What the embedded model must produce, and the llama.cpp grammar that guarantees it.

A small local model cannot be trusted to follow "answer in JSON" or "call this tool";
a grammar can. From the canonical request this module builds a ``DecodingPlan``:

* ``response_format`` ``json_schema`` -> a grammar compiled from the schema (objects
  closed to undeclared keys); ``json_object`` -> llama.cpp's generic JSON grammar;
* ``tool_choice`` naming a function -> a grammar of that function's arguments;
* ``required`` -> ``{"name": <one of the tools>, "arguments": <its schema>}``;
* ``auto`` -> the model chooses: its answer is either plain text (which may not start
  with ``<``) or ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``, the tool
  call shape it was shown in its instructions. Whichever it starts, the grammar keeps
  a call valid to the end.

``parse_output`` turns the decoded text back into text or tool calls.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ownlight.protocol.model import Request, ToolCall, ToolSpec
from ownlight.protocol.schema import closed, validate_instance

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
ANY_OBJECT: dict[str, Any] = {"type": "object"}

Mode = Literal["text", "json", "tool", "any_tool", "auto"]


@dataclass(frozen=True)
class DecodingPlan:
    mode: Mode
    grammar: str | None = None  # GBNF source
    tool: str | None = None  # the named tool, for mode "tool"
    #: What the answer must satisfy: tool name -> its parameters, "" -> the answer itself.
    schemas: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def constrained(self) -> bool:
        """The whole answer is JSON: the chat template's stop strings must not cut it."""
        return self.mode in ("json", "tool", "any_tool")


def plan(request: Request) -> DecodingPlan:
    choice = request.tool_choice
    if request.tools_active:
        schemas = {t.name: t.parameters or ANY_OBJECT for t in request.tools}
        if choice is not None and choice.mode == "function":
            tool = next(t for t in request.tools if t.name == choice.name)
            return DecodingPlan("tool", _gbnf(_parameters(tool)), tool.name, schemas)
        if choice is not None and choice.mode == "required":
            return DecodingPlan("any_tool", _gbnf(_call_schema(request.tools)), None, schemas)
        return DecodingPlan("auto", _auto_grammar(request.tools), None, schemas)
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.schema:
        return DecodingPlan("json", _gbnf(closed(fmt.schema)), None, {"": fmt.schema})
    if fmt is not None and fmt.is_json:
        from llama_cpp.llama_grammar import JSON_GBNF

        return DecodingPlan("json", JSON_GBNF)
    return DecodingPlan("text")


def _parameters(tool: ToolSpec) -> dict[str, Any]:
    return closed(tool.parameters) if tool.parameters else ANY_OBJECT


def _call_schema(tools: list[ToolSpec]) -> dict[str, Any]:
    options = [{"type": "object",
                "properties": {"name": {"const": t.name}, "arguments": _parameters(t)},
                "required": ["name", "arguments"], "additionalProperties": False}
               for t in tools]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _gbnf(schema: dict[str, Any]) -> str:
    """The grammar for a schema. llama-cpp-python's converter lets raw control characters
    (a newline) into strings, which JSON forbids; its ``char`` rule is tightened here as
    llama.cpp's own converter has it."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    grammar = str(json_schema_to_gbnf(orjson.dumps(schema).decode()))
    return grammar.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x7F\\x00-\\x1F]', 1)


def _auto_grammar(tools: list[ToolSpec]) -> str:
    call = _gbnf(_call_schema(tools)).replace("root ::=", "call-json ::=", 1)
    return (
        f'root ::= " "? "{CALL_OPEN}" call-json "{CALL_CLOSE}" | free-text\n'
        'free-text ::= [^<] [^\\x00]*\n' + call
    )


def parse_output(plan: DecodingPlan, text: str) -> tuple[str | None, list[ToolCall]]:
    """(content, tool calls) of a finished answer decoded under ``plan``."""
    if plan.mode == "tool":
        return None, [ToolCall(call_id(), plan.tool or "", text.strip())]
    if plan.mode == "any_tool":
        return None, _calls_from_json(text)
    if plan.mode == "auto":
        stripped = text.strip()
        if stripped.startswith(CALL_OPEN):
            inner = stripped[len(CALL_OPEN):]
            inner = inner[: inner.rfind(CALL_CLOSE)] if CALL_CLOSE in inner else inner
            calls = _calls_from_json(inner)
            if calls:
                return None, calls
    return text, []


def violation(plan: DecodingPlan, content: str | None, calls: list[ToolCall]) -> str | None:
    """Why a finished answer breaks its schema, or None.

    The grammar enforces structure, types, enums and string lengths; a few keywords
    (numeric bounds beyond small integer ranges, patterns, formats) it cannot, so the
    answer is checked against the client's own schema as well.
    """
    if plan.mode in ("tool", "any_tool") and not calls:
        return "no complete tool call"
    try:
        for call in calls:
            problem = validate_instance(plan.schemas.get(call.name, ANY_OBJECT),
                                        orjson.loads(call.arguments))
            if problem:
                return f"{call.name}: {problem}"
        if "" in plan.schemas and content is not None:
            return validate_instance(plan.schemas[""], orjson.loads(content))
    except orjson.JSONDecodeError:
        return "not JSON"
    return None


def starts_tool_call(text_so_far: str) -> bool | None:
    """In ``auto`` mode: True once the answer is a tool call, False once it is text."""
    head = text_so_far.lstrip(" ")
    if not head:
        return None
    return head.startswith("<")


def _calls_from_json(text: str) -> list[ToolCall]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return []  # the answer was cut short (max_tokens): finish_reason says "length"
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return []
    arguments = orjson.dumps(value.get("arguments", {})).decode()
    return [ToolCall(call_id(), value["name"], arguments)]


def call_id() -> str:
    return "call_" + secrets.token_hex(12)
