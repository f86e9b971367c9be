"""Untrusted content cut into the units an injected instruction hides in.

An indirect injection is a sentence or a line addressed to the assistant, dropped into a
document, an e-mail or a tool result (BIPIA inserts one line at a random place, often in the
middle of a sentence). Scored as a whole, the document's own text dilutes it; scored line by
line, it stands out as what it is: a prompt where no prompt belongs. Code blocks stay whole,
since an injected snippet is one unit; lines over ``MAX_SEGMENT`` characters are cut at
sentence ends.
"""

from __future__ import annotations

import re

from ownlight.guard.features import Window, normalise, signals

MAX_SEGMENT = 300
# What the untrusted-content model reads: shorter pieces, so an instruction dropped into the
# middle of a paragraph (a review, an abstract, a CJK line without breaks) is a unit of its
# own rather than a fifth of one (100 beat 150 and 300 in the dev cross-validation of
# ``ownlight guard train --untrusted``). The e5 chunk head keeps whole lines (MAX_SEGMENT).
SENTENCE_SEGMENT = 100
MIN_SEGMENT = 4
_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def segments(text: str, max_chars: int = MAX_SEGMENT) -> list[str]:
    """Lines, sentences of long lines and whole code blocks of ``text`` (normalised)."""
    clean, _ = normalise(text)
    out: list[str] = []
    at = 0
    for fence in _FENCE.finditer(clean):
        out += _lines(clean[at : fence.start()], max_chars)
        out.append(fence.group()[: 2 * MAX_SEGMENT])
        at = fence.end()
    out += _lines(clean[at:], max_chars)
    return [s for s in out if len(s) >= MIN_SEGMENT] or [clean.strip()[: 2 * MAX_SEGMENT]]


def _lines(text: str, max_chars: int) -> list[str]:
    out: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if len(line) <= max_chars:
            out.append(line)
            continue
        piece = ""
        for sentence in _SENTENCE_END.split(line):
            if piece and len(piece) + len(sentence) > max_chars:
                out.append(piece)
                piece = sentence
            else:
                piece = f"{piece} {sentence}".strip()
            while len(piece) > 2 * max_chars:  # a run-on text without sentence ends
                out.append(piece[:max_chars])
                piece = piece[max_chars:]
        if piece:
            out.append(piece)
    return out


def segment_windows(text: str) -> list[Window]:
    """Each segment with its structural signals (invisible characters: the whole text's)."""
    _, invisible = normalise(text)
    return [Window(s, signals(s, invisible)) for s in segments(text, SENTENCE_SEGMENT)]
