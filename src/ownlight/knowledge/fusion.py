"""Reciprocal rank fusion: merge ranked lists without comparing their scores.

BM25 scores and cosine similarities live on different scales; RRF only uses ranks, so
it needs no calibration per language or corpus (Cormack et al., 2009).
"""

from __future__ import annotations

from collections.abc import Sequence

#: Smaller than the usual 60: top ranks matter more here (tuned on the dev split).
RRF_K = 10


def rrf(
    rankings: Sequence[Sequence[tuple[int, float]]],
    weights: Sequence[float] | None = None,
    k: int = RRF_K,
) -> list[tuple[int, float]]:
    """(id, fused score) best first; ties keep the order of the first list."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, (item, _) in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank + 1)
    return sorted(scores.items(), key=lambda pair: -pair[1])
