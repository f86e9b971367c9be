"""Regenerate the name lists in src/ownlight/data/privacy/ from Faker's person providers.

Faker (MIT) is used only here, at build time; the runtime reads the plain text files.
Run: python bench/make_name_lists.py   (needs `pip install faker`)
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "ownlight" / "data" / "privacy"
LATIN_LOCALES = [
    "en_US", "en_GB", "en_IE", "en_AU", "en_CA", "en_IN", "de_DE", "de_AT", "de_CH", "fr_FR",
    "es_ES", "es_MX", "it_IT", "pt_BR", "pt_PT", "nl_NL", "nl_BE", "pl_PL", "sv_SE", "da_DK",
    "no_NO", "fi_FI", "cs_CZ", "sk_SK", "hr_HR", "sl_SI", "et_EE", "lv_LV", "lt_LT", "hu_HU",
    "ro_RO", "tr_TR", "id_ID", "fil_PH", "sq_AL", "is_IS", "ga_IE",
]
LATIN = re.compile(r"[A-Za-z\u00C0-\u024F][A-Za-z\u00C0-\u024F'’-]+")
# Capitalized words that are far more often not names in English text.
EXTRA_COMMON = """a about after all also am an and any are as at be been but by can could day did do
does dear each else even ever every few for from get go good got had has have he her here him his
how i if in into is it its just know let like long made make many may me might more most much must
my new no not now of off oh old on once one only or other our out over own please said same say see
she should so some such than thanks thank that the their them then there these they this those to
too under up us very was way we well were what when where which while who whom why will with would
yes yet you your hello hi regards best kind sincerely mr mrs ms dr prof sir madam ok okay love
march april june july august may monday tuesday wednesday thursday friday saturday sunday january
february september october november december christmas easter god lord king queen prince princess
street road avenue lane drive court place suite apt north south east west city state county park
bank card account number phone email address company group inc ltd llc corp office house home
world china japan russia america england france germany spain italy india brazil canada australia
mark bill will rose grant hope faith joy art chance summer winter autumn dawn sky river ray guy
bob sunny rich young white black brown green gray grey hill wood woods stone moon star""".split()


def _load(locale: str):  # noqa: ANN202 - Faker's classes
    return importlib.import_module(f"faker.providers.person.{locale}").Provider


def _names(provider, attr: str) -> set[str]:
    value = getattr(provider, attr, ()) or ()
    return {str(v) for v in value}


def main() -> None:
    import faker.providers.lorem.en_US as lorem

    common = {w.lower() for w in lorem.Provider.word_list} | set(EXTRA_COMMON)
    first: set[str] = set()
    last: set[str] = set()
    for loc in LATIN_LOCALES:
        try:
            p = _load(loc)
        except ModuleNotFoundError:
            continue
        for attr in ("first_names", "first_names_male", "first_names_female"):
            first |= {n for n in _names(p, attr) if LATIN.fullmatch(n)}
        for attr in ("last_names", "last_names_male", "last_names_female"):
            last |= {n for n in _names(p, attr) if LATIN.fullmatch(n)}
    first = {n.lower() for n in first if n.lower() not in common and len(n) > 2}
    last = {n.lower() for n in last if n.lower() not in common and len(n) > 2}
    ru = _load("ru_RU")
    ru_first = _names(ru, "first_names_male") | _names(ru, "first_names_female")
    ru_last = _names(ru, "last_names_male") | _names(ru, "last_names_female")
    zh = _load("zh_CN")
    zh_surnames = {s for s in _names(zh, "last_names") if 1 <= len(s) <= 2}
    ja = _load("ja_JP")
    ja_surnames = _names(ja, "last_names")
    ja_given = _names(ja, "first_names")
    OUT.mkdir(parents=True, exist_ok=True)
    for name, values in {
        "en_common_words.txt": common,
        "latin_first_names.txt": first,
        "latin_last_names.txt": last,
        "ru_first_names.txt": {v.lower() for v in ru_first},
        "ru_last_names.txt": {v.lower() for v in ru_last},
        "zh_surnames.txt": zh_surnames,
        "ja_surnames_faker.txt": ja_surnames,
        "ja_given_names.txt": ja_given,
    }.items():
        (OUT / name).write_text("\n".join(sorted(values)) + "\n", encoding="utf-8")
        print(name, len(values))


if __name__ == "__main__":
    main()
