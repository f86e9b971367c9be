"""One request's own sampler: llama.cpp's sampler chain, built from its settings.

In a batch each sequence keeps its own chain, so one request's temperature, seed,
penalties and grammar never touch another's. The chain's order is llama-cpp-python's
(penalties, grammar, then greedy, or top-k 40 / top-p / min-p 0.05 / temperature /
seeded draw), so an answer reads the same as it did through the high-level API.

A grammar is checked after the draw rather than over the whole vocabulary first (as
llama.cpp's own server does): the bundled model has 262,144 tokens, and matching each
against the grammar at every step would slow the whole batch down. The drawn token is
kept when the grammar allows it; otherwise the chain draws again among the allowed
tokens. Those it could draw are the best ones (top-k, and min-p's cut below the best
allowed), so the best candidates are checked one at a time first; only when they may
lie further down is the grammar matched against the whole vocabulary. Inside a tool
call's arguments a draw is refused often (a raw newline in a string), and a whole-
vocabulary pass took the bundled model's steps from 0.02 to 2 s: a call of a thousand
tokens took more than ten minutes.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any, Protocol

import numpy as np

from ownlight.backends.logprobs import logits_row
from ownlight.errors import InvalidRequest

DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp draws a random seed
TOP_K = 40
MIN_P = 0.05
PENALTY_LAST_N = 64
SCAN = 256  # candidates checked one at a time, best first, before the whole vocabulary


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
        self.n_vocab = n_vocab
        self.grammar: Any = None
        self._greedy = settings.temperature <= 0
        self._penalties = bool(settings.presence_penalty or settings.frequency_penalty)
        self.chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        add = lambda s: ll.llama_sampler_chain_add(self.chain, s)  # noqa: E731
        if settings.presence_penalty or settings.frequency_penalty:
            add(ll.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, 1.0,
                                                settings.frequency_penalty,
                                                settings.presence_penalty))
        if settings.temperature <= 0:
            add(ll.llama_sampler_init_greedy())
        else:
            add(ll.llama_sampler_init_top_k(TOP_K))
            add(ll.llama_sampler_init_top_p(settings.top_p, 1))
            add(ll.llama_sampler_init_min_p(MIN_P, 1))
            add(ll.llama_sampler_init_temp(settings.temperature))
            seed = DEFAULT_SEED if settings.seed is None else settings.seed & 0xFFFFFFFF
            add(ll.llama_sampler_init_dist(seed))
        if settings.grammar:
            self.grammar = ll.llama_sampler_init_grammar(vocab, settings.grammar.encode(),
                                                         b"root")
            if not self.grammar:
                self.close()
                raise InvalidRequest("the answer's grammar could not be compiled")
            self._candidates = (ll.llama_token_data * n_vocab)()
            self._view = np.ctypeslib.as_array(self._candidates)
            self._ids = np.arange(n_vocab, dtype=np.int32)
            self._few = (ll.llama_token_data * TOP_K)()

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the logits at ``index`` of the last batch (accepted)."""
        ll = self._ll
        if self.grammar is None:
            return int(ll.llama_sampler_sample(self.chain, ctx, index))
        logits = logits_row(ctx, index, self.n_vocab)
        token = self._draw(logits, constrained=False)
        if not self._allowed(token):
            token = self._draw_allowed(logits)
        ll.llama_sampler_accept(self.grammar, token)
        ll.llama_sampler_accept(self.chain, token)
        return token

    def _draw(self, logits: np.ndarray, constrained: bool) -> int:
        ll = self._ll
        self._view["id"] = self._ids
        self._view["logit"] = logits
        self._view["p"] = 0.0
        candidates = ll.llama_token_data_array(self._candidates, self.n_vocab, -1, False)
        if constrained:
            ll.llama_sampler_apply(self.grammar, ctypes.byref(candidates))
        ll.llama_sampler_apply(self.chain, ctypes.byref(candidates))
        return int(candidates.data[candidates.selected].id)

    def _draw_allowed(self, logits: np.ndarray) -> int:
        """The chain's draw among the tokens the grammar allows."""
        ll = self._ll
        allowed = None if self._penalties else self._best_allowed(logits)
        if not allowed:  # (penalties change the order the best are found in)
            return self._draw(logits, constrained=True)
        for slot, token in zip(self._few, allowed, strict=False):
            slot.id, slot.logit, slot.p = token, float(logits[token]), 0.0
        candidates = ll.llama_token_data_array(self._few, len(allowed), -1, False)
        ll.llama_sampler_apply(self.chain, ctypes.byref(candidates))
        return int(candidates.data[candidates.selected].id)

    def _best_allowed(self, logits: np.ndarray) -> list[int] | None:
        """The allowed tokens the chain could draw, found among the best ``SCAN``: the
        first for greedy decoding, else up to top-k of them down to min-p's cut below
        the best one (the same draw, exactly so when top_p is 1). None when they may lie
        further down."""
        count = min(SCAN, self.n_vocab)
        best = np.argpartition(logits, -count)[-count:] if count < self.n_vocab \
            else np.arange(count)
        best = best[np.argsort(logits[best])[::-1]]
        allowed: list[int] = []
        floor = -math.inf
        for token in best.tolist():
            if logits[token] < floor:
                return allowed
            if self._allowed(token):
                allowed.append(token)
                if self._greedy or len(allowed) == TOP_K:
                    return allowed
                floor = max(floor, float(logits[token]) + math.log(MIN_P))
        return None

    def _allowed(self, token: int) -> bool:
        ll = self._ll
        one = (ll.llama_token_data * 1)(ll.llama_token_data(token, 1.0, 0.0))
        candidates = ll.llama_token_data_array(one, 1, -1, False)
        ll.llama_sampler_apply(self.grammar, ctypes.byref(candidates))
        return not math.isinf(one[0].logit)

    def close(self) -> None:
        for sampler in (self.chain, self.grammar):
            if sampler:  # a NULL pointer is falsy too
                self._ll.llama_sampler_free(sampler)
        self.chain = self.grammar = None


def grammar_compiles(vocab: Any, grammar: str) -> bool:
    """Whether llama.cpp takes a grammar (the vocabulary is read-only: safe beside the
    model's thread)."""
    import llama_cpp as ll

    sampler = ll.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if not sampler:
        return False
    ll.llama_sampler_free(sampler)
    return True
