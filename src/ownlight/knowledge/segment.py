"""Turn text into the terms the lexical index stores and the queries look up.

FTS5's trigram tokenizer cannot match the one- and two-character words that make up
most Chinese and Japanese queries, and unicode61 treats a whole run of CJK characters
as one token. So we segment ourselves, the way CJK search engines without a dictionary
do: lowercased words for alphabetic scripts, and every CJK character plus every pair of
adjacent characters (unigrams and bigrams) for runs of Han, kana and Hangul. The terms
go into an FTS5 column with the unicode61 tokenizer, which then ranks them with BM25.
"""

from __future__ import annotations

import re
import unicodedata

_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
    "\uac00-\ud7af"  # Hangul syllables
    "\u31f0-\u31ff\uff66-\uff9f"  # katakana extensions, half-width
)
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+", re.UNICODE)
_CJK_RUN = re.compile(rf"[{_CJK}]+")
_CYRILLIC_WORD = re.compile(r"[\u0400-\u04ff]+")

#: Cyrillic words are also indexed by their first letters: a cheap stemmer that lets
#: inflected Russian forms meet (tuned on the dev split).
CYRILLIC_PREFIX = 4


def is_cjk(char: str) -> bool:
    return bool(_CJK_RUN.fullmatch(char))


def cjk_count(text: str) -> int:
    """How many characters of ``text`` are Han, kana or Hangul."""
    return sum(map(len, _CJK_RUN.findall(text)))


def _cjk_terms(run: str) -> list[str]:
    terms = list(run)
    terms.extend(run[i : i + 2] for i in range(len(run) - 1))
    return terms


def terms(text: str) -> list[str]:
    """Search terms of ``text``, in order, with repetitions (BM25 counts them)."""
    text = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if _CJK_RUN.fullmatch(token):
            out.extend(_cjk_terms(token))
            continue
        out.append(token)
        if len(token) > CYRILLIC_PREFIX and _CYRILLIC_WORD.fullmatch(token):
            out.append(token[:CYRILLIC_PREFIX] + "ª")
    return out


def index_text(text: str) -> str:
    """The string stored in the FTS5 column: the terms joined by spaces."""
    return " ".join(terms(text))


def match_expression(query_terms: list[str], max_terms: int = 64) -> str | None:
    """An FTS5 MATCH expression that ORs distinct terms (None: nothing to find).

    Every term is quoted, so user input can never be read as FTS5 syntax.
    """
    unique = list(dict.fromkeys(query_terms))[:max_terms]
    if not unique:
        return None
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in unique)
