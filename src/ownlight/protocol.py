"""The OpenAI request shapes Ownlight accepts, checked before anything else runs.

Validation only says yes or no (with a message naming the field); the client's own
body is what travels on, so fields Ownlight does not know still reach upstreams
that do.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ownlight.backends.base import Json, Operation
from ownlight.errors import InvalidRequest

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Message(_Strict):
    role: Role
    content: str | list[dict[str, Any]] | None = None


class _Sampling(_Strict):
    model: str = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    stream_options: dict[str, Any] | None = None
    user: str | None = None


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str]


class EmbeddingRequest(_Strict):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


SCHEMAS: dict[Operation, type[BaseModel]] = {
    Operation.CHAT: ChatRequest,
    Operation.COMPLETION: CompletionRequest,
    Operation.EMBEDDING: EmbeddingRequest,
}


def validate_body(operation: Operation, body: Any) -> Json:
    """Return the body if it is a valid request, else raise a 400 that names the field."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        SCHEMAS[operation].model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc), param=_param(exc)) from None
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > 4:
        raise InvalidRequest("stop may hold at most 4 sequences", param="stop")
    return body


def _param(exc: ValidationError) -> str | None:
    errors = exc.errors()
    if not errors:
        return None
    parts = [str(p) for p in errors[0]["loc"] if not str(p).startswith(("str", "list", "int"))]
    return ".".join(parts) or None


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    param = _param(exc)
    if error["type"] == "missing":
        return f"Missing required parameter: '{param}'."
    if param == "n":
        return "n must be 1: Ownlight returns one choice per request."
    return f"Invalid value for '{param}': {error['msg']}."
