"""Context words: the cheap signal that turns an ambiguous number into an identifier."""

from __future__ import annotations

import re
from collections.abc import Iterable

_ALPHABETIC_START = re.compile(r"[A-Za-z\u0400-\u04ff]")


def words_pattern(words: Iterable[str]) -> re.Pattern[str]:
    """One case-insensitive alternation, longest first so 'card number' beats 'card'.

    A Latin or Cyrillic word must start a word ("ref" is not in "prefix", "tel" not in
    "hotel") but may end inside one: Russian cue words are stems (звон, страхов). CJK
    words have no such edges to keep.
    """
    parts = [(r"(?<![A-Za-z\u0400-\u04ff])" if _ALPHABETIC_START.match(w) else "") + re.escape(w)
             for w in sorted(words, key=len, reverse=True)]
    return re.compile("|".join(parts), re.I)


def before(text: str, start: int, pattern: re.Pattern[str], window: int = 40) -> bool:
    """True when ``pattern`` occurs in the ``window`` characters before ``start``."""
    return pattern.search(text, max(0, start - window), start) is not None


def around(text: str, start: int, end: int, pattern: re.Pattern[str], window: int = 30) -> bool:
    return before(text, start, pattern, window) or (
        pattern.search(text, end, min(len(text), end + window)) is not None
    )


# Words near a number that say it is *not* personal: order ids, versions, prices, dates.
NOT_PERSONAL = words_pattern(
    [
        "order", "invoice", "tracking", "ticket", "ref", "reference", "sku", "item", "version",
        "build", "release", "isbn", "cve", "price", "total", "amount", "qty", "quantity",
        "serial", "batch",
        "订单", "单号", "编号", "版本", "价格", "金额", "合计", "批次", "序列号", "发票", "快递",
        "注文", "番号", "バージョン", "価格", "金額", "合計", "伝票", "請求書", "ロット",
        "заказ", "счёт", "счет", "накладн", "версия", "цена", "сумма", "итого", "артикул", "партия",
    ]
)
