"""Continuous batching: several requests decoded together by one llama.cpp context.

One thread owns the context (llama.cpp is not thread-safe) and runs a loop of steps.
Each step builds one batch: the next token of every answering sequence, then as many
prompt tokens of newly admitted requests as fit, so a long prompt is evaluated in
chunks while other answers keep streaming. Requests join at any step and leave the
moment they finish or their client goes away; each has its own sampler (temperature,
seed, penalties, grammar), stop strings and max_tokens.

``parallel`` slots share one unified KV cache of ``n_ctx × parallel`` cells; each slot
may use the model's whole ``n_ctx``. A slot keeps its cells after its request ends, so
prefixes are reused: within a slot (the next request starts after the common part) and
across slots (the cells of a prompt another slot holds are shared with
``llama_memory_seq_cp``, not evaluated again). Requests arriving together with the same
long system prompt wait for the first to evaluate it, then share it.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ownlight.backends.answer_text import AnswerText
from ownlight.backends.base import ServingStats
from ownlight.backends.fair_queue import FairQueue
from ownlight.backends.llama_log import recent_errors, route_to_logging
from ownlight.backends.local_answer import Piece
from ownlight.backends.logprobs import logits_row, logprob_entry
from ownlight.backends.sampler import Sampler, grammar_compiles

BATCH_TOKENS = 256  # tokens per decode: bounds the pause a long prompt causes others
MIN_SHARE = 32  # a prefix shorter than this is evaluated again rather than waited for
RATE_WINDOW = 10.0  # seconds over which tokens/s is measured
KV_BUDGET = 1 << 30  # bytes of KV cache that ``parallel = 0`` sizes the slots to
MAX_AUTO_SLOTS = 8  # beyond this a 2-core machine gains little from a bigger batch
GRAMMARS_KEPT = 256  # grammars whose compile check is remembered


class End:
    """The last item a job emits."""


END = End()
Emit = Callable[[Piece | BaseException | End], None]


@dataclass(eq=False)
class Job:
    """One generation: a tokenized prompt and how to continue it."""

    tokens: list[int]
    sampling: Any  # llama.DecodeSettings
    max_tokens: int
    principal: str
    emit: Emit
    fresh: bool = False  # evaluate the whole prompt again (a seeded request: repeatable)
    cancelled: bool = False  # set by the client's side; the loop frees the slot


@dataclass(eq=False)
class SequenceSlot:
    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV cells this seq holds
    job: Job | None = None
    sampler: Sampler | None = None
    text: AnswerText | None = None
    next_token: int | None = None  # sampled, fed at the next step
    generated: int = 0
    donor: SequenceSlot | None = None  # waiting for it to evaluate a prefix it shares
    donor_job: Job | None = None
    share: int = 0
    order: int = 0  # admission order
    started: float = 0.0
    used: float = 0.0

    @property
    def prefilling(self) -> bool:
        return self.job is not None and self.next_token is None


class BatchEngine:
    def __init__(self, path: str, n_ctx: int, parallel: int, threads: int):
        import llama_cpp as ll

        route_to_logging()  # llama.cpp's load chatter: Ownlight's logger, not the terminal
        recent_errors()  # forget another load's errors
        self._ll = ll
        self.n_ctx = n_ctx
        params = ll.llama_model_default_params()
        params.use_extra_bufts = not has_amx()
        self.model = ll.llama_model_load_from_file(path.encode(), params)
        if not self.model:
            said = "; ".join(recent_errors())
            raise ValueError(f"llama.cpp could not load {path}"
                             + (f" (it said: {said})" if said else ""))
        self.parallel = parallel or auto_parallel(self.model, n_ctx)
        parallel = self.parallel
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_ctx_train = int(ll.llama_model_n_ctx_train(self.model))  # what it can read
        self.n_vocab = int(ll.llama_vocab_n_tokens(self.vocab))
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx * parallel
        cparams.n_batch = cparams.n_ubatch = BATCH_TOKENS
        cparams.n_seq_max = parallel
        cparams.kv_unified = True  # shared prefixes occupy their cells once
        cparams.swa_full = True  # keep whole prompts, or prefixes could not be reused
        cparams.n_threads = cparams.n_threads_batch = threads
        self.ctx = ll.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            ll.llama_model_free(self.model)
            raise ValueError("llama.cpp could not create a context")
        self.memory = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(BATCH_TOKENS, 0, 1)
        self.slots = [SequenceSlot(seq) for seq in range(parallel)]
        self.queue: FairQueue[Job] = FairQueue()
        self._wake = threading.Condition()
        self._closed = False
        self._admitted = 0
        self._produced: deque[tuple[float, int]] = deque()
        self._evaluated = 0
        self._reused = 0
        self._request_seconds = 2.0  # running mean, for Retry-After
        self._grammars: dict[str, bool] = {}
        self._thread = threading.Thread(target=self._loop, name="llama-batch", daemon=True)
        self._thread.start()

    # -- the event loop's side ------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """The vocabulary is read-only: safe beside the running loop."""
        data = text.encode()
        room = len(data) + 8
        tokens = (self._ll.llama_token * room)()
        count = self._ll.llama_tokenize(self.vocab, data, len(data), tokens, room, add_bos,
                                        True)
        return list(tokens[:count])

    def compiles(self, grammar: str) -> bool:
        """Whether llama.cpp takes a grammar; asked once per grammar (clients send the
        same tools on every turn)."""
        known = self._grammars.get(grammar)
        if known is None:
            known = self._grammars[grammar] = grammar_compiles(self.vocab, grammar)
            if len(self._grammars) > GRAMMARS_KEPT:
                del self._grammars[next(iter(self._grammars))]
        return known

    def submit(self, job: Job) -> None:
        self.queue.push(job.principal, job)
        with self._wake:
            self._wake.notify()

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        self.queue.remove(job)

    def stats(self) -> ServingStats:
        now = time.monotonic()
        produced = sum(n for t, n in list(self._produced) if now - t <= RATE_WINDOW)
        return ServingStats(self.parallel, sum(s.job is not None for s in self.slots),
                            len(self.queue), produced / RATE_WINDOW, self._evaluated,
                            self._reused)

    def retry_after(self) -> float:
        """Seconds until a slot is likely free for a request turned away now."""
        waves = (len(self.queue) + self.parallel) / self.parallel
        return min(60.0, max(1.0, waves * self._request_seconds))

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            return  # a decode is stuck; the process is ending anyway
        for slot in self.slots:
            if slot.sampler is not None:
                slot.sampler.close()
        self._ll.llama_batch_free(self.batch)
        self._ll.llama_free(self.ctx)
        self._ll.llama_model_free(self.model)

    # -- the model's thread ---------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not len(self.queue) and not self._busy():
                    self._wake.wait()
                if self._closed:
                    break
            try:
                self._admit()
                self._step()
            except Exception as exc:  # a failed decode fails the requests in the batch
                for slot in self.slots:
                    if slot.job is not None:
                        slot.job.emit(exc)
                        self._free(slot)
        for slot in self.slots:
            if slot.job is not None:
                slot.job.emit(RuntimeError("the model was unloaded"))
                self._free(slot)

    def _busy(self) -> bool:
        return any(s.job is not None for s in self.slots)

    def _admit(self) -> None:
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled:
                self._free(slot)
        while len(self.queue):
            free = [s for s in self.slots if s.job is None]
            if not free:
                return
            job = self.queue.pop()
            if job is None:
                return
            if job.cancelled:
                continue
            best = max(free, key=lambda s: (_common(s.cached, job.tokens), -s.used))
            self._place(best, job)

    def _place(self, slot: SequenceSlot, job: Job) -> None:
        """Start a job in a slot, reusing the longest prefix any slot already holds."""
        self._admitted += 1
        slot.job, slot.order, slot.started = job, self._admitted, time.monotonic()
        slot.next_token, slot.generated, slot.donor, slot.donor_job = None, 0, None, None
        try:
            slot.sampler = Sampler(self.vocab, self.n_vocab, job.sampling)
        except Exception as exc:
            job.emit(exc)
            self._free(slot)
            return
        slot.text = AnswerText(job.sampling.stop)
        last = len(job.tokens) - 1  # at least one prompt token is evaluated, for logits
        own = 0 if job.fresh else min(_common(slot.cached, job.tokens), last)
        self._truncate(slot, own)
        if not job.fresh:
            self._share(slot, last)
        self._reused += len(slot.cached)
        job.emit(Piece(prompt_tokens=len(job.tokens)))

    def _share(self, slot: SequenceSlot, last: int) -> None:
        """Copy the cells of a longer common prefix another slot holds; or, when another
        slot admitted earlier is still evaluating a longer one, wait for it."""
        job = slot.job
        assert job is not None
        for other in self.slots:
            if other is slot:
                continue
            held = min(_common(other.cached, job.tokens), last)
            if held > len(slot.cached):
                self._copy(other, slot, held)
            if other.prefilling and other.job is not None and other.order < slot.order:
                planned = min(_common(other.job.tokens, job.tokens), last)
                if planned >= max(len(slot.cached), slot.share) + MIN_SHARE:
                    slot.donor, slot.donor_job, slot.share = other, other.job, planned

    def _copy(self, source: SequenceSlot, target: SequenceSlot, count: int) -> None:
        self._ll.llama_memory_seq_rm(self.memory, target.seq, 0, -1)
        self._ll.llama_memory_seq_cp(self.memory, source.seq, target.seq, 0, count)
        target.cached = source.cached[:count]

    def _truncate(self, slot: SequenceSlot, count: int) -> None:
        if count < len(slot.cached):
            self._ll.llama_memory_seq_rm(self.memory, slot.seq, count, -1)
            slot.cached = slot.cached[:count]

    def _waiting_for_donor(self, slot: SequenceSlot) -> bool:
        donor = slot.donor
        if donor is None:
            return False
        if donor.job is slot.donor_job and len(donor.cached) < slot.share:
            return True
        if _common(donor.cached, slot.job.tokens if slot.job else []) >= slot.share:
            self._reused += slot.share - len(slot.cached)
            self._copy(donor, slot, slot.share)
        slot.donor, slot.donor_job, slot.share = None, None, 0
        return False

    def _step(self) -> None:
        batch = self.batch
        batch.n_tokens = 0
        wanted: list[tuple[SequenceSlot, int]] = []  # slots whose logits this batch yields
        for slot in self.slots:
            if slot.job is not None and slot.next_token is not None:
                wanted.append((slot, batch.n_tokens))
                self._add(slot, [slot.next_token], last_logits=True)
        prefilling = sorted((s for s in self.slots if s.prefilling), key=lambda s: s.order)
        # Before this batch adds to any slot: its cells hold what the last decode wrote.
        ready = [s for s in prefilling if not self._waiting_for_donor(s)]
        for slot in ready:
            room = BATCH_TOKENS - batch.n_tokens
            if room <= 0:
                break
            assert slot.job is not None
            chunk = slot.job.tokens[len(slot.cached): len(slot.cached) + room]
            done = len(slot.cached) + len(chunk) == len(slot.job.tokens)
            if done:
                wanted.append((slot, batch.n_tokens + len(chunk) - 1))
            self._evaluated += len(chunk)
            self._add(slot, chunk, last_logits=done)
        if batch.n_tokens == 0:
            return
        status = self._ll.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        produced = 0
        for slot, index in wanted:
            if slot.job is not None and not slot.job.cancelled:
                produced += self._advance(slot, index)
        now = time.monotonic()
        self._produced.append((now, produced))
        while self._produced and now - self._produced[0][0] > RATE_WINDOW:
            self._produced.popleft()

    def _add(self, slot: SequenceSlot, tokens: list[int], last_logits: bool) -> None:
        batch = self.batch
        start = len(slot.cached)
        for i, token in enumerate(tokens):
            j = batch.n_tokens + i
            batch.token[j] = token
            batch.pos[j] = start + i
            batch.n_seq_id[j] = 1
            batch.seq_id[j][0] = slot.seq
            batch.logits[j] = 0
        batch.n_tokens += len(tokens)
        if last_logits:
            batch.logits[batch.n_tokens - 1] = 1
        slot.cached.extend(tokens)
        slot.next_token = None

    def _advance(self, slot: SequenceSlot, index: int) -> int:
        """Sample a slot's next token and pass on its text; 1 if a token was produced."""
        job, sampler, text = slot.job, slot.sampler, slot.text
        assert job is not None and sampler is not None and text is not None
        token = sampler.sample(self.ctx, index)
        if self._ll.llama_vocab_is_eog(self.vocab, token):
            self._finish(slot, "stop")
            return 0
        entry = None
        if job.sampling.top_logprobs is not None:
            entry = logprob_entry(logits_row(self.ctx, index, self.n_vocab), token,
                                  job.sampling.top_logprobs, self._piece_text)
        released = text.add(self._piece(token), entry)
        slot.generated += 1
        if released.text or released.logprobs:
            job.emit(Piece(text=released.text, logprobs=self._logprobs(job, released.logprobs)))
        if released.stopped:
            self._finish(slot, "stop")
        elif slot.generated >= job.max_tokens:
            self._finish(slot, "length")
        else:
            slot.next_token = token
        return 1

    def _finish(self, slot: SequenceSlot, reason: str) -> None:
        job, text = slot.job, slot.text
        assert job is not None and text is not None
        rest = text.finish() if not text.stopped else None
        if rest is not None and rest.text:
            job.emit(Piece(text=rest.text))
        job.emit(Piece(completion_tokens=slot.generated, finish_reason=reason,
                       logprobs=self._logprobs(job, rest.logprobs if rest else [])))
        seconds = time.monotonic() - slot.started
        self._request_seconds = 0.8 * self._request_seconds + 0.2 * seconds
        self._free(slot)

    def _free(self, slot: SequenceSlot) -> None:
        if slot.job is not None:
            slot.job.emit(END)
        if slot.sampler is not None:
            slot.sampler.close()
        slot.job, slot.sampler, slot.text, slot.next_token = None, None, None, None
        slot.donor, slot.donor_job, slot.share = None, None, 0
        slot.used = time.monotonic()

    @staticmethod
    def _logprobs(job: Job, entries: list[Any]) -> list[Any] | None:
        return entries if job.sampling.top_logprobs is not None else None

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = self._ll.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = self._ll.llama_token_to_piece(self.vocab, token, buffer, -size, 0, False)
        return buffer.raw[:size]

    def _piece_text(self, token: int) -> str:
        return self._piece(token).decode("utf-8", errors="replace")


