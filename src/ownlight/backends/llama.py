"""Embedded llama.cpp: a GGUF model in this process, no network at all.

llama.cpp is not thread-safe and holds the GIL only briefly, so one dedicated worker
thread owns the model and runs one generation at a time; the event loop never
blocks on it. Requests wait in that thread's FIFO queue, so they are served in
arrival order, and a bounded queue turns overload into a clear 503. Tokens travel
back to the loop one by one; when the client goes away, the consumer closes the
stream and a flag stops generation at the next token.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ownlight.backends.base import Backend, BackendCall, BackendResult, Json, Operation
from ownlight.backends.templates import resolve_template
from ownlight.errors import ContextLengthExceeded, InvalidRequest, UpstreamUnavailable
from ownlight.models.files import Progress, resolve_model_path

DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None


@dataclass(frozen=True)
class Piece:
    """One step of a generation, sent from the worker thread to the event loop."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


class _End:
    pass


_END = _End()


class LlamaBackend(Backend):
    kind = "llama"
    operations = frozenset({Operation.CHAT, Operation.COMPLETION})

    def __init__(self, entry: Any, config: Any):
        super().__init__(entry, config)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._llm: Any = None
        self._load: asyncio.Task[None] | None = None
        self._waiting = 0
        self._queue_limit = int(config.get("local.queue_limit"))
        self.template = resolve_template(entry.chat_template, entry.extra.get("stop", ()))
        self.path: Path | None = None

    @property
    def model_name(self) -> str:
        if self.entry.model:
            return self.entry.model
        return self.path.stem if self.path else self.entry.alias

    @property
    def ready(self) -> bool:
        return self._llm is not None

    @property
    def n_ctx(self) -> int:
        return self.entry.n_ctx

    async def start(self) -> None:
        if self._load is None:
            self._load = asyncio.create_task(self._load_model())
        await self._load

    def prepare(self, progress: Progress | None = None) -> None:
        """Find (and, for a packaged model, assemble) the GGUF file. Blocking."""
        spec = self.entry.path or ""
        self.path = resolve_model_path(spec, self.config.data_dir, self.entry.sha256, progress)

    async def _load_model(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load_blocking)

    def _load_blocking(self) -> None:
        from llama_cpp import Llama  # heavy import, only where a model is really loaded

        if self.path is None:
            self.prepare()
        threads = int(self.config.get("local.threads")) or os.cpu_count() or 2
        self._llm = Llama(
            model_path=str(self.path),
            n_ctx=self.entry.n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def execute(self, call: BackendCall) -> BackendResult:
        if call.operation not in self.operations:
            raise InvalidRequest(f"model {self.entry.alias!r} does not serve {call.operation}")
        await self._ensure_loaded()
        payload = call.payload
        if call.operation is Operation.CHAT:
            prompt = self.template.render(payload["messages"])
            extra_stop = self.template.stop
        else:
            prompt = _prompt_text(payload.get("prompt"))
            extra_stop = ()
        sampling = _sampling(payload, extra_stop)
        pieces = self._generate(prompt, sampling)
        shape = _ChatShape if call.operation is Operation.CHAT else _CompletionShape
        if call.stream:
            return shape(self.model_name).stream(pieces)
        return await shape(self.model_name).collect(pieces)

    async def _ensure_loaded(self) -> None:
        if self._llm is not None:
            return
        if self._load is None:
            raise UpstreamUnavailable(f"model {self.entry.alias!r} is not loaded")
        try:
            await asyncio.shield(self._load)
        except Exception as exc:
            raise UpstreamUnavailable(f"model {self.entry.alias!r} failed to load: {exc}") from exc

    async def _generate(self, prompt: str, sampling: Sampling) -> AsyncIterator[Piece]:
        """Queue one generation on the model's thread and relay its pieces."""
        if self._waiting >= self._queue_limit:
            raise UpstreamUnavailable("the local model is busy; try again shortly")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Piece | BaseException | _End] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: Piece | BaseException | _End) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        self._waiting += 1
        job = loop.run_in_executor(self._executor, self._run, prompt, sampling, cancel, emit)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()
            self._waiting -= 1
            job.add_done_callback(lambda f: f.exception())

    def _run(
        self,
        prompt: str,
        sampling: Sampling,
        cancel: threading.Event,
        emit: Callable[[Piece | BaseException | _End], None],
    ) -> None:
        """Runs on the model's thread."""
        try:
            if not cancel.is_set():
                self._generate_blocking(prompt, sampling, cancel, emit)
        except BaseException as exc:  # handed to the event loop, raised there
            emit(exc)
        finally:
            emit(_END)

    def _generate_blocking(
        self,
        prompt: str,
        sampling: Sampling,
        cancel: threading.Event,
        emit: Callable[[Piece | BaseException | _End], None],
    ) -> None:
        llm = self._llm
        tokens = llm.tokenize(prompt.encode(), add_bos=not _has_bos(prompt), special=True)
        room = self.n_ctx - len(tokens)
        max_tokens = sampling.max_tokens
        if max_tokens is None:
            max_tokens = min(DEFAULT_MAX_TOKENS, room)
        if room <= 0 or max_tokens > room:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.n_ctx} tokens. However, you "
                f"requested {len(tokens) + max(max_tokens, 0)} tokens ({len(tokens)} in the "
                f"prompt, {max(max_tokens, 0)} for the completion). Please reduce the prompt "
                "or max_tokens.",
                param="messages",
            )
        emit(Piece(prompt_tokens=len(tokens)))
        if sampling.seed is not None:
            # A reused KV-cache prefix changes logits in the last bits, enough to change
            # what a seeded sampler picks; a fresh evaluation makes seeds repeatable.
            llm.reset()
        text_parts: list[str] = []
        finish: str | None = None
        stream = llm.create_completion(
            prompt=tokens,
            max_tokens=max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            stop=list(sampling.stop) or None,
            seed=sampling.seed,
            stream=True,
        )
        try:
            for chunk in stream:
                if cancel.is_set():
                    finish = "cancelled"
                    break
                choice = chunk["choices"][0]
                if choice.get("text"):
                    text_parts.append(choice["text"])
                    emit(Piece(text=choice["text"]))
                finish = choice.get("finish_reason") or finish
        finally:
            stream.close()
        generated = "".join(text_parts)
        count = 0
        if generated:
            count = len(llm.tokenize(generated.encode(), add_bos=False, special=True))
        emit(Piece(completion_tokens=count, finish_reason=finish or "stop"))


