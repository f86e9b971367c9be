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
MIN_SEGMENT = 4
_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def segments(text: str) -> list[str]:
    """Lines, sentences of long lines and whole code blocks of ``text`` (normalised)."""
    clean, _ = normalise(text)
    out: list[str] = []
    at = 0
    for fence in _FENCE.finditer(clean):
        out += _lines(clean[at : fence.start()])
        out.append(fence.group()[: 2 * MAX_SEGMENT])
        at = fence.end()
    out += _lines(clean[at:])
    return [s for s in out if len(s) >= MIN_SEGMENT] or [clean.strip()[: 2 * MAX_SEGMENT]]


def _lines(text: str) -> list[str]:
    out: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if len(line) <= MAX_SEGMENT:
            out.append(line)
            continue
        piece = ""
        for sentence in _SENTENCE_END.split(line):
            if piece and len(piece) + len(sentence) > MAX_SEGMENT:
                out.append(piece)
                piece = sentence
            else:
                piece = f"{piece} {sentence}".strip()
            while len(piece) > 2 * MAX_SEGMENT:  # a run-on text without sentence ends
                out.append(piece[:MAX_SEGMENT])
                piece = piece[MAX_SEGMENT:]
        if piece:
            out.append(piece)
    return out


def segment_windows(text: str) -> list[Window]:
    """Each segment with its structural signals (invisible characters: the whole text's)."""
    _, invisible = normalise(text)
    return [Window(s, signals(s, invisible)) for s in segments(text)]
