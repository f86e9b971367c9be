"""Person names found by NER, for every language a text needs (see ``script``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module

from ownlight.privacy.ner.script import ner_languages
from ownlight.privacy.spans import Span

# Each module exposes ``person_spans(text) -> [(start, end)]`` and loads its model on
# first use. A model's score: ahead of list-based guesses (0.6-0.8), behind validated
# identifiers (0.95+), so a card number inside a "name" still wins.
MODULES = {"zh": "ownlight.privacy.ner.lac", "ja": "ownlight.privacy.ner.ja_names",
           "ru": "ownlight.privacy.ner.ru_names"}
SCORE = 0.85
_STRIP = " \t\r\n.,;:!?\"'()[]{}«»「」『』（）、。・=＝-"


def _finder(lang: str) -> Callable[[str], list[tuple[int, int]]]:
    finder: Callable[[str], list[tuple[int, int]]] = import_module(MODULES[lang]).person_spans
    return finder


class NerNameRecognizer:
    name = "ner"

    def __init__(self, languages: tuple[str, ...] = ("zh", "ja", "ru")):
        self.languages = frozenset(languages)

    def warm_up(self) -> None:
        """Load every model now, so the first request does not pay for it."""
        samples = {"zh": "张三在北京工作。", "ja": "山田太郎さんが来た。",
                   "ru": "Иван Петров пришёл."}
        for lang in self.languages:
            _finder(lang)(samples[lang])

    def find(self, text: str) -> Iterator[Span]:
        for lang in ner_languages(text):
            if lang not in self.languages:
                continue
            for start, end in _finder(lang)(text):
                start, end = _trim(text, start, end)
                if end > start:
                    yield Span(start, end, "PERSON", SCORE, f"ner_{lang}")


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] in _STRIP:
        start += 1
    while end > start and text[end - 1] in _STRIP:
        end -= 1
    return start, end
