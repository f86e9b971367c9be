"""The one place that knows where text lives in a request.

``text_slots`` enumerates every text-bearing slot of a canonical ``Request``: turn
text, tool-call arguments (each string in their JSON), tool results, tool names,
descriptions and schemas, hosted tools, participant names, instructions (and the text of
system and developer turns), image URLs, stop strings, ``user``, ``metadata``, the
``extra`` wire fields of blocks and tools, and every string of fields Ownlight does not
model. The privacy
shield, the router, the token estimate and the injection guard all read this list, so
a new protocol or part type is covered everywhere by extending this module alone.

A slot's ``path`` leads from the request to the string: attribute names and list
indexes, dict keys, and ``JSON`` where a string holds JSON text (tool-call arguments)
whose own strings are slots. ``replace_slots`` writes new texts back into a copy.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from ownlight.protocol.model import (
    ImagePart,
    OpaquePart,
    Operation,
    Request,
    TextPart,
    ToolCall,
    ToolResult,
    Turn,
)

JSON = "<json>"  # path marker: the string here is JSON text; the rest of the path is inside it
KEY = "<key>"  # path marker: the slot is the key that follows, not its value

# Long opaque blobs (base64 images, audio) hold no text a recognizer could read. No
# whitespace: a long list of numbers separated by newlines is text, and is scanned.
_BLOB = re.compile(r"[A-Za-z0-9+/=]{1024,}")


class SlotKind(StrEnum):
    TEXT = "text"  # message text, completion prompt, embedding input
    INSTRUCTIONS = "instructions"
    TOOL_ARGUMENTS = "tool_arguments"
    TOOL_RESULT = "tool_result"
    TOOL_NAME = "tool_name"  # an identifier: a placeholder must stay an identifier
    TOOL_DESCRIPTION = "tool_description"
    SCHEMA = "schema"  # strings inside a tool's or response format's JSON schema
    NAME = "name"  # a participant's name, also an identifier
    URL = "url"
    STOP = "stop"
    USER = "user"
    METADATA = "metadata"
    EXTRA = "extra"  # fields Ownlight does not model
    KEY = "key"  # a key of a client's map (arguments, metadata, extra): scanned, never rewritten

    @property
    def identifier(self) -> bool:
        return self in (SlotKind.TOOL_NAME, SlotKind.NAME)


Path = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Slot:
    kind: SlotKind
    path: Path
    text: str
    turn: int | None = None  # index of the turn it belongs to, for chat slots


def text_slots(request: Request) -> list[Slot]:
    """Every text-bearing slot of ``request``, in reading order."""
    return list(_slots(request))


def _slots(r: Request) -> Iterator[Slot]:
    if r.instructions:
        yield Slot(SlotKind.INSTRUCTIONS, ("instructions",), r.instructions)
    for t, turn in enumerate(r.turns):
        yield from _turn_slots(turn, ("turns", t), t)
    for i, prompt in enumerate(r.prompts):
        yield Slot(SlotKind.TEXT, ("prompts", i), prompt)
    if r.operation is Operation.EMBEDDING:
        for i, item in enumerate(r.inputs):
            if isinstance(item, str):
                yield Slot(SlotKind.TEXT, ("inputs", i), item)
    for i, tool in enumerate(r.tools):
        base = ("tools", i)
        yield Slot(SlotKind.TOOL_NAME, (*base, "name"), tool.name)
        if tool.description:
            yield Slot(SlotKind.TOOL_DESCRIPTION, (*base, "description"), tool.description)
        if tool.parameters:
            yield from _tree(tool.parameters, (*base, "parameters"), SlotKind.SCHEMA, None)
        if tool.extra:
            yield from _tree(tool.extra, (*base, "extra"), SlotKind.EXTRA, None)
    for i, hosted in enumerate(r.hosted_tools):
        yield from _tree(hosted, ("hosted_tools", i), SlotKind.EXTRA, None)
    if r.tool_choice is not None and r.tool_choice.name:
        yield Slot(SlotKind.TOOL_NAME, ("tool_choice", "name"), r.tool_choice.name)
    fmt = r.response_format
    if fmt is not None:
        if isinstance(fmt.description, str) and fmt.description:
            yield Slot(SlotKind.TOOL_DESCRIPTION, ("response_format", "description"),
                       fmt.description)
        if fmt.schema:
            yield from _tree(fmt.schema, ("response_format", "schema"), SlotKind.SCHEMA, None)
    for i, stop in enumerate(r.sampling.stop):
        yield Slot(SlotKind.STOP, ("sampling", "stop", i), stop)
    if r.user:
        yield Slot(SlotKind.USER, ("user",), r.user)
    if r.metadata:
        yield from _tree(r.metadata, ("metadata",), SlotKind.METADATA, None)
    if r.extra:
        yield from _tree(r.extra, ("extra",), SlotKind.EXTRA, None)


def _turn_slots(turn: Turn, base: Path, t: int) -> Iterator[Slot]:
    if turn.name:
        yield Slot(SlotKind.NAME, (*base, "name"), turn.name, t)
    # The client's own system and developer text is instructions, wherever it stands.
    text_kind = SlotKind.INSTRUCTIONS if turn.role in ("system", "developer") else SlotKind.TEXT
    for p, part in enumerate(turn.parts):
        where = (*base, "parts", p)
        if isinstance(part, TextPart):
            yield Slot(text_kind, (*where, "text"), part.text, t)
            if part.extra:
                yield from _tree(part.extra, (*where, "extra"), SlotKind.EXTRA, t)
        elif isinstance(part, ImagePart):
            if not part.url.startswith("data:"):
                yield Slot(SlotKind.URL, (*where, "url"), part.url, t)
        elif isinstance(part, ToolCall):
            yield Slot(SlotKind.TOOL_NAME, (*where, "name"), part.name, t)
            yield from _arguments(part.arguments, (*where, "arguments"), t)
            if part.extra:
                yield from _tree(part.extra, (*where, "extra"), SlotKind.EXTRA, t)
        elif isinstance(part, ToolResult):
            if part.extra:
                yield from _tree(part.extra, (*where, "extra"), SlotKind.EXTRA, t)
            if part.name:
                yield Slot(SlotKind.TOOL_NAME, (*where, "name"), part.name, t)
            for q, inner in enumerate(part.parts):
                if isinstance(inner, TextPart):
                    yield Slot(SlotKind.TOOL_RESULT, (*where, "parts", q, "text"), inner.text, t)
                elif isinstance(inner, ImagePart) and not inner.url.startswith("data:"):
                    yield Slot(SlotKind.URL, (*where, "parts", q, "url"), inner.url, t)
                elif isinstance(inner, OpaquePart):
                    yield from _tree(inner.data, (*where, "parts", q, "data"),
                                     SlotKind.TOOL_RESULT, t)
        elif isinstance(part, OpaquePart):
            yield from _tree(part.data, (*where, "data"), SlotKind.EXTRA, t)
    if turn.extra:
        yield from _tree(turn.extra, (*base, "extra"), SlotKind.EXTRA, t)


def _arguments(arguments: str, path: Path, t: int) -> Iterator[Slot]:
    """Each string (and integer) in a tool call's JSON arguments is a slot of its own.

    Arguments that are not JSON (a model may write anything) are one text slot.
    """
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        if arguments.strip():
            yield Slot(SlotKind.TOOL_ARGUMENTS, path, arguments, t)
        return
    yield from _tree(value, (*path, JSON), SlotKind.TOOL_ARGUMENTS, t, numbers=True)


def _tree(value: Any, path: Path, kind: SlotKind, t: int | None,
          numbers: bool = False) -> Iterator[Slot]:
    """The strings in a JSON-like value (dict values, list items), depth first."""
    if isinstance(value, str):
        if value.strip() and not (len(value) >= 1024 and _BLOB.fullmatch(value)):
            yield Slot(kind, path, value, t)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and len(key) > 3:
                yield Slot(SlotKind.KEY, (*path, KEY, key), key, t)
            yield from _tree(item, (*path, key), kind, t, numbers)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for i, item in enumerate(value):
            yield from _tree(item, (*path, i), kind, t, numbers)
    elif numbers and isinstance(value, int) and not isinstance(value, bool) and value > 99999:
        # Card and account numbers sent as JSON numbers: replaced, they become strings.
        yield Slot(kind, path, str(value), t)


# -- writing back ----------------------------------------------------------------------


def replace_slots(request: Request, replacements: Mapping[Path, str]) -> Request:
    """A deep copy of ``request`` with the strings at the given paths replaced."""
    out = copy.deepcopy(request)
    json_edits: dict[Path, list[tuple[Path, str]]] = {}
    for path, text in replacements.items():
        if JSON in path:
            cut = path.index(JSON)
            json_edits.setdefault(path[:cut], []).append((path[cut + 1 :], text))
        else:
            _set(out, path, text)
    for holder, edits in json_edits.items():
        value = orjson.loads(_get(out, holder))
        for inner, text in edits:
            if inner:
                _set(value, inner, text)
            else:
                value = text
        _set(out, holder, orjson.dumps(value).decode())
    return out


def _get(node: Any, path: Path) -> Any:
    for step in path:
        node = node[step] if isinstance(node, dict | list) else getattr(node, step)
    return node


def _set(root: Any, path: Path, value: Any) -> None:
    node = _get(root, path[:-1])
    last = path[-1]
    if isinstance(node, dict | list):
        node[last] = value
    else:
        setattr(node, last, value)


# -- what the router and the token estimate read ---------------------------------------


def last_user_text(request: Request) -> str:
    """The text the complexity scorer and the knowledge search read: the newest question."""
    if request.operation is Operation.CHAT:
        for t in range(len(request.turns) - 1, -1, -1):
            if request.turns[t].role == "user":
                return " ".join(
                    s.text for s in _turn_slots(request.turns[t], ("turns", t), t)
                    if s.kind is SlotKind.TEXT
                )
        return ""
    return " ".join(s.text for s in text_slots(request) if s.kind is SlotKind.TEXT)


def estimate_tokens(request: Request, slots: Sequence[Slot] | None = None) -> int:
    """About four bytes of UTF-8 per token over every slot (tools cost tokens too)."""
    slots = text_slots(request) if slots is None else slots
    size = sum(len(s.text.encode()) for s in slots)
    return (size + 3) // 4
