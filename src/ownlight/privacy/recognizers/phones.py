"""Phone numbers: a loose pattern finds candidates, ``phonenumbers`` decides."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import phonenumbers

from ownlight.privacy.recognizers.context import NOT_PERSONAL, before, words_pattern
from ownlight.privacy.spans import Span

# Regions tried in order for numbers written without a country code.
DEFAULT_REGIONS = (
    "US", "GB", "CN", "JP", "RU", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "PL", "SE",
    "DK", "NO", "FI", "IE", "PT", "CZ", "AU", "CA", "IN", "BR", "MX",
)

_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9+.\-/])(?:\+|00)?\(?\d[\d ().\-\u2010-\u2015]{5,22}\d"
    r"(?:\s?(?:x|ext\.?|доб\.?)\s?\d{1,5})?(?![A-Za-z0-9/]|[-.]\d)"
)
_EXTENSION = re.compile(r"\s?(?:x|ext\.?|доб\.?)\s?\d{1,5}$")
# North American layout written out in full (3-3-4 with separators, optional +1/001 and
# extension): unmistakably a phone even when the area code is unassigned, as in test data
# and in numbers made up for forms.
_NANP_SHAPE = re.compile(
    r"(?:\+1[-. ]?|001[-. ])?(?:\(\d{3}\) ?|\d{3}([-.]))\d{3}[-.]\d{4}"
    r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?"
)
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_CURRENCY = re.compile(r"[$¥€£₽￥]\s*$|(?:usd|eur|rmb|jpy|rub)\s*$", re.I)
# A number followed by a unit is a quantity or a range of them ("250-30000 ms").
_UNIT_AFTER = re.compile(
    r"\s?(?:ms|s|secs?|seconds?|mins?|minutes?|h|hours?|days?|tokens?|bytes?|[kmgt]i?b|"
    r"chars?|characters?|lines?|rows?|items?|px|%)(?![A-Za-z])", re.I)
_PHONE_WORDS = words_pattern(
    ["phone", "tel", "mobile", "cell", "call", "fax", "whatsapp", "电话", "手机", "联系",
     "電話", "携帯", "連絡", "телефон", "тел", "моб", "звон"]
)


class PhoneRecognizer:
    """Numbers valid in at least one of ``regions`` (or in their own +country code)."""

    name = "phones"

    def __init__(self, regions: Sequence[str] = DEFAULT_REGIONS):
        self.regions = tuple(regions)

    def find(self, text: str) -> Iterator[Span]:
        for m in _CANDIDATE.finditer(text):
            value = m.group().rstrip(" .-")
            start = m.start()
            if value.endswith(")") and "(" not in value:
                value = value[:-1]
            n = sum(c.isdigit() for c in _EXTENSION.sub("", value))
            if n < 7 or n > 15 or _DATE.fullmatch(value):
                continue
            if _CURRENCY.search(text, max(0, start - 5), start) or (
                    _UNIT_AFTER.match(text, start + len(value))):
                continue
            has_ctx = before(text, start, _PHONE_WORDS, 32)
            if not has_ctx and before(text, start, NOT_PERSONAL, 24):
                continue
            separated = not value.lstrip("+").isdigit()
            if not (separated or has_ctx or value.startswith("+") or self._mobile_like(value)):
                continue
            if self._valid(_EXTENSION.sub("", value)) or _NANP_SHAPE.fullmatch(value):
                score = 0.8 if (has_ctx or separated) else 0.6
                yield Span(start, start + len(value), "PHONE_NUMBER", score, self.name)
            elif has_ctx and (separated or value.startswith("+")):
                # Right after a phone word, a phone-shaped number is a phone even when
                # phonenumbers does not know its range (new ranges, made-up test numbers).
                yield Span(start, start + len(value), "PHONE_NUMBER", 0.7, self.name)

    @staticmethod
    def _mobile_like(value: str) -> bool:
        """Unseparated numbers flagged without context: CN mobiles, RU 8/7-9xx mobiles."""
        return bool(re.fullmatch(r"1[3-9]\d{9}|[78]9\d{9}|0[789]0\d{8}", value))

    def _valid(self, value: str) -> bool:
        regions: tuple[str | None, ...] = (None,) if value.startswith("+") else self.regions
        if value.startswith("00"):
            regions = ("DE",)
        for region in regions:
            try:
                num = phonenumbers.parse(value, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(num):
                return True
        return False
