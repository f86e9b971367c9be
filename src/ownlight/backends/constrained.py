"""What the embedded model must produce, and the llama.cpp grammar that guarantees it.

A small local model cannot be trusted to follow "answer in JSON" or "call this tool";
a grammar can. From the canonical request this module builds a ``DecodingPlan``:

* ``response_format`` ``json_schema`` -> a grammar compiled from the schema (objects
  closed to undeclared keys); ``json_object`` -> llama.cpp's generic JSON grammar;
* ``tool_choice`` naming a function -> a grammar of that function's arguments;
* ``required`` -> ``{"name": <one of the tools>, "arguments": <its schema>}``;
* ``auto`` -> the model chooses: its answer is either plain text (which may not start
  with ``<``, nor with white space beyond one space) or
  ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``, the tool call shape it was
  shown in its instructions. Whichever it starts, the grammar keeps a call valid to the
  end.

No schema a client sends fails the request. The grammar is made from a copy of the
schema fit for llama-cpp-python's converter (``schema.for_grammar``: an untyped
property admits any value); where the converter or llama.cpp still cannot take it, that
tool's arguments are decoded as any JSON object (a response format as any JSON value).
Either way ``violation`` checks the answer against the client's own schema.

``parse_output`` turns the decoded text back into text or tool calls.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import orjson

from ownlight.protocol.model import Request, ToolCall, ToolSpec
from ownlight.protocol.schema import ANY_VALUE, for_grammar, validate_instance

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


def _any_grammar(_grammar: str) -> bool:
    return True


#: Whether llama.cpp compiles a grammar (the backend's check: it needs the vocabulary).
Compiles = Callable[[str], bool]


def plan(request: Request, compiles: Compiles = _any_grammar) -> DecodingPlan:
    """The plan for a request. Never fails on a valid schema: where a grammar cannot be
    made or compiled from one, a looser grammar serves and the answer is validated
    against the schema afterwards (``violation``)."""
    choice = request.tool_choice
    if request.tools_active:
        schemas = {t.name: t.parameters or ANY_OBJECT for t in request.tools}
        params = {t.name: _parameters(t, compiles) for t in request.tools}
        if choice is not None and choice.mode == "function":
            tool = next(t for t in request.tools if t.name == choice.name)
            return DecodingPlan("tool", _grammar(params[tool.name], compiles), tool.name,
                                schemas)
        if choice is not None and choice.mode == "required":
            grammar = _grammar(_call_schema(params), compiles) \
                or _grammar(_call_schema(dict.fromkeys(params, ANY_OBJECT)), compiles)
            return DecodingPlan("any_tool", grammar, None, schemas)
        grammar = _auto_grammar(params, compiles) \
            or _auto_grammar(dict.fromkeys(params, ANY_OBJECT), compiles)
        return DecodingPlan("auto", grammar, None, schemas)
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.schema:
        grammar = _grammar(for_grammar(fmt.schema), compiles) or _grammar(
            ANY_OBJECT if fmt.schema.get("type", "object") == "object" else ANY_VALUE,
            compiles)
        return DecodingPlan("json", grammar, None, {"": fmt.schema})
    if fmt is not None and fmt.is_json:
        from llama_cpp.llama_grammar import JSON_GBNF

        return DecodingPlan("json", JSON_GBNF)
    return DecodingPlan("text")


def _parameters(tool: ToolSpec, compiles: Compiles) -> dict[str, Any]:
    """The schema a tool's arguments are decoded under: the client's, made fit for a
    grammar; any JSON object where even that cannot become a grammar."""
    if not tool.parameters:
        return ANY_OBJECT
    schema = for_grammar({"type": "object", **tool.parameters})
    return schema if _grammar(schema, compiles) else ANY_OBJECT


def _call_schema(params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    options = [{"type": "object",
                "properties": {"name": {"const": name}, "arguments": schema},
                "required": ["name", "arguments"], "additionalProperties": False}
               for name, schema in params.items()]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _grammar(schema: dict[str, Any], compiles: Compiles) -> str | None:
    """The grammar for a schema, or None where it cannot be made or compiled."""
    grammar = _gbnf(orjson.dumps(schema))
    return grammar if grammar is not None and compiles(grammar) else None


@lru_cache(maxsize=256)
def _gbnf(schema: bytes) -> str | None:
    """The grammar for a schema (clients send the same tools on every turn: converted
    once), or None where llama-cpp-python's converter fails on it (it asserts on what
    it does not know). Its ``char`` rule lets raw control characters (a newline) into
    strings, which JSON forbids; it is tightened here as llama.cpp's own converter has
    it."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        grammar = str(json_schema_to_gbnf(schema.decode()))
    except Exception:  # AssertionError, ValueError, KeyError, RecursionError...
        return None
    return grammar.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x7F\\x00-\\x1F]', 1)


def _auto_grammar(params: dict[str, dict[str, Any]], compiles: Compiles) -> str | None:
    call = _gbnf(orjson.dumps(_call_schema(params)))
    if call is None:
        return None
    grammar = (
        f'root ::= " "? "{CALL_OPEN}" call-json "{CALL_CLOSE}" | free-text\n'
        # Text starts, after at most one space, with neither "<" nor more white space: a
        # model that began "\n<tool_call>" would otherwise write calls no grammar holds.
        'free-text ::= " "? [^<\\x00-\\x20] [^\\x00]*\n'
        + call.replace("root ::=", "call-json ::=", 1)
    )
    return grammar if compiles(grammar) else None


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
