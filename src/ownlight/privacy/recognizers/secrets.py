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
    r"(?i:password|passwd|passphrase|pwd|pass|secret|token|api[_ ]?key|口令|密码|密碼|"
    r"パスワード|暗証番号|пароль|токен|ключ)"
    r"(?:\s*(?:is|was|:|=|：|は|为|是|—|-)\s*|\s+)[\"'「“]?"
    r"(?P<value>[^\s\"'」”，。、,;]{4,64})"
)
_TOKEN = re.compile(_L + r"[A-Za-z0-9_\-+/=]{20,}" + _R)
_NOT_PASSWORD = frozenset({"reset", "change", "changed", "manager", "policy", "required", "the",
                           "your", "please", "expired", "field", "length", "strength"})


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(s)
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(token: str) -> bool:
    """Long, mixed letters and digits, high entropy: a key, not a word or a hash of a word."""
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
            value = m.group("value")
            if value.lower() in _NOT_PASSWORD or not _password_like(value):
                continue
            yield Span(m.start("value"), m.end("value"), "SECRET", 0.85, self.name)
        for m in _TOKEN.finditer(text):
            if looks_random(m.group()):
                yield Span(m.start(), m.end(), "SECRET", 0.7, self.name)


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
