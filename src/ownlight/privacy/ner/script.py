"""Which language's NER a text needs, from its characters alone (no model, microseconds).

Kana means Japanese (Japanese text always has some); Han without kana means Chinese;
Cyrillic means Russian. A text may need several (a Russian mail quoting a Chinese name).
"""

from __future__ import annotations

import re

_KANA = re.compile(r"[\u3041-\u309f\u30a1-\u30fa\u30fc\uff66-\uff9d]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")


def ner_languages(text: str) -> tuple[str, ...]:
    langs: list[str] = []
    if _KANA.search(text):
        langs.append("ja")
    elif _HAN.search(text):
        langs.append("zh")
    if _CYRILLIC.search(text):
        langs.append("ru")
    return tuple(langs)
