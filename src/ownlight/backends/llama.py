"""Embedded llama.cpp: a GGUF model in this process, no network at all.

The model serves many people at once: requests are tokenized here, wait in a fair
queue (FIFO per principal, round-robin between principals) and are decoded together by
the batching loop on the model's own thread (``batching.py``); the event loop never
blocks on it. A bounded queue turns overload into a clear 503 with ``Retry-After``.
Tokens travel back to the loop as they are decoded; when the client goes away, the
consumer closes the stream and the loop frees the request's slot at its next step.

A prompt must leave room for an answer in the window (``models.NAME.n_ctx``): one that
does not is refused with a message naming that setting. A ``max_tokens`` beyond the
room left is lowered to fit, and the ``x-ownlight-max-tokens`` header says so.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
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
from ownlight.protocol.model import Request, Sampling

DEFAULT_MAX_TOKENS = 256
# The default answer budget when tools are offered. A tool call must be complete to be
# of any use (cut short, Codex ends its run with ``response.incomplete``), and its
# arguments may carry a command, a patch or a whole file: 2,048 tokens (about 8 KB of
# code) holds the agents' calls, while a small model that rambles in words instead
# still frees its slot within a minute or two on a laptop's CPU. A client that wants
# more asks for it; whatever it asks is fitted to the window (``answer_budget``).
TOOL_MAX_TOKENS = 2048
#: The header that says a client's max_tokens was lowered to fit the window.
MAX_TOKENS_HEADER = "x-ownlight-max-tokens"


@dataclass(frozen=True)
class DecodeSettings:
    """How one sequence is decoded: the request's ``Sampling`` made concrete (its token
    budget, the template's stop strings, the grammar, a seed per choice)."""

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
        self._queue_limit = config.settings.local.queue_limit
        self.template = resolve_template(entry.chat_template, entry.settings.stop)
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
        threads = self.config.settings.local.threads or os.cpu_count() or 2
        parallel = self.config.settings.local.parallel
        self._engine = BatchEngine(str(self.path), self.n_ctx, parallel, threads)

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await asyncio.to_thread(engine.close)

    async def execute(self, request: Request) -> BackendResult:
        if request.operation not in self.operations:
            raise InvalidRequest(
                f"model {self.entry.alias!r} does not serve {request.operation}")
        engine = await self._ensure_loaded()
        plan = DecodingPlan("text")
        if request.operation is Operation.CHAT:
            plan = constrained.plan(request, engine.compiles)
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
        default = self.entry.settings.temperature
        if s.temperature is None and default is not None:
            s = replace(s, temperature=default)  # the alias's, for clients that send none
        tokens = {p: engine.tokenize(p, add_bos=not _has_bos(p)) for p in prompts}
        budgets = {p: answer_budget(self.entry.alias, self.n_ctx, len(t), s.max_tokens,
                                    request.tools_active, engine.n_ctx_train)
                   for p, t in tokens.items()}
        jobs = [(prompt, _sampling(s, budgets[prompt].max_tokens, extra_stop, plan, i))
                for prompt in prompts for i in range(s.n)]
        lowered = [b for b in budgets.values() if b.lowered_from is not None]
        # Shown to the client as a response header (the pipeline takes it from the answer).
        headers = {MAX_TOKENS_HEADER: min(lowered, key=lambda b: b.max_tokens)
                   .explain(self.n_ctx)} if lowered else {}
        answer = LocalAnswer(request.operation, self.model_name, plan, headers)
        generate = partial(self._generate, tokens=tokens, principal=request.principal or "")
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

    async def _generate(self, prompt: str, sampling: DecodeSettings, *,
                        tokens: dict[str, list[int]], principal: str) -> AsyncIterator[Piece]:
        """Queue one generation for the batching loop and relay its pieces."""
        engine = await self._ensure_loaded()
        if len(engine.queue) >= self._queue_limit:
            raise UpstreamUnavailable("the local model is busy; try again shortly",
                                      retry_after=engine.retry_after())
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Piece | BaseException | End] = asyncio.Queue()

        def emit(item: Piece | BaseException | End) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        assert sampling.max_tokens is not None  # fitted to the window by ``execute``
        job = Job(tokens[prompt], sampling, sampling.max_tokens, principal, emit,
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


@dataclass(frozen=True)
class Budget:
    """How many tokens an answer may have, and what the client asked, when it was more."""

    max_tokens: int
    lowered_from: int | None = None

    def explain(self, n_ctx: int) -> str:
        return (f"{self.max_tokens} (lowered from {self.lowered_from} to fit the "
                f"{n_ctx}-token window)")


def answer_budget(alias: str, n_ctx: int, prompt_tokens: int, asked: int | None,
                  tools: bool, trained: int = 0) -> Budget:
    """The answer's budget: what the client asked, lowered to the room the prompt leaves
    in the window (Claude Code asks for 32,000 whatever the model); by default 256
    tokens, or ``TOOL_MAX_TOKENS`` when tools are offered. A prompt that fills the
    window is refused with a message naming the setting that widens it."""
    room = n_ctx - prompt_tokens
    if room < 1:
        raise ContextLengthExceeded(window_message(alias, n_ctx, prompt_tokens, trained),
                                    param="messages")
    if asked is None:
        return Budget(min(TOOL_MAX_TOKENS if tools else DEFAULT_MAX_TOKENS, room))
    if asked > room:
        return Budget(room, asked)
    return Budget(asked)


def window_message(alias: str, n_ctx: int, prompt_tokens: int, trained: int = 0) -> str:
    """Why a prompt does not fit, and the setting that widens the window."""
    text = (f"This prompt is {prompt_tokens:,} tokens; model {alias!r} reads {n_ctx:,} "
            f"tokens at most, its answer included (the window, models.{alias}.n_ctx). ")
    if trained and prompt_tokens >= trained:
        return text + f"Please shorten the prompt: this model reads {trained:,} tokens at most."
    reads = f" (this model reads up to {trained:,} tokens)" if trained > n_ctx else ""
    return text + (f"Raise models.{alias}.n_ctx in ownlight.toml{reads}, or shorten the "
                   "prompt.")


def _has_bos(prompt: str) -> bool:
    return prompt.startswith("<bos>")


def _sampling(s: Sampling, max_tokens: int, template_stop: tuple[str, ...],
              plan: DecodingPlan, choice: int) -> DecodeSettings:
    return DecodeSettings(
        max_tokens=max_tokens,
        temperature=0.7 if s.temperature is None else s.temperature,
        top_p=1.0 if s.top_p is None else s.top_p,
        stop=tuple(dict.fromkeys([*s.stop, *template_stop])),
        seed=None if s.seed is None else s.seed + choice,  # n choices differ, repeatably
        grammar=plan.grammar,
        top_logprobs=(s.top_logprobs or 0) if s.logprobs else None,
        presence_penalty=s.presence_penalty or 0.0,
        frequency_penalty=s.frequency_penalty or 0.0,
    )
