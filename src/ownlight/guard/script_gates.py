"""The guard's phrase families, searched only in the scripts a text is written in.

Each family (``features._CUES``) is one regular expression whose alternatives are English,
Chinese, Japanese and Russian phrases. Python's ``re`` tries every alternative at every
position, so an English message paid for the Chinese and Russian ones too: the families
were two fifths of the user-input guard's time. An alternative that cannot match without
a letter of some script (a Cyrillic word needs a Cyrillic letter) is skipped when the text
has none; the rest always run. Which script an alternative needs is read from its parsed
form, not declared by hand, so a phrase added to a family is gated without anyone
remembering to; an alternative the reader does not follow (or a Python whose ``re`` parser
is not at hand) always runs. Whether a family matches is unchanged, only faster
(``tests/test_guard_script_gates.py`` compares both on every eval text).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

# Letters of a script under IGNORECASE (so "[a-z]" also holds the Kelvin sign and the long
# s that case-fold to ASCII letters); punctuation and digits belong to none.
SCRIPTS = {"latin": "[a-z]", "cyrillic": "[\u0400-\u04ff]",
           "cjk": "[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]"}
_PRESENT = {name: re.compile(letters, re.IGNORECASE) for name, letters in SCRIPTS.items()}

try:  # the parser behind re.compile; private, so its absence only costs speed
    import re._constants as _ops
    import re._parser as _parser
except ImportError:  # pragma: no cover - depends on the Python release
    _parser = _ops = None  # type: ignore[assignment]


def scripts_in(text: str) -> frozenset[str]:
    """The scripts ``text`` has at least one letter of."""
    return frozenset(name for name, letters in _PRESENT.items() if letters.search(text))


class GatedPattern:
    """One family: for each set of scripts present, the pattern of the alternatives that can
    match in such a text (``None`` when none can)."""

    def __init__(self, pattern: re.Pattern[str]):
        self.pattern = pattern
        self._by_script: dict[str | None, list[str]] = {}
        for alternative in top_level_alternatives(pattern.pattern):
            needs = script_needed(alternative, pattern.flags)
            self._by_script.setdefault(needs, []).append(alternative)
        self._for: dict[frozenset[str], re.Pattern[str] | None] = {}

    def search(self, text: str, scripts: frozenset[str] | None = None) -> bool:
        """Whether the family matches ``text`` (whose ``scripts_in`` may be given)."""
        scripts = scripts_in(text) if scripts is None else scripts
        if scripts not in self._for:  # compiled the first time a text has these scripts
            self._for[scripts] = self._compiled(scripts)
        gated = self._for[scripts]
        return gated is not None and gated.search(text) is not None

    def _compiled(self, scripts: frozenset[str]) -> re.Pattern[str] | None:
        kept = [alternative for needs, alternatives in self._by_script.items()
                if needs is None or needs in scripts for alternative in alternatives]
        return re.compile("|".join(kept), self.pattern.flags) if kept else None


def top_level_alternatives(source: str) -> list[str]:
    """``source`` cut at each ``|`` outside groups and character classes."""
    parts: list[str] = []
    depth, start, at, in_class = 0, 0, 0, False
    while at < len(source):
        char = source[at]
        if char == "\\":
            at += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            at += source.startswith("^", at + 1)
            at += source.startswith("]", at + 1)  # a "]" first in a class is a literal
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif char == "|" and depth == 0:
            parts.append(source[start:at])
            start = at + 1
        at += 1
    return [*parts, source[start:]]


def script_needed(alternative: str, flags: int) -> str | None:
    """A script every match of ``alternative`` has a letter of, or None."""
    if _parser is None:
        return None
    needed = _needs(_parser.parse(alternative, flags).data, flags)
    return min(needed) if needed else None


@cache
def _script_of(code: int, flags: int) -> str | None:
    char = chr(code)
    return next((name for name, letters in SCRIPTS.items()
                 if re.fullmatch(letters, char, flags)), None)


def _needs(sequence: Any, flags: int) -> set[str]:
    """Scripts every match of a parsed sequence has a letter of."""
    needed: set[str] = set()
    for op, arg in sequence:
        needed |= _item_needs(op, arg, flags)
    return needed


def _item_needs(op: Any, arg: Any, flags: int) -> set[str]:
    if op is _ops.LITERAL:
        script = _script_of(arg, flags)
        return {script} if script else set()
    if op is _ops.IN:
        return _class_needs(arg, flags)
    if op is _ops.BRANCH:  # each branch must need it
        return set.intersection(*(_needs(branch, flags) for branch in arg[1]))
    if op is _ops.SUBPATTERN:
        return _needs(arg[3], flags)
    if op in (_ops.MAX_REPEAT, _ops.MIN_REPEAT, getattr(_ops, "POSSESSIVE_REPEAT", None)):
        return _needs(arg[2], flags) if arg[0] >= 1 else set()
    if op is getattr(_ops, "ATOMIC_GROUP", None):
        return _needs(arg, flags)
    return set()  # anything else (\w, lookarounds, anchors, negated chars) needs nothing


def _class_needs(members: Any, flags: int) -> set[str]:
    """A character class needs a script when every character it holds is of that one."""
    scripts: set[str | None] = set()
    for op, arg in members:
        if op is _ops.LITERAL:
            scripts.add(_script_of(arg, flags))
        elif op is _ops.RANGE and arg[1] - arg[0] < 1024:
            scripts |= {_script_of(code, flags) for code in range(arg[0], arg[1] + 1)}
        else:  # NEGATE, a category, a wide range: taken as any character at all
            return set()
    return {script for script in scripts if script} if len(scripts) == 1 and None not in \
        scripts else set()
