"""The one shape every recognizer returns, and the rule that settles overlaps."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A sensitive stretch of text: ``text[start:end]`` (Python str indices).

    ``weak``: found on evidence that holds in what people write but not in the client's
    own text (a capitalised word that is also a first name, a bare run of digits that
    passes a card check); the detector decides by where the text stands (``Reading``).
    """

    start: int
    end: int
    type: str
    score: float
    recognizer: str
    weak: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "type": self.type, "score": self.score}


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Keep a non-overlapping set, preferring higher score, then the longer span.

    A placeholder can only replace one stretch of text, so overlaps must be settled
    before pseudonymizing; validated identifiers score higher than guesses and win.
    """
    ranked = sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start))
    kept: list[Span] = []
    for span in ranked:
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)
