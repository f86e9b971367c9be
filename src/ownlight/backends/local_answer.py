"""Shaping the embedded model's generation pieces into a canonical answer or stream.

One ``LocalAnswer`` per request: ``n`` choices (and one per prompt for text
completion) are generated one after another. Under a tool plan the decoded text is
turned into tool calls: a named tool's arguments stream as argument deltas while they
are decoded; a call the model chose among several is sent whole once it is complete.

Response headers the backend has to add (``x-ownlight-max-tokens``) travel in the
``extra`` of the response or of a stream's first chunk; the pipeline takes them out.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ownlight.backends.constrained import (
    DecodingPlan,
    call_id,
    parse_output,
    starts_tool_call,
    violation,
)
from ownlight.protocol.model import (
    Choice,
    ChoiceDelta,
    Chunk,
    Operation,
    Response,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)


@dataclass(frozen=True)
class Piece:
    """One step of a generation, sent from the model's thread to the event loop."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None


Job = tuple[str, Any]  # (prompt, the backend's sampling settings)

# A whole answer that breaks its schema in a way the grammar could not prevent is
# decoded again, with another seed, this many times in all.
ATTEMPTS = 3
Generate = Callable[[str, Any], AsyncIterator[Piece]]


class LocalAnswer:
    def __init__(self, operation: Operation, model: str, plan: DecodingPlan,
                 headers: dict[str, str] | None = None):
        self.operation = operation
        self.headers = dict(headers or {})  # for the first chunk, or the response
        self.chat = operation is Operation.CHAT
        self.model = model
        self.plan = plan
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.usage = Usage()
        self._decode_again = False  # a streamed choice's held call broke its schema
        self._prompts_seen: set[str] = set()

    async def collect(self, jobs: Sequence[Job], generate: Generate) -> Response:
        choices = []
        for index, (prompt, sampling) in enumerate(jobs):
            for attempt in range(ATTEMPTS):
                choice = await self._generate_choice(index, prompt,
                                                     _reseeded(sampling, attempt), generate)
                if not self.plan.schemas or choice.finish_reason == "length" or violation(
                        self.plan, choice.text, choice.tool_calls) is None:
                    break
            choices.append(choice)
        return Response(self.operation, self.model, self.id, self.created, choices,
                        usage=self.usage, extra=self.headers)

    async def _generate_choice(self, index: int, prompt: str, sampling: Any,
                               generate: Generate) -> Choice:
        texts: list[str] = []
        logprobs: list[TokenLogprob] | None = None
        finish = "stop"
        async for piece in generate(prompt, sampling):
            self._count(prompt, piece)
            texts.append(piece.text)
            if piece.logprobs is not None:
                logprobs = (logprobs or []) + piece.logprobs
            if piece.finish_reason is not None:
                finish = piece.finish_reason
        return self._choice(index, "".join(texts), finish, logprobs)

    def _choice(self, index: int, text: str, finish: str,
                logprobs: list[TokenLogprob] | None) -> Choice:
        if not self.chat:
            return Choice(index, text, finish_reason=_finish(finish, False), logprobs=logprobs)
        content, calls = parse_output(self.plan, text.strip())
        return Choice(index, content, calls, _finish(finish, bool(calls)), logprobs)

    async def stream(self, jobs: Sequence[Job], generate: Generate) -> AsyncIterator[Chunk]:
        for index, (prompt, sampling) in enumerate(jobs):
            for attempt in range(ATTEMPTS):
                self._decode_again = False
                pieces = generate(prompt, _reseeded(sampling, attempt))
                try:
                    async for chunk in self._stream_choice(index, prompt, pieces, attempt):
                        yield chunk
                finally:
                    await pieces.aclose()  # type: ignore[attr-defined]
                if not self._decode_again:
                    break
        yield self._chunk([], self.usage)

    async def _stream_choice(self, index: int, prompt: str, pieces: AsyncIterator[Piece],
                             attempt: int = 0) -> AsyncIterator[Chunk]:
        mode = self.plan.mode if self.chat else "text"
        # Text streams as it comes, and so do a named tool's arguments; a call the model
        # picks among several is held until complete (``auto`` decides on its first
        # character whether the answer is text or a call). A held call that breaks its
        # schema was never sent: it is decoded again, as ``collect`` does.
        streaming: bool | None = {"any_tool": False, "auto": None}.get(mode, True)
        held: list[str] = []
        started = False
        async for piece in pieces:
            if piece.prompt_tokens is not None:
                self._count(prompt, piece)
                if self.chat and attempt == 0:
                    yield self._chunk([ChoiceDelta(index, role="assistant", text="")])
                if mode == "tool":
                    yield self._chunk([ChoiceDelta(index, tool_calls=[
                        ToolCallDelta(0, call_id(), self.plan.tool, "")])])
            text = piece.text
            if text and not streaming:
                held.append(text)
                text = ""
                if streaming is None:
                    decided = starts_tool_call("".join(held))
                    if decided is False:
                        streaming, text = True, "".join(held)
                        held.clear()
                    elif decided:
                        streaming = False
            if text and self.chat and not started:
                text = text.lstrip()
            if text:
                started = True
                yield self._chunk([self._text_delta(index, mode, text, piece.logprobs)])
            if piece.finish_reason is not None:
                self._count(prompt, piece)
                calls: list[ToolCall] = []
                if held:
                    content, calls = parse_output(self.plan, "".join(held).strip())
                    if calls and attempt + 1 < ATTEMPTS and violation(self.plan, None, calls):
                        self._decode_again = True
                        return
                    if calls:
                        yield self._chunk([ChoiceDelta(index, tool_calls=[
                            ToolCallDelta(i, c.id, c.name, c.arguments)
                            for i, c in enumerate(calls)])])
                    elif content:
                        yield self._chunk([ChoiceDelta(index, text=content.strip())])
                finish = _finish(piece.finish_reason, bool(calls) or mode == "tool")
                yield self._chunk([ChoiceDelta(index, finish_reason=finish)])

    def _text_delta(self, index: int, mode: str, text: str,
                    logprobs: list[TokenLogprob] | None) -> ChoiceDelta:
        if mode == "tool":
            return ChoiceDelta(index, tool_calls=[ToolCallDelta(0, arguments=text)])
        return ChoiceDelta(index, text=text, logprobs=logprobs)

    def _chunk(self, choices: list[ChoiceDelta], usage: Usage | None = None) -> Chunk:
        extra, self.headers = self.headers, {}  # the first chunk carries them
        return Chunk(self.operation, self.model, self.id, self.created, choices, usage, extra)

    def _count(self, prompt: str, piece: Piece) -> None:
        """Usage: a prompt shared by several choices is counted once, as OpenAI does."""
        if piece.prompt_tokens is not None and prompt not in self._prompts_seen:
            self._prompts_seen.add(prompt)
            self.usage.prompt_tokens += piece.prompt_tokens
        if piece.completion_tokens is not None:
            self.usage.completion_tokens += piece.completion_tokens


def _reseeded(sampling: Any, attempt: int) -> Any:
    """The same settings with another seed (and some temperature) for a retry."""
    if attempt == 0 or not dataclasses.is_dataclass(sampling):
        return sampling
    seed = (getattr(sampling, "seed", None) or 0) + 7919 * attempt
    temperature = max(float(getattr(sampling, "temperature", 0.7)), 0.7)
    return dataclasses.replace(sampling, seed=seed, temperature=temperature)  # type: ignore


def _finish(reason: str, tool_calls: bool) -> str:
    if reason == "length":
        return "length"
    return "tool_calls" if tool_calls else "stop"