def has_amx() -> bool:
    """Whether this CPU has AMX. llama.cpp's AMX kernels, which its extra buffer types put
    the weights in on such a CPU, crash on Q4_K weights (a segfault in
    ``ggml_backend_amx_mul_mat``, ggml-org/llama.cpp#20824): on a Sapphire Rapids Xeon the
    bundled model died in the first decode of an agent's 8,000-token prompt. Without extra
    buffer types the weights stay in the ordinary CPU buffer, which works everywhere."""
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def auto_parallel(model: Any, n_ctx: int) -> int:
    """As many slots as a KV cache of ``KV_BUDGET`` holds at ``n_ctx`` each (1 to 8)."""
    return max(1, min(MAX_AUTO_SLOTS, KV_BUDGET // (kv_bytes_per_token(model) * n_ctx)))


def kv_bytes_per_token(model: Any) -> int:
    """What one cached token costs: f16 keys and values in every layer."""
    import llama_cpp as ll

    heads = max(1, int(ll.llama_model_n_head(model)))
    head_size = _metadata_int(model, "attention.key_length") or \
        int(ll.llama_model_n_embd(model)) // heads
    layers, kv_heads = int(ll.llama_model_n_layer(model)), int(ll.llama_model_n_head_kv(model))
    return 2 * 2 * layers * kv_heads * head_size


def _metadata_int(model: Any, key: str) -> int | None:
    import llama_cpp as ll

    buffer = ctypes.create_string_buffer(128)
    size = ll.llama_model_meta_val_str(model, b"general.architecture", buffer, 128)
    if size <= 0:
        return None
    arch = buffer.value.decode()
    size = ll.llama_model_meta_val_str(model, f"{arch}.{key}".encode(), buffer, 128)
    try:
        return int(buffer.value.decode()) if size > 0 else None
    except ValueError:
        return None


def _common(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
