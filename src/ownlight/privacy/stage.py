"""The privacy shield as the pipeline uses it: classify, protect egress, restore.

The pipeline hands over OpenAI request bodies; this module finds the text in them
(message contents and their text parts, a completion prompt, embedding inputs), scans
each piece once, and rewrites copies of the body with placeholders when a request
leaves the domain. The real values stay in a per-request ``Vault`` in memory.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ownlight.backends.base import Json, Operation
from ownlight.privacy.detector import Detector
from ownlight.privacy.levels import LevelPolicy
from ownlight.privacy.spans import Span
from ownlight.privacy.vault import StreamRestorer, Vault

Slot = tuple[Any, ...]  # a path into the body: keys and indexes


@dataclass
class Findings:
    """What the classify stage saw in one request. Types and counts only leave here."""

    slots: list[Slot]
    texts: list[str]
    spans: list[list[Span]]
    level: str

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(s.type for spans in self.spans for s in spans))

    @property
    def any(self) -> bool:
        return any(self.spans)


@dataclass
class Egress:
    """One request's trip outside the domain: its vault and the stream restorers."""

    vault: Vault
    restorers: dict[int, StreamRestorer] = field(default_factory=dict)

    def restore_body(self, body: Json) -> Json:
        if not self.vault.placeholders():
            return body
        for choice in body.get("choices") or []:
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                message["content"] = self.vault.restore(message["content"])
            if isinstance(choice.get("text"), str):
                choice["text"] = self.vault.restore(choice["text"])
        return body

    def restore_chunk(self, chunk: Json) -> Json:
        """Restore a stream chunk; text that may be half a placeholder waits for the next."""
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            restorer = self.restorers.setdefault(index, StreamRestorer(self.vault))
            delta = choice.get("delta")
            holder, key = (delta, "content") if isinstance(delta, dict) else (choice, "text")
            piece = holder.get(key) if isinstance(holder, dict) else None
            out = restorer.feed(piece) if isinstance(piece, str) else ""
            if choice.get("finish_reason") is not None:
                out += restorer.flush()
            if isinstance(piece, str) or out:
                holder[key] = out
        return chunk


class PrivacyShield:
    def __init__(self, settings: Mapping[str, Any] | None = None):
        settings = dict(settings or {})
        self.detector = Detector.from_settings(settings)
        self.levels = LevelPolicy.from_settings(settings)
        self.actions = dict(settings.get("actions") or {})

    def classify(self, operation: Operation, body: Json) -> Findings:
        slots = list(text_slots(operation, body))
        texts = [_get(body, slot) for slot in slots]
        spans = [self.detector.scan(text) if text.strip() else [] for text in texts]
        level = self.levels.level(s for group in spans for s in group)
        return Findings(slots, texts, spans, level)

    def egress(self) -> Egress:
        return Egress(Vault(actions=self.actions))

    def pseudonymize(self, body: Json, findings: Findings, egress: Egress) -> Json:
        """A copy of ``body`` with every sensitive value replaced by its placeholder."""
        if not findings.any:
            return body
        out = copy.deepcopy(body)
        for slot, text, spans in zip(findings.slots, findings.texts, findings.spans,
                                     strict=True):
            if spans:
                _set(out, slot, egress.vault.pseudonymize(text, spans))
        return out


def text_slots(operation: Operation, body: Json) -> list[Slot]:
    """Where the text is in an OpenAI request body, in reading order."""
    slots: list[Slot] = []
    if operation is Operation.CHAT:
        for i, message in enumerate(body.get("messages") or []):
            content = message.get("content")
            if isinstance(content, str):
                slots.append(("messages", i, "content"))
            elif isinstance(content, list):
                slots += [("messages", i, "content", j, "text") for j, part in enumerate(content)
                          if isinstance(part, dict) and isinstance(part.get("text"), str)]
        return slots
    key = "prompt" if operation is Operation.COMPLETION else "input"
    value = body.get(key)
    if isinstance(value, str):
        return [(key,)]
    if isinstance(value, list):
        return [(key, i) for i, item in enumerate(value) if isinstance(item, str)]
    return []


def _get(body: Any, slot: Slot) -> str:
    node = body
    for part in slot:
        node = node[part]
    return str(node)


def _set(body: Any, slot: Slot, value: str) -> None:
    node = body
    for part in slot[:-1]:
        node = node[part]
    node[slot[-1]] = value
