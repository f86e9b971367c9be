"""Verdicts on repeated texts are remembered, long texts by digest, and nothing else changes."""

from __future__ import annotations

from ownlight.textcache import SHORT_TEXT_CHARS, cache_short_texts


def counting() -> tuple[list[str], object]:
    seen: list[str] = []

    def scan(text: str) -> int:
        seen.append(text)
        return len(text)

    return seen, scan


def test_short_and_long_texts_are_scanned_once() -> None:
    seen, scan = counting()
    remembered = cache_short_texts(scan)  # type: ignore[arg-type]
    short, long = "hello", "x" * (SHORT_TEXT_CHARS * 3)
    assert [remembered(t) for t in (short, long, short, long)] == [5, len(long), 5, len(long)]
    assert seen == [short, long]


def test_long_texts_that_differ_by_one_character_are_not_confused() -> None:
    seen, scan = counting()
    remembered = cache_short_texts(scan)  # type: ignore[arg-type]
    a = "a" * (SHORT_TEXT_CHARS + 10)
    b = a[:-1] + "b"
    remembered(a)
    remembered(b)
    assert len(seen) == 2


def test_the_oldest_long_text_is_forgotten_first() -> None:
    seen, scan = counting()
    remembered = cache_short_texts(scan, long_size=2)  # type: ignore[arg-type]
    texts = [str(i) * (SHORT_TEXT_CHARS + 1) for i in range(3)]
    for text in texts:
        remembered(text)
    remembered(texts[2])  # kept
    remembered(texts[0])  # forgotten: scanned again
    assert seen == [*texts, texts[0]]
