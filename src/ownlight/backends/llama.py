"""Embedded llama.cpp: a GGUF model in this process, no network at all.

The model serves many people at once: requests are tokenized here, wait in a fair
queue (FIFO per principal, round-robin between principals) and are decoded together by
the batching loop on the model's own thread (``batching.py``); the event loop never
blocks on it. A bounded queue turns overload into a clear 503 with ``Retry-After``.
Tokens travel back to the loop as they are decoded; when the client goes away, the
consumer closes the stream and the loop frees the request's slot at its next step.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ownlight.backends import constrained
from ownlight.backends.base import Backend, BackendResult, Operation, ServingStats
from ownlight.backends.batching import BatchEngine, End, Job
from ownlight.backends.constrained import DecodingPlan
from ownlight.backends.local_answer import LocalAnswer, Piece
from ownlight.backends.templates import prompt_messages, resolve_template
from ownlight.errors import ContextLengthExceeded, InvalidRequest, UpstreamUnavailable
from ownlight.models.files import Progress, resolve_model_path
from ownlight.protocol.model import Request
from ownlight.protocol.model import Sampling as SamplingSettings

DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    grammar: str | None = None  # GBNF: the answer must match it
    top_logprobs: int | None = None  # None: no logprobs; 0: the chosen token's only
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


class LlamaBackend(Backend):
    kind = "llama"
    operations = frozenset({Operation.CHAT, Operation.COMPLETION})

    def __init__(self, entry: Any, config: Any):
        super().__init__(entry, config)
        self._engine: BatchEngine | None = None
        self._load: asyncio.Task[None] | None = None
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
        return self._engine is not None

    @property
    def n_ctx(self) -> int:
        return self.entry.n_ctx

    async def start(self) -> None:
        if self._load is None:
            self._load = asyncio.create_task(asyncio.to_thread(self._load_blocking))
        await self._load

    def prepare(self, progress: Progress | None = None) -> None:
        """Find (and, for a packaged model, assemble) the GGUF file. Blocking."""
        spec = self.entry.path or ""
        self.path = resolve_model_path(spec, self.config.data_dir, self.entry.sha256, progress)

    def _load_blocking(self) -> None:
        if self.path is None:
            self.prepare()
        threads = int(self.config.get("local.threads")) or os.cpu_count() or 2
        parallel = int(self.config.get("local.parallel"))
        self._engine = BatchEngine(str(self.path), self.n_ctx, parallel, threads)

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await asyncio.to_thread(engine.close)

    async def execute(self, request: Request) -> BackendResult:
        if request.operation not in self.operations:
            raise InvalidRequest(
                f"model {self.entry.alias!r} does not serve {request.operation}")
        await self._ensure_loaded()
        plan = DecodingPlan("text")
        if request.operation is Operation.CHAT:
            plan = constrained.plan(request)
            prompts = [self.template.render(prompt_messages(request, plan))]
        elif request.prompts:
            prompts = request.prompts
        else:
            raise InvalidRequest("prompt must be text: local models do not read token arrays",
                                 param="prompt")
        # A grammar decides where a JSON answer ends; the transcript's stop strings
        # could cut it short.
        extra_stop = () if plan.constrained or request.operation is not Operation.CHAT \
            else self.template.stop
        s = request.sampling
        jobs = [(prompt, _sampling(s, extra_stop, plan, i))
                for prompt in prompts for i in range(s.n)]
        answer = LocalAnswer(request.operation, self.model_name, plan)
        generate = partial(self._generate, principal=request.principal or "")
        if request.stream:
            return answer.stream(jobs, generate)
        return await answer.collect(jobs, generate)

    @property
    def queue_length(self) -> int:
        return len(self._engine.queue) if self._engine is not None else 0

    def serving_stats(self) -> ServingStats | None:
        return self._engine.stats() if self._engine is not None else None

    @property
    def max_prompt_chars(self) -> int:
        """No text averages more than 32 characters a token: longer cannot fit n_ctx."""
        return self.n_ctx * 32

    async def count_tokens(self, request: Request) -> int | None:
        """The prompt as this model would read it, tokenized (the vocabulary is read-only,
        so this need not wait behind generations on the model's thread)."""
        engine = await self._ensure_loaded()
        prompt = self.template.render(prompt_messages(request, constrained.plan(request)))
        return len(engine.tokenize(prompt, add_bos=not _has_bos(prompt)))

    async def _ensure_loaded(self) -> BatchEngine:
        if self._engine is not None:
            return self._engine
        if self._load is None:
            raise UpstreamUnavailable(f"model {self.entry.alias!r} is not loaded")
        try:
            await asyncio.shield(self._load)
        except Exception as exc:
            raise UpstreamUnavailable(f"model {self.entry.alias!r} failed to load: {exc}") from exc
        assert self._engine is not None
        return self._engine

    async def _generate(self, prompt: str, sampling: Sampling, *,
                        principal: str) -> AsyncIterator[Piece]:
        """Queue one generation for the batching loop and relay its pieces."""
        engine = await self._ensure_loaded()
        tokens = engine.tokenize(prompt, add_bos=not _has_bos(prompt))
        max_tokens = self._check_room(len(tokens), sampling.max_tokens)
        if len(engine.queue) >= self._queue_limit:
            raise UpstreamUnavailable("the local model is busy; try again shortly",
                                      retry_after=engine.retry_after())
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Piece | BaseException | End] = asyncio.Queue()

        def emit(item: Piece | BaseException | End) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        job = Job(tokens, sampling, max_tokens, principal, emit,
                  fresh=sampling.seed is not None)
        engine.submit(job)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, End):
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            engine.cancel(job)

    def _check_room(self, prompt_tokens: int, max_tokens: int | None) -> int:
        room = self.n_ctx - prompt_tokens
        if max_tokens is None:
            max_tokens = min(DEFAULT_MAX_TOKENS, room)
        if room <= 0 or max_tokens > room:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.n_ctx} tokens. However, you "
                f"requested {prompt_tokens + max(max_tokens, 0)} tokens ({prompt_tokens} in "
                f"the prompt, {max(max_tokens, 0)} for the completion). Please reduce the "
                "prompt or max_tokens.",
                param="messages",
            )
        return max_tokens


def _has_bos(prompt: str) -> bool:
    return prompt.startswith("<bos>")


def _sampling(s: SamplingSettings, template_stop: tuple[str, ...], plan: DecodingPlan,
              choice: int) -> Sampling:
    return Sampling(
        max_tokens=s.max_tokens,
        temperature=0.7 if s.temperature is None else s.temperature,
        top_p=1.0 if s.top_p is None else s.top_p,
        stop=tuple(dict.fromkeys([*s.stop, *template_stop])),
        seed=None if s.seed is None else s.seed + choice,  # n choices differ, repeatably
        grammar=plan.grammar,
        top_logprobs=(s.top_logprobs or 0) if s.logprobs else None,
        presence_penalty=s.presence_penalty or 0.0,
        frequency_penalty=s.frequency_penalty or 0.0,
    )
