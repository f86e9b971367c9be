"""The privacy shield on tool arguments and results: every string of the JSON arguments is
scanned as a model request's tool-call arguments are (a value read with its key), refused
at the red line, pseudonymized for a server outside the domain and restored in the result."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from ownlight.errors import PolicyRefused
from ownlight.privacy.detector import PROSE, Reading
from ownlight.privacy.spans import Span
from ownlight.privacy.stage import PrivacyShield
from ownlight.privacy.vault import Vault


def map_strings(value: Any, change: Callable[[str, str | None], str], key: str | None = None
                ) -> Any:
    """``value`` with every string (keys included, their key None) passed through ``change``."""
    if isinstance(value, str):
        return change(value, key)
    if isinstance(value, list):
        return [map_strings(v, change, key) for v in value]
    if isinstance(value, dict):
        return {change(k, None) if isinstance(k, str) else k: map_strings(v, change, k)
                for k, v in value.items()}
    return value


def strings(value: Any, key: str | None = None) -> list[tuple[str, str | None, bool]]:
    """Every string in ``value``: (text, its key, whether it is itself a key)."""
    out: list[tuple[str, str | None, bool]] = []
    if isinstance(value, str):
        out.append((value, key, False))
    elif isinstance(value, list):
        for v in value:
            out.extend(strings(v, key))
    elif isinstance(value, dict):
        for k, v in value.items():
            out.append((k, None, True))
            out.extend(strings(v, k))
    return out


class ArgumentShield:
    """Scan, refuse and pseudonymize one call's arguments; restore its result."""

    def __init__(self, shield: PrivacyShield, red_line: Collection[str]):
        self.shield = shield
        self.red_line = frozenset(red_line)

    def protect(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], Vault, dict[str, int]]:
        """The arguments as they may leave, the vault to restore with, and what was found.
        Raises ``PolicyRefused`` (nothing may be sent) at the red line or for a sensitive
        field name."""
        found: dict[str, list[Span]] = {}
        for text, key, is_key in strings(arguments):
            if not text.strip() or text in found:
                continue
            reading = PROSE if is_key or key is None else Reading(key=key)
            spans = self.shield.scan(text, reading)
            if spans and is_key:
                raise PolicyRefused(
                    "A field name in these tool arguments holds sensitive data; it may not "
                    "leave the domain. Nothing was sent.", code="sensitive_field_name")
            found[text] = spans
        all_spans = [s for s in found.values() if s]
        counts: dict[str, int] = {}
        for spans in all_spans:
            for span in spans:
                counts[span.type] = counts.get(span.type, 0) + 1
        level = self.shield.level(all_spans)
        if level in self.red_line:
            raise PolicyRefused(
                f"These tool arguments hold {level} data, which may not leave the domain. "
                "Nothing was sent.", code="policy_local_only")
        vault = self.shield.egress().vault
        blocked = vault.blocked_types(s for spans in all_spans for s in spans)
        if blocked:
            raise PolicyRefused(
                "These tool arguments hold data of a type that may not leave the domain ("
                + ", ".join(sorted(blocked)) + "). Nothing was sent.",
                code="sensitive_data_blocked")
        if not all_spans:
            return arguments, vault, counts

        def replace(text: str, key: str | None) -> str:
            spans = found.get(text)
            return vault.pseudonymize(text, spans) if spans else text

        return map_strings(arguments, replace), vault, counts

    @staticmethod
    def restore(value: Any, vault: Vault) -> Any:
        """Placeholders in every string of ``value`` back to the real values."""
        if not vault.placeholders():
            return value
        return map_strings(value, lambda text, _key: vault.restore(text))
