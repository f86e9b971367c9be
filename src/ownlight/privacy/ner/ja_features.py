"""Features of Japanese tokens for the person-name CRF (``ja_names``, ``ja_training``).

Tokens come from MeCab with UniDic (``fugashi`` + ``unidic-lite``): UniDic tags many
surnames and given names (固有名詞,人名,姓/名), and its part of speech, word origin and
unknown-word flag tell a transliterated foreign name (テレザ・イマニシ) from a loanword.
LAC's PER tag adds what a Chinese news model knows about Han names (石達開).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

from ownlight.privacy.ner import lac

WINDOW = (-2, -1, 1, 2)
_NEIGHBOUR_KEYS = ("w", "p23", "p34", "ct", "go", "unk", "lac")
_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Token:
    start: int
    end: int
    surface: str
    pos1: str
    pos2: str
    pos3: str
    pos4: str
    origin: str  # UniDic goshu: 和 漢 外 固 ... ("UNK" for unknown words)
    known: bool


@cache
def _tagger() -> Any:
    import fugashi  # with unidic-lite installed, fugashi finds its dictionary

    return fugashi.Tagger()


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    with _lock:  # a MeCab tagger is not documented as thread-safe
        words = [(w.surface, w.feature) for w in _tagger()(text)]
    for surface, f in words:
        found = text.find(surface, at)
        start = found if found >= 0 else at
        tokens.append(Token(start, start + len(surface), surface, f.pos1 or "", f.pos2 or "",
                            f.pos3 or "", f.pos4 or "", f.goshu or "UNK", f.lemma is not None))
        at = start + len(surface)
    return tokens


def char_classes(text: str) -> str:
    """Runs of character classes, e.g. ``kSk`` for テレザ・イマニシ (at most four)."""
    out: list[str] = []
    for ch in text:
        o = ord(ch)
        if 0x30A0 <= o <= 0x30FF:
            kind = "k"
        elif 0x3040 <= o <= 0x309F:
            kind = "h"
        elif 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF:
            kind = "K"
        elif ch.isalpha():
            kind = "L" if ch.isupper() else "l"
        elif ch.isdigit():
            kind = "D"
        else:
            kind = "S"
        if not out or out[-1] != kind:
            out.append(kind)
    return "".join(out)[:4]


def _own(token: Token, persons: list[tuple[int, int]]) -> dict[str, str]:
    w = token.surface
    on_person = sum(max(0, min(token.end, e) - max(token.start, s)) for s, e in persons)
    return {
        "w": w, "p1": token.pos1, "p2": token.pos2, "p23": token.pos2 + token.pos3,
        "p34": token.pos3 + token.pos4, "go": token.origin, "unk": str(not token.known),
        "ct": char_classes(w), "len": str(min(len(w), 6)), "first": w[0], "last": w[-1],
        "suf2": w[-2:], "suf3": w[-3:], "pre2": w[:2],
        "dot": str(any(c in w for c in "・＝=")),
        "lac": str(on_person * 2 >= token.end - token.start),
    }


def features(text: str, tokens: list[Token]) -> list[list[str]]:
    """One feature list per token: its own attributes and its neighbours' (±2)."""
    persons = lac.person_spans(text)
    own = [_own(t, persons) for t in tokens]
    out: list[list[str]] = []
    for i, attrs in enumerate(own):
        x = [f"{k}={v}" for k, v in attrs.items()]
        for off in WINDOW:
            j = i + off
            if 0 <= j < len(own):
                x.extend(f"{off}:{k}={own[j][k]}" for k in _NEIGHBOUR_KEYS)
            else:
                x.append(f"{off}:edge")
        x.append(f"ct-1|0={own[i - 1]['ct'] if i else '^'}|{attrs['ct']}")
        x.append(f"ct0|1={attrs['ct']}|{own[i + 1]['ct'] if i + 1 < len(own) else '$'}")
        out.append(x)
    return out


def spans_from_tags(tokens: list[Token], tags: list[str]) -> list[tuple[int, int]]:
    """BIO tags over tokens -> character spans (an I without a B starts a span)."""
    spans: list[tuple[int, int]] = []
    current: list[int] | None = None
    for token, tag in zip(tokens, tags, strict=True):
        if tag == "B" or (tag == "I" and current is None):
            if current:
                spans.append((current[0], current[1]))
            current = [token.start, token.end]
        elif tag == "I" and current is not None:
            current[1] = token.end
        else:
            if current:
                spans.append((current[0], current[1]))
            current = None
    if current:
        spans.append((current[0], current[1]))
    return spans
