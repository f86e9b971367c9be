"""Every console string is in every language, and no template carries text of its own.

The catalogues are read the way the console reads them (every ``catalogues/<lang>/*.json``),
so the admin views' files are held to the same rule as the chat's.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ownlight.console import i18n

CONSOLE = Path(i18n.__file__).parent
TEMPLATES = sorted((CONSOLE / "templates").rglob("*.html"))
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
USED_KEY = re.compile(r"""\bt\(\s*["']([\w.\-]+)["']""")
# attributes a person reads or a screen reader speaks
READ_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "aria-description", "value"}
WORDLESS = re.compile(r"^[\s\W\d_]*$")  # punctuation, digits, symbols: nothing to translate


def test_every_key_is_in_all_four_languages() -> None:
    keys = {lang: set(i18n.catalogue(lang)) for lang in i18n.LANGUAGES}
    every = set().union(*keys.values())
    missing = {lang: sorted(every - have) for lang, have in keys.items() if every - have}
    assert not missing, f"keys missing from a language: {missing}"
    empty = [(lang, k) for lang in i18n.LANGUAGES for k, v in i18n.catalogue(lang).items()
             if not v.strip()]
    assert not empty, f"empty texts: {empty}"


def test_every_key_a_template_or_the_script_asks_for_exists() -> None:
    sources = [*TEMPLATES, *(CONSOLE / "static").glob("*.js"), *CONSOLE.rglob("*.py")]
    used = {key for path in sources for key in USED_KEY.findall(path.read_text(encoding="utf-8"))}
    assert used, "no t(...) call found: the pattern no longer matches the templates"
    unknown = sorted(used - set(i18n.catalogue(i18n.DEFAULT)))
    assert not unknown, f"keys used but not in the catalogues: {unknown}"


def test_a_translation_keeps_the_placeholders_of_the_english_text() -> None:
    english = i18n.catalogue("en")
    slots = re.compile(r"\{(\w+)\}")
    wrong = [(lang, key) for lang in i18n.LANGUAGES for key, text in i18n.catalogue(lang).items()
             if set(slots.findall(text)) != set(slots.findall(english.get(key, "")))]
    assert not wrong, f"placeholders differ from English: {wrong}"


class _Literals(HTMLParser):
    """Text nodes and read-aloud attributes left after the Jinja expressions are removed."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in READ_ATTRIBUTES and value and not WORDLESS.match(value):
                self.found.append(f"<{tag} {name}={value!r}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        if not self._skip and not WORDLESS.match(data):
            self.found.append(data.strip())


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(CONSOLE)))
def test_templates_hold_no_untranslated_text(template: Path) -> None:
    parser = _Literals()
    parser.feed(JINJA.sub(" ", template.read_text(encoding="utf-8")))
    assert not parser.found, f"{template.name}: text outside the catalogues: {parser.found}"


def test_the_checker_catches_a_literal() -> None:
    parser = _Literals()
    parser.feed(JINJA.sub(" ", '<p>{{ t("chat.send") }} Send now</p><input placeholder="Ask">'))
    assert parser.found == ["Send now", "<input placeholder='Ask'>"]
