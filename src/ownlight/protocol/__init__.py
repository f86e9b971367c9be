"""The canonical request/response model, the slot enumerator and the wire mappings."""

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
)
from ownlight.protocol.slots import Slot, SlotKind, estimate_tokens, last_user_text, text_slots

__all__ = [
    "Choice", "ChoiceDelta", "Chunk", "Embedding", "ImagePart", "Json", "OpaquePart",
    "Operation", "Part", "Request", "Response", "ResponseFormat", "Sampling", "Slot",
    "SlotKind", "TextPart", "TokenLogprob", "ToolCall", "ToolCallDelta", "ToolChoice",
    "ToolResult", "ToolSpec", "Turn", "Usage", "estimate_tokens", "last_user_text",
    "text_slots",
]
