"""One request's own sampler: llama.cpp's sampler chain, built from its settings.

In a batch each sequence keeps its own chain, so one request's temperature, seed,
penalties and grammar never touch another's. The chain's order is llama-cpp-python's
(penalties, grammar, then greedy, or top-k 40 / top-p / min-p 0.05 / temperature /
seeded draw), so an answer reads the same as it did through the high-level API.
"""

from __future__ import annotations

from typing import Any, Protocol

from ownlight.errors import InvalidRequest

DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp draws a random seed
TOP_K = 40
MIN_P = 0.05
PENALTY_LAST_N = 64


class SamplingSettings(Protocol):
    temperature: float
    top_p: float
    seed: int | None
    grammar: str | None
    presence_penalty: float
    frequency_penalty: float


class Sampler:
    def __init__(self, vocab: Any, n_vocab: int, settings: SamplingSettings):
        import llama_cpp as ll

        self._ll = ll
        self.chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        add = lambda s: ll.llama_sampler_chain_add(self.chain, s)  # noqa: E731
        if settings.presence_penalty or settings.frequency_penalty:
            add(ll.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, 1.0,
                                                settings.frequency_penalty,
                                                settings.presence_penalty))
        if settings.grammar:
            grammar = ll.llama_sampler_init_grammar(vocab, settings.grammar.encode(), b"root")
            if not grammar:
                self.close()
                raise InvalidRequest("the answer's grammar could not be compiled")
            add(grammar)
        if settings.temperature <= 0:
            add(ll.llama_sampler_init_greedy())
        else:
            add(ll.llama_sampler_init_top_k(TOP_K))
            add(ll.llama_sampler_init_top_p(settings.top_p, 1))
            add(ll.llama_sampler_init_min_p(MIN_P, 1))
            add(ll.llama_sampler_init_temp(settings.temperature))
            seed = DEFAULT_SEED if settings.seed is None else settings.seed & 0xFFFFFFFF
            add(ll.llama_sampler_init_dist(seed))

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the logits at ``index`` of the last batch (accepted)."""
        return int(self._ll.llama_sampler_sample(self.chain, ctx, index))

    def close(self) -> None:
        if self.chain is not None:
            self._ll.llama_sampler_free(self.chain)
            self.chain = None
