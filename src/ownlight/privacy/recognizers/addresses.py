"""Street addresses (Latin script): a house number near a street word, or an address cue
("lives at", "address:"), then the address is followed through unit, city, country and
postcode, across line breaks. Rules, not a model: addresses are where NER models are weakest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ownlight.privacy.spans import Span

_STREET = (
    r"street|st|road|rd|avenue|ave|av|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|"
    r"square|sq|terrace|close|crescent|highway|hwy|parkway|pkwy|circle|cir|trail|row|walk|"
    r"gardens|mews|alley|rue|rua|avenida|calle|carrer|via|viale|piazza|ul|ulica|strada|estrada|"
    r"ctra|allee|gasse|platz|weg|straße|strasse|laan|straat|utca|caddesi|sokak|p\.?o\.? box"
)
_STREET_WORD = re.compile(rf"(?i:\b(?:{_STREET})\b\.?|\w+(?:straße|strasse|gatan|vägen|vej|katu|"
                          r"gade|veien|weg|laan|straat|allee)\b)")
_NUMBER = re.compile(
    r"(?<![\w.,:/-])(?:(?i:unit|suite|apt\.?) )?\d{1,5}[A-Za-z]?(?![\w.:/-]|,\d)"
)
_CUE = re.compile(
    r"(?i:address(?:\s+is|\s*:)?|lives? at|living at|located at|sent to|send it to|ship to|"
    r"deliver(?:ed)? to|moved to|office is at|is at|meet(?:ing)? at|corner of|"
    r"mailing address|billing address|home address)\s*:?\s*$"
)
_UNIT = re.compile(r"(?i:apt\.?|apartment|suite|ste\.?|unit|floor|fl\.?|room|box|building|bldg)")
_UNIT_NEAR = re.compile(
    r"[^\n@]{2,40}\n[\s>?]*(?i:apt\.?|apartment|suite|unit)\s*\d"
    r"|[ \t]+[^\W\d][^\n@]{1,40}\n[^\n@]{2,40}\n[^\n@]{1,30}\d{4,6}\s*$",
    re.M,
)
_STOP = frozenset(
    """for this that last night the and but is was will please thanks thank if when so or i
    we you he she they it my our your their on in of by since until before after yesterday
    today tomorrow because which who with from as to be been has have had are were""".split()
)
_TOKEN = re.compile(r"[^\s,]+|\n|,")
_MAX_TOKENS = 22
# US military mail (USPS standard): "USNS Name / FPO AE 12345", "PSC 1234, Box 5678 / APO AA
# 12345", "Unit 1234 Box 5678 / DPO AP 12345".
_MILITARY = re.compile(
    r"(?:\b(?:USNS|USNV|USS|USCGC) [^\W\d][^\n,]{1,40}|\bPSC \d{3,5}, Box \d{3,5}"
    r"|\bUnit \d{3,5},? Box \d{3,5})[\s,]+[ADF]PO A[AEP] \d{5}\b"
)
# Continental order, street name then house number: "Gesäusestrasse 6", "Via Scala 50",
# "ul. Posejdona 90", "Bem rakpart 79".
_CONTINENTAL = re.compile(
    r"(?<![\w-])(?:\d{1,5}[A-Za-z]? )?"
    r"(?:(?i:via|viale|rue|calle|c/|carrer|rua|travessa|avenida|av\.|ul\.|ulica|"
    r"piazza|strada|estrada|plaza|paseo|rambla|camino|chemin|boulevard|bd\.|allée|aleja|al\.)"
    r" (?:[^\W\d][\w'’.-]* ){0,4}"
    r"|[^\W\d][\w'’-]*(?i:straße|strasse|str\.|gatan|vägen|vej|katu|tie|gade|veien|vegen|weg|"
    r"laan|straat|gracht|plein|allee|gasse|platz|utca|rakpart|körút|útja|ulice) "
    r"(?:[^\W\d][\w'’.-]* )?)"
    r"\d{1,5}[A-Za-z]?(?![\w/-])"
)
# Building number, street words, house number: "30 Kooli 11", "25 Rákóczi út 81", the shape
# of a street line written in continental order after a building or PO number.
_SANDWICH = re.compile(
    r"\d{1,5}[A-Za-z]? (?:[^\W\d_][\w'’.-]*,? ){1,4}\d{1,5}[A-Za-z]?(?![\w/:-]|[.,]\d)"
)
_PHONE_LINE = re.compile(r"[^\n]*?(?:\d[^\n]*?){7}|[^\n]*@")


class AddressRecognizer:
    name = "addresses"

    def find(self, text: str) -> Iterator[Span]:
        if not any(c.isdigit() for c in text):
            return
        last_end = -1
        continental = list(_CONTINENTAL.finditer(text))
        inner = {c.end() - len(c.group().rsplit(" ", 1)[-1]) for c in continental}
        for m in _NUMBER.finditer(text):
            if m.start() < last_end or m.start() in inner:
                continue  # the house number of "Corellistraat 178" starts nothing
            window = text[m.end() : m.end() + 60]
            street = _STREET_WORD.search(window.split("\n")[0][:45])
            cue = _CUE.search(text, max(0, m.start() - 40), m.start())
            unit = _UNIT_NEAR.match(window)
            sandwich = _SANDWICH.match(text, m.start())
            if sandwich and not (text[m.end() + 1].isupper() or not any(
                    c.isupper() for c in text)):
                sandwich = None
            if not (street or cue or unit or sandwich):
                continue
            if not street and not _followed_by_name(text, m.end()):
                continue
            end = max(self._extend(text, m.start(), sandwich.end() if sandwich else 0),
                      sandwich.end() if sandwich else 0)
            if end - m.start() < 6:
                continue
            last_end = end
            score = 0.85 if (street or unit or sandwich) else 0.6
            yield Span(m.start(), end, "STREET_ADDRESS", score, self.name)
        for m in _MILITARY.finditer(text):
            yield Span(m.start(), m.end(), "STREET_ADDRESS", 0.85, self.name)
        for m in continental:
            end = self._extend(text, m.end()) if text[m.end() : m.end() + 1] == "\n" else m.end()
            yield Span(m.start(), max(end, m.end()), "STREET_ADDRESS", 0.75, self.name)

    @staticmethod
    def _extend(text: str, start: int, settled: int = 0) -> int:
        """Walk tokens until one that cannot belong to an address; tokens before ``settled``
        are already known to belong (lowercase particles such as "du", "út")."""
        lower = not any(c.isupper() for c in text)
        end = start
        count = 0
        newlines = 0
        for t in _TOKEN.finditer(text, start):
            tok = t.group()
            count += 1
            if count > _MAX_TOKENS:
                break
            if tok == "\n":
                newlines += 1
                if newlines > 5 or text[t.end() : t.end() + 1] == "\n":
                    break
                if _PHONE_LINE.match(text, t.end()):
                    break  # a phone, fax or e-mail line closes an address block
                continue
            if tok == "," or not any(c.isalnum() for c in tok) or t.end() <= settled:
                end = max(end, t.end()) if t.end() <= settled else end
                continue
            word = tok.strip(".;:!?()\"'>").lower()
            if word in _JOINERS and newlines and _capitalized_next(text, t.end()):
                continue  # "Antigua and Barbuda", "Republic of Ireland"
            if "@" in tok or (word in _STOP and count > 1):
                break
            ok = (
                tok[0].isdigit()
                or tok[0].isupper()
                or _UNIT.fullmatch(word) is not None
                or (lower and word.isalpha())
                or word in ("de", "des", "da", "do", "del", "la", "le", "nad", "am", "an", "van")
            )
            if not ok:
                break
            digits = sum(c.isdigit() for c in tok)
            if digits > 6:
                break  # a phone or card number, not part of the address
            end = t.end()
            if tok.endswith((".", "!", "?")) and not _UNIT.fullmatch(word) and len(word) > 3:
                end -= 1
                break
        return end


_JOINERS = frozenset({"and", "of", "the"})


def _capitalized_next(text: str, pos: int) -> bool:
    nxt = text[pos : pos + 3].lstrip(" ")
    return bool(nxt) and nxt[0].isupper()


def _followed_by_name(text: str, pos: int) -> bool:
    """After a cue, a number starts an address only when a word follows it."""
    nxt = text[pos : pos + 30].lstrip(" ")
    return bool(nxt) and (nxt[0].isalpha())
