"""Person names in Latin-script text (English and other European names) from name lists,
capitalization and titles; no model, so it costs microseconds.

Runs of capitalized words are judged as a whole: a run holding a known first or last name,
or following a title (Mr, Dr, ...) or a name cue ("my name is"), is a PERSON. Runs that
hold an unknown capitalized word the lists cannot judge are reported as *undecided*, which
the detector hands to the NER model when one is configured.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ownlight.privacy.recognizers.places import is_place_here
from ownlight.privacy.recognizers.wordlists import english_words, load
from ownlight.privacy.spans import Span

_WORD = re.compile(r"[A-Za-z\u00C0-\u024F][A-Za-z\u00C0-\u024F'’\-]*")
_PARTICLES = frozenset(
    "van der von de den da di du le la del della dos das bin al ter ten y".split()
)
_POSSESSIVE = re.compile(r"['’]s?$")
_TITLES = frozenset("mr mrs ms miss dr prof sir madam mx mister dame lord lady".split())
_STRONG_CUE = re.compile(
    r"(?<![A-Za-z])(?:my name is|name is|names? ?:|i am|i'm|called|named|dear|hi|hello|"
    r"thanks|thank you|regards|signed|sincerely|contact|customer|patient|employee|colleague|"
    r"friend|partner|wife|husband|son|daughter|mother|father|brother|sister|mrs?\.?|ms\.?|dr\.?)[\s,:]*$",
    re.I,
)
_WEAK_CUE = re.compile(
    r"(?<![A-Za-z])(?:from|with|by|to|and|or|this is|told|asked|met|see|ask)[\s,:]*$", re.I)
# A word glued to code punctuation is an identifier, not a name: max_output_tokens,
# edit_mode, new Date(), Math.max, obj.Name, `Date`, <Button>, r0.
_CODE_BEFORE = re.compile(r"[_$#`<0-9]|[a-z0-9)\]]\.")
_CODE_AFTER = re.compile(r"[_(`>0-9\[]|\.[A-Za-z_]|::")
_CAMEL = re.compile(r"[a-z][A-Z]")
_NAME_CAMEL = re.compile(r"(?:Mc|Mac|Fitz|De|Di|Da|Du|La|Le|Lo|Van|Von|Ter|St|O'|D')[A-Z][a-z]+"
                         r"(?:['’]s)?")


class LatinNameRecognizer:
    name = "names_latin"

    def __init__(self) -> None:
        self.first = load("latin_first_names.txt")
        self.last = load("latin_last_names.txt")
        self.common = load("en_common_words.txt")

    def find(self, text: str) -> Iterator[Span]:
        spans, _ = self.analyze(text)
        yield from spans

    def analyze(self, text: str) -> tuple[list[Span], bool]:
        """Spans found, and whether some capitalized run was left undecided."""
        lower_text = not any(c.isupper() for c in text)
        spans: list[Span] = []
        undecided = False
        for run in self._runs(text, lower_text):
            verdict = self._judge(text, run, lower_text)
            if verdict is None:
                undecided = True
            elif isinstance(verdict, Span):
                spans.append(verdict)
        return spans, undecided

    def _runs(self, text: str, lower_text: bool) -> Iterator[list[re.Match[str]]]:
        run: list[re.Match[str]] = []
        for m in _WORD.finditer(text):
            w = m.group()
            if self._code(text, m):
                if run:
                    yield run
                run = []
                continue
            if lower_text:
                is_cap = w in self.first or (bool(run) and w not in self.common)
            else:
                is_cap = w[0].isupper()
            particle = w in _PARTICLES and bool(run)
            gap = text[run[-1].end() : m.start()] if run else ""
            after_title = gap == ". " and run[-1].group().lower() in _TITLES if run else False
            possessive = bool(run) and _POSSESSIVE.search(run[-1].group()) is not None
            if (is_cap or particle) and not possessive and (
                    not run or gap in (" ", "-", " - ") or after_title):
                run.append(m)
                continue
            if run:
                yield run
            run = [m] if is_cap else []
        if run:
            yield run

    def _judge(self, text: str, run: list[re.Match[str]], lower_text: bool) -> Span | bool | None:
        while run and run[-1].group() in _PARTICLES:
            run = run[:-1]
        # drop leading common words ("Dear", "Thanks") and titles, remembering a title
        titled = False
        while run and self._key(run[0]) in self.common | _TITLES:
            titled = titled or self._key(run[0]) in _TITLES
            run = run[1:]
        while run and self._key(run[-1]) in self.common:
            run = run[:-1]
        if not run:
            return False
        keys = [self._key(m) for m in run]
        first_hit = any(k in self.first for k in keys)
        last_hit = any(k in self.last for k in keys)
        start, end = run[0].start(), run[-1].end()
        if not titled and is_place_here(text, start, end):
            return False
        strong = titled or _STRONG_CUE.search(text, max(0, start - 24), start) is not None
        cue = strong or _WEAK_CUE.search(text, max(0, start - 12), start) is not None
        if any(w.isupper() and len(w) > 1 for w in (m.group() for m in run)) and not lower_text:
            if not (first_hit and len(run) > 1):
                return False  # acronyms and SHOUTED words
        # A title, a strong cue or a first name followed by a surname also holds in a
        # system prompt or a tool schema; a lone capitalised first name does not.
        weak = not (strong or (len(run) >= 2 and keys[0] in self.first
                               and self._surname(run[-1])))
        if len(run) >= 2 and (first_hit or (last_hit and cue)):
            return Span(start, end, "PERSON", 0.8, self.name, weak=weak)
        mid_sentence = not lower_text and not _sentence_start(text, start)
        if len(run) == 1 and (first_hit or (last_hit and (cue or mid_sentence))):
            sentence_start = _sentence_start(text, start)
            if lower_text and not cue and not first_hit:
                return False
            score = 0.65 if (sentence_start and not cue) else 0.75
            return Span(start, end, "PERSON", score, self.name, weak=weak)
        if strong and not lower_text:
            return Span(start, end, "PERSON", 0.6, self.name)
        return None if not lower_text and not _sentence_start(text, start) else False

    def _surname(self, m: re.Match[str]) -> bool:
        """A surname: on the list, or a capitalised word English has no use for (Koumura,
        Langset), unlike the Code, Opus or SDK that follow a first name in product names."""
        key = self._key(m)
        if key in self.last:
            return True
        word = m.group()
        return word[:1].isupper() and not word.isupper() and key not in english_words()

    def _code(self, text: str, m: re.Match[str]) -> bool:
        """An identifier in code or JSON: glued to code punctuation, or camelCase that no
        name list knows (McDonald and DeAndre are names; NotebookEdit is not)."""
        start, end = m.span()
        if start and _CODE_BEFORE.match(text, max(0, start - 2) if text[start - 1] == "." else
                                        start - 1, start):
            return True
        if _CODE_AFTER.match(text, end):
            return True
        w = m.group()
        if not _CAMEL.search(w) or _NAME_CAMEL.fullmatch(w):
            return False
        key = self._key(m)
        return key not in self.first and key not in self.last

    @staticmethod
    def _key(m: re.Match[str]) -> str:
        """Lowercased word without a possessive ending ("Thomas's", "Jones'")."""
        return _POSSESSIVE.sub("", m.group().lower())


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".!?\n>\"'("
