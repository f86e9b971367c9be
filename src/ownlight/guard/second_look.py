"""A second look, by meaning, at the most suspicious pieces of a tool result.

The n-gram model reads every segment of a tool result in a few milliseconds but knows
only the words it was trained on; the e5 model reads meaning in any language but costs
about 180 ms per 1,000 characters on two cores, six times the 30 ms budget of a tool
result. So the n-gram model ranks the segments and e5 reads only the top of that list:
at most ``SHARE`` of the result's characters (at least ``MIN_CHARS``, and always the top
segment, so a short e-mail still gets its most suspicious line read), at most
``MAX_SEGMENTS`` segments. A small
head on each segment's vector (``tool_e5.npz``, trained by ``ownlight.guard.chunk_training
--second-look`` on dev sets only, with the same choice of segments on benign dev tool
outputs and documents as its negatives) says whether it is an instruction to the
assistant; at or over its threshold the tool result is flagged as the n-gram model would
flag it.

e5 is not consulted at all when even the result's most suspicious segment scores more than
``GATE`` logits under the n-gram threshold: on the dev cross-validation (out-of-fold
n-gram readings) every attack e5 caught that the n-grams missed had its top segment within
3.8 logits of the threshold, while three quarters of benign dev tool outputs sit further
down; the gate cuts e5's cost on them from 19 to 8 ms per 1,000 characters and loses none
of those catches on dev (``docs/performance.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np

from ownlight.guard.chunk_head import ChunkHead

FILE = "tool_e5.npz"
SHARE = 0.08
MIN_CHARS = 100
MAX_SEGMENTS = 12
GATE = 5.0


def chosen(ranked: list[tuple[str, float]], size: int) -> list[str]:
    """The segments e5 reads: the top of the n-gram ranking, within the character budget,
    and the top segment however long it is. (A segment is a line, or a sentence of a long
    one, so one of over ``MIN_CHARS`` is common in Russian: a short page whose most
    suspicious sentence was longer used to get no second look at all.)"""
    budget, used = max(MIN_CHARS, SHARE * size), 0
    out: list[str] = []
    for text, _ in ranked[:MAX_SEGMENTS]:
        if out and used + len(text) > budget:
            break
        used += len(text)
        out.append(text)
    return out


class SecondLook:
    """The head on e5 vectors of a tool result's most suspicious segments."""

    def __init__(self, head: ChunkHead, embed: Callable[[list[str]], np.ndarray]):
        self.head = head
        self.embed = embed

    @property
    def threshold(self) -> float:
        return self.head.threshold

    def score(self, ranked: list[tuple[str, float]], size: int,
              floor: float = -math.inf) -> float:
        """The highest head probability over the chosen segments; 0 when none fit or
        the most suspicious segment's n-gram logit is under ``floor`` (``gate``)."""
        if not ranked or ranked[0][1] < floor:
            return 0.0
        pieces = chosen(ranked, size)
        return float(self.head.scores(self.embed(pieces)).max()) if pieces else 0.0

    @staticmethod
    def gate(ngram_threshold: float) -> float:
        """The n-gram logit under which e5 is not consulted: ``GATE`` under the threshold."""
        p = min(max(ngram_threshold, 1e-9), 1 - 1e-9)
        return math.log(p / (1 - p)) - GATE

    @staticmethod
    def load_head(path: Path | None = None) -> ChunkHead:
        return ChunkHead.load(path or Path(str(resources.files("ownlight") / "data" / "guard"
                                                / FILE)))
