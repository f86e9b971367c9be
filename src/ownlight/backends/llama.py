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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ownlight.backends import constrained
from ownlight.backends.base import Backend, BackendResult, Operation
from ownlight.backends.constrained import DecodingPlan
from ownlight.backends.local_answer import LocalAnswer, Piece
from ownlight.backends.logprobs import LogprobRecorder
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
        if request.stream:
            return answer.stream(jobs, self._generate)
        return await answer.collect(jobs, self._generate)

    @property
    def queue_length(self) -> int:
        return self._waiting

    @property
    def max_prompt_chars(self) -> int:
        """No text averages more than 32 characters a token: longer cannot fit n_ctx."""
        return self.n_ctx * 32

    async def count_tokens(self, request: Request) -> int | None:
        """The prompt as this model would read it, tokenized (the vocabulary is read-only,
        so this need not wait behind generations on the model's thread)."""
        await self._ensure_loaded()
        prompt = self.template.render(prompt_messages(request, constrained.plan(request)))
        return len(self._llm.tokenize(prompt.encode(), add_bos=not _has_bos(prompt),
                                      special=True))

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
        recorder = None
        processors = None
        if sampling.top_logprobs is not None:
            from llama_cpp import LogitsProcessorList

            recorder = LogprobRecorder(llm, sampling.top_logprobs)
            processors = LogitsProcessorList([recorder])
        stream = llm.create_completion(
            prompt=tokens,
            max_tokens=max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            stop=list(sampling.stop) or None,
            seed=sampling.seed,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
            grammar=_grammar(sampling.grammar) if sampling.grammar else None,
            logits_processor=processors,
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
                    emit(Piece(text=choice["text"],
                               logprobs=recorder.drain() if recorder else None))
                finish = choice.get("finish_reason") or finish
        finally:
            stream.close()
        generated = "".join(text_parts)
        count = 0
        if generated:
            count = len(llm.tokenize(generated.encode(), add_bos=False, special=True))
        emit(Piece(completion_tokens=count, finish_reason=finish or "stop",
                   logprobs=recorder.finish(generated) if recorder else None))


@lru_cache(maxsize=64)
def _grammar(source: str) -> Any:
    """Compiled once per grammar: clients repeat the same tools and schemas."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(source, verbose=False)


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
