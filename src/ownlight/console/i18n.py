"""The console's languages: English, Chinese, Japanese and Russian.

Every string a page shows is a key in ``catalogues/<lang>/*.json``; each feature keeps its
own file there, so the chat and the admin views never edit the same catalogue. A page asks
for ``t("chat.send")``; a key missing from a language is a bug that ``tests/test_console_i18n``
finds, and meanwhile shows the English text rather than the key.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from starlette.requests import Request

LANGUAGES = {"en": "English", "zh": "中文", "ja": "日本語", "ru": "Русский"}
DEFAULT = "en"
COOKIE = "ownlight_lang"
CATALOGUES = Path(__file__).parent / "catalogues"


@cache
def catalogue(lang: str) -> dict[str, str]:
    """Every key of one language, from all its files (a key defined twice is an error)."""
    merged: dict[str, str] = {}
    for path in sorted((CATALOGUES / lang).glob("*.json")):
        for key, text in json.loads(path.read_text(encoding="utf-8")).items():
            if key in merged:
                raise ValueError(f"{path}: {key} is already defined in another {lang} file")
            merged[key] = text
    return merged


def language(request: Request) -> str:
    """The cookie the language switch sets, else the browser's first known language."""
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT


class Translator:
    def __init__(self, lang: str):
        self.lang = lang
        self.texts = catalogue(lang)
        self.fallback = catalogue(DEFAULT)

    def __call__(self, key: str, **values: object) -> str:
        text = self.texts.get(key) or self.fallback.get(key) or key
        return text.format(**values) if values else text
