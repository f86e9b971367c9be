"""Secrets: provider key formats, private keys, passwords after a context word, and
long random-looking tokens (high Shannon entropy)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

from ownlight.privacy.spans import Span

_L = r"(?<![A-Za-z0-9_\-])"
_R = r"(?![A-Za-z0-9_\-])"

# Well-known token formats; each prefix is specific enough to need no entropy check.
PROVIDER_PATTERNS: tuple[tuple[str, str], ...] = (
    ("openai", r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    ("anthropic", r"sk-ant-[A-Za-z0-9_\-]{20,}"),
    ("aws_access_key", r"(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}"),
    ("github", r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,}"),
    ("gitlab", r"glpat-[A-Za-z0-9_\-]{20}"),
    ("slack", r"xox[abposr]-[A-Za-z0-9\-]{10,}"),
    ("google", r"AIza[0-9A-Za-z_\-]{35}"),
    ("stripe", r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("huggingface", r"hf_[A-Za-z0-9]{30,}"),
    ("jwt", r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
)
_PROVIDERS = re.compile(_L + "(?:" + "|".join(p for _, p in PROVIDER_PATTERNS) + ")" + _R)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)"
)
_PASSWORD = re.compile(
    r"(?i:password|passwd|passphrase|(?<![A-Za-z])(?P<common>pwd|pass|secret|token)|"
    r"api[_ ]?key|口令|密码|密碼|パスワード|暗証番号|пароль|токен|ключ)"
    r"(?:(?P<said>\s*(?:is|was|:|=|：|は|为|是|—|-)\s*)|\s+)[\"'「“`]?"
    r"(?P<value>[^\s\"'」”，。、,;`]{4,64})"
)
# What ends a sentence or a clause is not part of the value ("the token budget.").
_TRAILING = ".:)]}>"
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~-]*")
# Values that name a secret rather than hold one: $TOKEN, <your-key>, {{ secret }},
# os.environ["KEY"], getenv("KEY"), OPENAI_API_KEY, settings.token.
_REFERENCE = re.compile(r"[$<{%(\[*].*|.*[(\[].*|[A-Z][A-Z0-9]*_[A-Z0-9_]+|[a-z_]+(?:\.[a-z_]+)+")
_TOKEN = re.compile(_L + r"[A-Za-z0-9_\-+/=]{20,}" + _R)
_NOT_PASSWORD = frozenset({"reset", "change", "changed", "manager", "policy", "required", "the",
                           "your", "please", "expired", "field", "length", "strength"})


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(s)
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(token: str) -> bool:
    """Long, mixed letters and digits, high entropy: a key, not a word or a hash of a word.

    A path (``r0/openai-docs/SKILL.md``, ``/tmp/tmpz6p9l29b``) is judged segment by
    segment: it is a secret only if one of its segments is one.
    """
    if _is_path(token):
        return any(looks_random(part) for part in token.split("/"))
    if len(token) < 20 or not any(c.isdigit() for c in token):
        return False
    if not (any(c.islower() for c in token) and any(c.isupper() for c in token)):
        return False  # hex digests and upper-case ids are ids, not secrets
    return entropy(token) >= 4.0


class SecretRecognizer:
    name = "secrets"

    def find(self, text: str) -> Iterator[Span]:
        for m in _PRIVATE_KEY.finditer(text):
            yield Span(m.start(), m.end(), "SECRET", 0.99, self.name)
        for m in _PROVIDERS.finditer(text):
            yield Span(m.start(), m.end(), "SECRET", 0.97, self.name)
        for m in _PASSWORD.finditer(text):
            value = m.group("value").rstrip(_TRAILING)
            if (len(value) < 4 or value.lower() in _NOT_PASSWORD or value.startswith("-")
                    or _REFERENCE.fullmatch(value)):
                continue
            # "password: s3cr3t!" and "password letmein!" say it is one. After an everyday
            # word with nothing between ("token budget", "pass arrays/objects", "pass
            # `run_in_background`"), the value must look made up by itself.
            plain = m.group("common") is not None and not m.group("said")
            if not (_random_enough(value) if plain else _password_like(value)):
                continue
            start = m.start("value")
            yield Span(start, start + len(value), "SECRET", 0.85, self.name)
        for m in _TOKEN.finditer(text):
            if looks_random(m.group()):
                yield Span(m.start(), m.end(), "SECRET", 0.7, self.name)


def _is_path(token: str) -> bool:
    """Segments between slashes, each a word, a name or a number: not a blob of base64."""
    parts = [p for p in token.split("/") if p]
    return len(parts) > 1 and "+" not in token and "=" not in token and all(
        _PATH_SEGMENT.fullmatch(p) and _case_changes(p) <= 1 for p in parts)


def _case_changes(word: str) -> int:
    """Lower-to-upper steps inside a word: camelCase has one or two, random text many."""
    return sum(a.islower() and b.isupper() for a, b in zip(word, word[1:], strict=False))


def _random_enough(value: str) -> bool:
    """A digit or capitals inside it, and not a path of words."""
    if "/" in value and _is_path(value):
        return False
    inner_caps = any(c.isupper() for c in value[1:]) and any(c.islower() for c in value)
    return any(c.isdigit() for c in value) or inner_caps


def _password_like(value: str) -> bool:
    """A password has a digit, a symbol or mixed case; plain words after 'password' rarely are."""
    classes = sum(
        (
            any(c.isdigit() for c in value),
            any(c.isupper() for c in value),
            any(c.islower() for c in value),
            any(not c.isalnum() for c in value),
        )
    )
    return classes >= 2 and not value.isalpha()
