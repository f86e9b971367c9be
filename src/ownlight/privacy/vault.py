"""Pseudonymization vault: real values out, consistent placeholders in, and back.

One Vault per conversation. The mapping lives only in this object (never logged: repr hides
it); a lock guards it, so concurrent turns of one conversation are safe, and separate
conversations share nothing. Per-type actions: ``redact`` (placeholder, restored later),
``mask`` (placeholder without a number, never restored), ``block`` (raise).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import orjson

from ownlight.errors import PolicyRefused
from ownlight.privacy.spans import Span

ACTIONS = ("redact", "mask", "block")
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)_(\d+)>")

Escape = Callable[[str], str]


def json_escape(value: str) -> str:
    """``value`` as it must appear inside a JSON string, so restored JSON stays valid."""
    return orjson.dumps(value).decode()[1:-1]


class Blocked(PolicyRefused):
    """The text holds a type whose action is ``block``; carries types, never values."""

    def __init__(self, types: Iterable[str]):
        self.types = sorted(set(types))
        super().__init__(
            "request refused: it contains data of a blocked type: " + ", ".join(self.types),
            code="sensitive_data_blocked",
        )


class Scanner(Protocol):
    def scan(self, text: str) -> list[Span]: ...


class Vault:
    def __init__(
        self,
        detector: Scanner | None = None,
        actions: Mapping[str, str] | None = None,
        default_action: str = "redact",
    ):
        self.detector = detector
        self.actions = {k: _check(v) for k, v in dict(actions or {}).items()}
        self.default_action = _check(default_action)
        self._lock = threading.Lock()
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counters: dict[str, int] = {}
        self._identifiers: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<Vault placeholders={len(self._by_placeholder)}>"

    def action(self, type_: str) -> str:
        return self.actions.get(type_, self.default_action)

    def blocked_types(self, spans: Iterable[Span]) -> list[str]:
        return sorted({s.type for s in spans if self.action(s.type) == "block"})

    def pseudonymize(self, text: str, spans: Sequence[Span] | None = None) -> str:
        """Replace each span by its placeholder; raises Blocked for a ``block`` type."""
        if spans is None:
            if self.detector is None:
                raise ValueError("no spans given and no detector configured")
            spans = self.detector.scan(text)
        blocked = self.blocked_types(spans)
        if blocked:
            raise Blocked(blocked)
        out: list[str] = []
        pos = 0
        for span in sorted(spans, key=lambda s: s.start):
            if span.start < pos:
                continue
            out.append(text[pos : span.start])
            out.append(self.placeholder(span.type, text[span.start : span.end]))
            pos = span.end
        out.append(text[pos:])
        return "".join(out)

    def placeholder(self, type_: str, value: str) -> str:
        """The placeholder for ``value``: the same value always gets the same one."""
        tag = re.sub(r"[^A-Z0-9_]", "_", type_.upper())
        if self.action(type_) == "mask":
            return f"<{tag}>"
        key = (tag, " ".join(value.split()).casefold())
        with self._lock:
            found = self._by_value.get(key)
            if found is None:
                n = self._counters.get(tag, 0) + 1
                self._counters[tag] = n
                found = f"<{tag}_{n}>"
                self._by_value[key] = found
                self._by_placeholder[found] = value
            return found

    def identifier(self, type_: str, value: str) -> str:
        """A placeholder for a value that must stay an identifier (a tool or speaker name).

        ``PERSON_1`` instead of ``<PERSON_1>``: wire protocols only accept
        ``[a-zA-Z0-9_-]`` there. Restored by ``restore_identifier`` on an exact match.
        """
        bracketed = self.placeholder(type_, value)
        plain = bracketed.strip("<>")
        with self._lock:
            self._identifiers[plain] = self._by_placeholder.get(bracketed, value)
        return plain

    def restore_identifier(self, name: str) -> str:
        with self._lock:
            return self._identifiers.get(name, name)

    def restore(self, text: str, escape: Escape | None = None) -> str:
        """Put real values back for every known placeholder; unknown ones stay as they are.

        ``escape`` encodes each value for where it lands (``json_escape`` inside JSON).
        """
        with self._lock:
            table = dict(self._by_placeholder)
        if not table or "<" not in text:
            return text
        if escape is None:
            return _PLACEHOLDER.sub(lambda m: table.get(m.group(), m.group()), text)
        return _PLACEHOLDER.sub(
            lambda m: escape(table[m.group()]) if m.group() in table else m.group(), text)

    def placeholders(self) -> list[str]:
        with self._lock:
            return list(self._by_placeholder)

    def counts(self) -> dict[str, int]:
        """Placeholders per type, for the audit record (no values)."""
        with self._lock:
            return dict(self._counters)


class StreamRestorer:
    """Restores a streamed answer chunk by chunk.

    Holds back only a tail that is a proper prefix of a known placeholder (it may complete
    in the next chunk); everything else is emitted at once, so no half placeholder is ever
    shown and nothing is delayed without need.
    """

    def __init__(self, vault: Vault, escape: Escape | None = None):
        self.vault = vault
        self.escape = escape
        self._buffer = ""

    def feed(self, chunk: str) -> str:
        buf = self._buffer + chunk
        cut = buf.rfind("<")
        if cut >= 0 and self._could_complete(buf[cut:]):
            self._buffer = buf[cut:]
            return self.vault.restore(buf[:cut], self.escape)
        self._buffer = ""
        return self.vault.restore(buf, self.escape)

    def flush(self) -> str:
        buf, self._buffer = self._buffer, ""
        return self.vault.restore(buf, self.escape)

    def _could_complete(self, tail: str) -> bool:
        return any(p.startswith(tail) and p != tail for p in self.vault.placeholders())


def _check(action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown privacy action {action!r}; expected one of {ACTIONS}")
    return action
