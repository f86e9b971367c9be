"""Token log-probabilities read straight from llama.cpp's logits, one row per step.

llama-cpp-python's own ``logprobs`` needs ``logits_all=True``: a row of logits per
context position, 4 GiB for the bundled model's 262,144-token vocabulary at 4,096
tokens. The batching loop asks llama.cpp for logits only where it samples, and reads
that one row (before the next decode overwrites it) when a request wants logprobs.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import numpy as np

from ownlight.protocol.model import TokenLogprob


def logits_row(ctx: Any, index: int, n_vocab: int) -> np.ndarray:
    """The raw logits at ``index`` of the last batch (a view: read before the next decode)."""
    import llama_cpp as ll

    pointer = ll.llama_get_logits_ith(ctx, index)
    return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)),
                                 shape=(n_vocab,))


def logprob_entry(logits: np.ndarray, token: int, top: int,
                  piece: Callable[[int], str]) -> TokenLogprob:
    """The chosen token's log-probability and the ``top`` likeliest alternatives."""
    shifted = logits.astype(np.float64) - float(np.max(logits))
    logprobs = shifted - np.log(np.exp(shifted).sum())
    best: list[tuple[str, float]] = []
    if top:
        ids = np.argpartition(-logprobs, top)[:top]
        ids = ids[np.argsort(-logprobs[ids])]
        best = [(piece(int(t)), float(logprobs[t])) for t in ids]
    text = piece(token)
    return TokenLogprob(text, float(logprobs[token]), list(text.encode()), best)