def _has_bos(prompt: str) -> bool:
    return prompt.startswith("<bos>")


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    raise InvalidRequest("prompt must be a string (or a list of one string)", param="prompt")


def _sampling(payload: Json, template_stop: tuple[str, ...]) -> Sampling:
    stop = payload.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    temperature = payload.get("temperature")
    top_p = payload.get("top_p")
    return Sampling(
        max_tokens=payload.get("max_completion_tokens") or payload.get("max_tokens"),
        temperature=0.7 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        stop=tuple(dict.fromkeys([*stops, *template_stop])),
        seed=payload.get("seed"),
    )


class _Shape:
    """Builds OpenAI response bodies and chunks from generation pieces."""

    object_name = ""
    chunk_object = ""
    id_prefix = ""

    def __init__(self, model: str):
        self.model = model
        self.id = f"{self.id_prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def chunk(self, choices: list[Json], usage: Json | None = None) -> Json:
        body: Json = {
            "id": self.id,
            "object": self.chunk_object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage
        return body

    def text_choice(self, text: str, finish: str | None) -> Json:
        raise NotImplementedError

    def first_chunk(self) -> Json | None:
        return None

    def opening(self, text: str) -> str:
        """The first text of an answer, as a client should see it."""
        return text

    async def stream(self, pieces: AsyncIterator[Piece]) -> AsyncIterator[Json]:
        prompt_tokens = 0
        first = self.first_chunk()
        started = False
        try:
            async for piece in pieces:
                if piece.prompt_tokens is not None:
                    prompt_tokens = piece.prompt_tokens
                    if first is not None:
                        yield first
                text = piece.text if started else self.opening(piece.text)
                if text:
                    started = True
                    yield self.chunk([self.text_choice(text, None)])
                if piece.finish_reason is not None:
                    yield self.chunk([self.text_choice("", _finish(piece.finish_reason))])
                    yield self.chunk([], _usage(prompt_tokens, piece.completion_tokens or 0))
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]

    async def collect(self, pieces: AsyncIterator[Piece]) -> Json:
        texts: list[str] = []
        prompt_tokens = completion_tokens = 0
        finish = "stop"
        async for piece in pieces:
            if piece.prompt_tokens is not None:
                prompt_tokens = piece.prompt_tokens
            texts.append(piece.text)
            if piece.finish_reason is not None:
                finish = _finish(piece.finish_reason)
                completion_tokens = piece.completion_tokens or 0
        return {
            "id": self.id,
            "object": self.object_name,
            "created": self.created,
            "model": self.model,
            "choices": [self.final_choice("".join(texts), finish)],
            "usage": _usage(prompt_tokens, completion_tokens),
        }

    def final_choice(self, text: str, finish: str) -> Json:
        raise NotImplementedError


class _ChatShape(_Shape):
    object_name = "chat.completion"
    chunk_object = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def first_chunk(self) -> Json:
        return self.chunk(
            [{"index": 0, "delta": {"role": "assistant", "content": ""},
              "logprobs": None, "finish_reason": None}]
        )

    def opening(self, text: str) -> str:
        return text.lstrip()  # the transcript format puts a space after "Assistant:"

    def text_choice(self, text: str, finish: str | None) -> Json:
        delta = {"content": text} if text else {}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def final_choice(self, text: str, finish: str) -> Json:
        return {
            "index": 0,
            "message": {"role": "assistant", "content": text.strip(), "refusal": None},
            "logprobs": None,
            "finish_reason": finish,
        }


class _CompletionShape(_Shape):
    object_name = "text_completion"
    chunk_object = "text_completion"
    id_prefix = "cmpl"

    def text_choice(self, text: str, finish: str | None) -> Json:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

    def final_choice(self, text: str, finish: str) -> Json:
        return self.text_choice(text, finish)


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def _usage(prompt_tokens: int, completion_tokens: int) -> Json:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
