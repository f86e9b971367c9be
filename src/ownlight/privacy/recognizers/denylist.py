"""Operator deny lists (customer names, project code names), matched with Aho–Corasick so
thousands of terms cost one pass over the text."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import ahocorasick

from ownlight.privacy.spans import Span


def _fold(text: str) -> str:
    """Lower-case without changing length, so indices map back to the original text."""
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


class DenyListRecognizer:
    name = "deny_list"

    def __init__(self, terms: Mapping[str, Iterable[str]]):
        """``terms`` maps a span type (e.g. "CUSTOMER") to its terms."""
        self._automaton = ahocorasick.Automaton()
        for type_, words in terms.items():
            for word in words:
                if word.strip():
                    key = _fold(word.strip())
                    self._automaton.add_word(key, (len(key), type_))
        self._empty = len(self._automaton) == 0
        if not self._empty:
            self._automaton.make_automaton()

    def find(self, text: str) -> Iterator[Span]:
        if self._empty:
            return
        for end_idx, (length, type_) in self._automaton.iter(_fold(text)):
            start, end = end_idx - length + 1, end_idx + 1
            if _boundary(text, start, end):
                yield Span(start, end, type_, 1.0, self.name)


def _boundary(text: str, start: int, end: int) -> bool:
    """Latin terms must be whole words ('Ann' is not in 'Annual'); CJK terms need no spaces."""
    def alnum_ascii(c: str) -> bool:
        return c.isascii() and c.isalnum()

    left = start == 0 or not (alnum_ascii(text[start - 1]) and alnum_ascii(text[start]))
    right = end == len(text) or not (alnum_ascii(text[end]) and alnum_ascii(text[end - 1]))
    return left and right
