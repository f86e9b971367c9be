"""Prompt features for the complexity router, shared by training and scoring.

Pure stdlib so the server can score prompts without scikit-learn. Text n-grams are
hashed (crc32, stable across processes, unlike ``hash()``) into a fixed number of
buckets, so the shipped model is one weight vector and no vocabulary.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

_WORD = re.compile(r"[a-z]+|\d+(?:[.,]\d+)*|[^\sa-z\d]")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_OPTION = re.compile(r"^[A-D][.)] ", re.MULTILINE)
_SENTENCE = re.compile(r"[.?!](?:\s|$)")


@dataclass(frozen=True)
class FeatureSpec:
    """How to turn a prompt into features; stored with the weights it was trained with."""

    buckets: int = 1 << 18
    char_min: int = 3
    char_max: int = 5
    max_chars: int = 4000


def prompt_kind(prompt: str) -> str:
    """Multiple choice and free-form prompts fail for different reasons: model them apart."""
    return "mc" if len(_OPTION.findall(prompt)) >= 2 else "free"


def _number_shape(token: str) -> str:
    """Map a number to its shape so '17' and '42' share a feature but '3.5' does not."""
    digits = sum(c.isdigit() for c in token)
    return f"<n{min(digits, 6)}{'.' if '.' in token else ''}>"


def _hash(text: str, buckets: int) -> int:
    return zlib.crc32(text.encode("utf-8")) % buckets


def sparse_features(prompt: str, spec: FeatureSpec) -> dict[int, float]:
    """Hashed sublinear tf of word uni/bigrams (first half of buckets) and char n-grams (second).

    Idf weighting and per-family L2 normalisation happen in the model, which knows the idf.
    """
    kind = prompt_kind(prompt)
    text = prompt[: spec.max_chars].lower()
    tokens = [_number_shape(t) if t[0].isdigit() else t for t in _WORD.findall(text)]
    words: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        words[tok] = words.get(tok, 0) + 1
        if i:
            key = tokens[i - 1] + " " + tok
            words[key] = words.get(key, 0) + 1
    chars: dict[str, int] = {}
    for word in text.split():
        padded = f" {word} "
        for n in range(spec.char_min, spec.char_max + 1):
            for j in range(len(padded) - n + 1):
                gram = padded[j : j + n]
                chars[gram] = chars.get(gram, 0) + 1
    half = spec.buckets // 2
    out: dict[int, float] = {}
    for offset, family, counts in ((0, "w", words), (half, "c", chars)):
        for key, count in counts.items():
            idx = offset + _hash(f"{kind}|{family}|{key}", half)
            out[idx] = out.get(idx, 0.0) + 1.0 + math.log(count)
    return out


def dense_features(prompt: str) -> list[float]:
    """Shape of the problem: length, how many numbers and steps, question format."""
    words = prompt.split()
    numbers = _NUMBER.findall(prompt)
    lower = prompt.lower()
    values = []
    for n in numbers:
        try:
            values.append(float(n.replace(",", "")))
        except ValueError:
            continue
    is_mc = prompt_kind(prompt) == "mc"
    question = prompt.split("\nA.")[0] if is_mc else prompt
    base = [
        math.log1p(len(words)),
        math.log1p(len(question.split())),
        math.log1p(len(numbers)),
        math.log1p(len(set(numbers))),
        math.log1p(len(_SENTENCE.findall(prompt))),
        float(sum("." in n for n in numbers)),
        float(lower.count("%") + lower.count("percent")),
        float(lower.count("$")),
        math.log1p(max(values)) if values else 0.0,
        float(sum(v >= 100 for v in values)),
        float(sum(lower.count(w) for w in (" not ", " except ", " least "))),
        float("statement 1" in lower),
        float(prompt.count("?")),
    ]
    # Same shape features mean different things in each kind: give each its own copy.
    zeros = [0.0] * len(base)
    return [float(is_mc), *(base if is_mc else zeros), *(zeros if is_mc else base)]
