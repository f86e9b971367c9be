"""The canonical request and response: one typed model for every wire protocol.

Front-ends translate a client's wire JSON (OpenAI Chat Completions and Completions, the
OpenAI Responses API, Anthropic Messages) into a ``Request``;
pipeline stages read and write only these types; backends render them into their
own wire format and hand back a ``Response`` or a stream of ``Chunk``s, which the
front-end renders for its client. docs/protocol.md maps every wire field to a field
here. Plain slotted dataclasses: they are built on every request, so they stay cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

Json = dict[str, Any]

#: Longest model name accepted: nothing longer is echoed in errors or kept in records.
MAX_MODEL_CHARS = 256


def checked_model(value: Any, param: str = "model") -> str:
    """The requested model name, or a 400 that does not echo it."""
    from ownlight.errors import InvalidRequest

    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    if len(value) > MAX_MODEL_CHARS:
        raise InvalidRequest(f"{param} may hold at most {MAX_MODEL_CHARS} characters.",
                             param=param)
    return value


class Operation(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"


# -- request parts ---------------------------------------------------------------------


@dataclass(slots=True)
class TextPart:
    """Text; ``extra`` keeps the block's other wire fields (Anthropic's ``cache_control``,
    ``citations``) for an upstream of the same protocol, after the shield has read them."""

    text: str
    extra: Json | None = None


@dataclass(slots=True)
class ImagePart:
    """An image by reference: an http(s) URL or a ``data:`` URL."""

    url: str
    detail: str | None = None


@dataclass(slots=True)
class ToolCall:
    """A model's request to call a tool; ``arguments`` is JSON text, as models write it."""

    id: str
    name: str
    arguments: str
    extra: Json | None = None  # the block's other wire fields (``cache_control``)


@dataclass(slots=True)
class ToolResult:
    """What a tool returned for one call, sent back to the model."""

    call_id: str
    parts: list[TextPart | ImagePart | OpaquePart]
    name: str | None = None  # the tool's name, where the wire protocol carries it
    extra: Json | None = None  # the block's other wire fields (``cache_control``, ``is_error``)


@dataclass(slots=True)
class OpaquePart:
    """A content part Ownlight does not model (audio, files...): kept as the client sent it.

    Its strings are still scanned by the privacy shield like every other slot.
    """

    data: Json


Part = TextPart | ImagePart | ToolCall | ToolResult | OpaquePart
Role = Literal["system", "developer", "user", "assistant", "tool"]


@dataclass(slots=True)
class Turn:
    """One message: who speaks, and typed parts in order.

    ``extra`` keeps per-message wire fields Ownlight does not model, so an upstream that
    understands them still gets them (after the privacy shield has read them).
    """

    role: Role
    parts: list[Part]
    name: str | None = None
    extra: Json = field(default_factory=dict)

    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [p for p in self.parts if isinstance(p, ToolCall)]


# -- request ---------------------------------------------------------------------------


@dataclass(slots=True)
class ToolSpec:
    """A function the model may call, with a JSON schema for its arguments."""

    name: str
    description: str | None = None
    parameters: Json | None = None
    strict: bool | None = None
    extra: Json | None = None  # other wire fields (``cache_control``, ``defer_loading``)


@dataclass(slots=True)
class ToolChoice:
    """``auto`` (the model decides), ``none``, ``required`` (some tool), ``function`` (named)."""

    mode: Literal["auto", "none", "required", "function"]
    name: str | None = None


@dataclass(slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"]
    schema: Json | None = None
    name: str | None = None
    description: str | None = None
    strict: bool | None = None

    @property
    def is_json(self) -> bool:
        return self.type != "text"


@dataclass(slots=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(slots=True)
class Request:
    """One request, whatever protocol it came in.

    ``turns`` serve chat; ``prompts`` serve text completion; ``inputs`` serve
    embeddings. ``instructions`` is system text that precedes every turn (the
    Responses API's ``instructions``, Anthropic's ``system``). ``extra`` holds top-level
    wire fields Ownlight does not model: passed to upstreams of the same protocol.
    """

    operation: Operation
    model: str
    turns: list[Turn] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    inputs: list[str] | list[list[int]] = field(default_factory=list)
    instructions: str | None = None
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    sampling: Sampling = field(default_factory=Sampling)
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    metadata: dict[str, str] | None = None
    encoding_format: str | None = None
    dimensions: int | None = None
    knowledge: Any = None  # Ownlight's own field: collections to ground the answer in
    extra: Json = field(default_factory=dict)
    #: The wire protocol it came in ("openai", "openai.responses", "anthropic"): ``extra``
    #: and ``Turn.extra`` only travel to an upstream that speaks the same one.
    protocol: str = "openai"
    #: Tools a provider runs itself (Responses ``web_search``, Anthropic server tools), as
    #: sent: they travel only to an upstream of the same protocol.
    hosted_tools: list[Json] = field(default_factory=list)
    #: Protocol betas the client asked for (``anthropic-beta``), forwarded with ``extra``.
    betas: list[str] = field(default_factory=list)
    #: What the front-end had to leave out for every backend (``x-ownlight-dropped``).
    dropped: list[str] = field(default_factory=list)
    #: Who asks (the API key's name), set by the gateway: a backend that queues requests
    #: itself takes turns between principals. Never sent upstream.
    principal: str | None = None

    @property
    def wants_json(self) -> bool:
        return self.response_format is not None and self.response_format.is_json

    @property
    def tools_active(self) -> bool:
        """Tools are offered and the model may (or must) call one."""
        return bool(self.tools) and (self.tool_choice is None or self.tool_choice.mode != "none")


# -- response --------------------------------------------------------------------------


@dataclass(slots=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int] | None = None
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: Json = field(default_factory=dict)  # e.g. cached-token details from an upstream

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Choice:
    index: int = 0
    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = "stop"
    logprobs: list[TokenLogprob] | None = None
    refusal: str | None = None


@dataclass(slots=True)
class Embedding:
    index: int
    vector: list[float] | str  # str: base64 of little-endian float32


@dataclass(slots=True)
class Response:
    """A whole answer. ``extra`` holds top-level fields to show the client (citations...)."""

    operation: Operation
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    choices: list[Choice] = field(default_factory=list)
    embeddings: list[Embedding] = field(default_factory=list)
    usage: Usage | None = None
    extra: Json = field(default_factory=dict)


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: ``id`` and ``name`` come once, arguments in pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class ChoiceDelta:
    index: int = 0
    role: str | None = None
    text: str | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    refusal: str | None = None


@dataclass(slots=True)
class Chunk:
    """One event of a streamed answer; a chunk with ``usage`` and no choices ends it."""

    operation: Operation
    model: str
    id: str = ""
    created: int = 0
    choices: list[ChoiceDelta] = field(default_factory=list)
    usage: Usage | None = None
    extra: Json = field(default_factory=dict)
