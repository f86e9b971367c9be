"""Russian person names: runs of capitalized Cyrillic words judged by a first-name list,
patronymic endings (-ович, -овна) and surname endings (-ов, -ева, -ский), in any case
form, plus initials (И. И. Иванов, Иванов И.И.) and cues (г-н, ФИО:, зовут).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ownlight.privacy.recognizers.wordlists import load
from ownlight.privacy.spans import Span

_CAP = r"[А-ЯЁ][а-яё]+(?:-[А-ЯЁ][а-яё]+)?"
_INITIALS = r"[А-ЯЁ]\.\s?(?:[А-ЯЁ]\.)?"
_RUN = re.compile(
    rf"(?:{_INITIALS}\s?)?{_CAP}(?:\s{_CAP}){{0,3}}(?:\s{_INITIALS})?"
)
_CASE_ENDINGS = ("ами", "ями", "ого", "его", "ому", "ему", "ой", "ей", "ом", "ем", "ым", "им",
                 "ою", "ею", "ую", "юю", "ая", "яя", "а", "я", "у", "ю", "е", "ы", "и", "ё")
_PATRONYMIC = re.compile(r"(?:ович|евич|ьич|ична|инична|овна|евна)(?:а|у|ем|ом|е|ы|ой|ою|ну|не)?$")
_SURNAME = re.compile(
    r"(?:ов|ев|ёв|ин|ын|ский|цкий|ской|ская|цкая|ова|ева|ёва|ина|ына|енко|ук|юк|ян|швили|дзе)"
    r"(?:а|у|ым|ом|е|ой|ою|ым|ых|их|ого|ому|им|ую)?$"
)
_CUE = re.compile(
    r"(?:г-н|г-жа|господин|госпожа|гражданин|гражданка|фио|зовут|клиент|клиентка|пациент|"
    r"пациентка|менеджер|сотрудник|сотрудница|коллега|директор|доктор|врач|уважаем\w+|"
    r"от|для|с|у|к)[\s:.,]*$",
    re.I,
)
_NOT_NAMES = frozenset(
    """москва москве москвы россия россии петербург новосибирск казань сибирь урал волга
    январь февраль март апрель май июнь июль август сентябрь октябрь ноябрь декабрь
    понедельник вторник среда четверг пятница суббота воскресенье итого заказ счет счёт""".split()
)


class RussianNameRecognizer:
    name = "names_ru"

    def __init__(self) -> None:
        self.first = load("ru_first_names.txt")
        self.last = load("ru_last_names.txt")

    def find(self, text: str) -> Iterator[Span]:
        if not any("А" <= c <= "я" or c in "Ёё" for c in text):
            return
        for m in _RUN.finditer(text):
            words = [(w.start() + m.start(), w.end() + m.start(), w.group().lower())
                     for w in re.finditer(r"[А-ЯЁа-яё-]{2,}", m.group())]
            if any(k in _NOT_NAMES for _, _, k in words):
                continue
            kinds = [self._kind(k) for _, _, k in words]
            while kinds and kinds[0] is None:
                words, kinds = words[1:], kinds[1:]
            while kinds and kinds[-1] is None:
                words, kinds = words[:-1], kinds[:-1]
            if not words:
                continue
            start = m.start() if m.group()[1] == "." else words[0][0]
            end = m.end() if m.group().endswith(".") else words[-1][1]
            initials = "." in text[start:end]
            cue = _CUE.search(text, max(0, start - 16), start) is not None
            at_start = _sentence_start(text, start)
            if len(words) >= 2 or (initials and "surname" in kinds):
                score = 0.85
            elif kinds[0] == "first" and (not at_start or cue):
                score = 0.7
            elif kinds[0] == "surname" and cue:
                score = 0.7
            else:
                continue
            yield Span(start, end, "PERSON", score, self.name)

    def _kind(self, key: str) -> str | None:
        if self._is_first(key):
            return "first"
        if _PATRONYMIC.search(key):
            return "patronymic"
        if key in self.last or (_SURNAME.search(key) and len(key) > 4):
            return "surname"
        return None

    def _is_first(self, key: str) -> bool:
        if key in self.first:
            return True
        for ending in _CASE_ENDINGS:
            if key.endswith(ending) and len(key) - len(ending) >= 3:
                stem = key[: -len(ending)]
                if stem in self.first or stem + "а" in self.first or stem + "я" in self.first:
                    return True
                if stem + "й" in self.first or stem + "ь" in self.first:
                    return True
        return False


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".!?\n\"«("
