"""The privacy shield as the pipeline uses it: classify, protect egress, restore.

It reads a canonical request through the one slot enumerator
(``ownlight.protocol.slots``), so message text, tool-call arguments, tool results,
tool definitions, names, URLs, metadata and fields Ownlight does not model are all
scanned the same way. When a request leaves the domain, a copy is rewritten with
placeholders; the real values stay in a per-request ``Vault`` in memory and are put
back into the answer: text, streamed text split across chunks, tool-call names and
arguments (streamed argument deltas too), with JSON kept valid.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ownlight.config.settings import PrivacySettings
from ownlight.errors import PolicyRefused
from ownlight.privacy.client_text import client_blocks, ownlight_blocks
from ownlight.privacy.detector import CLIENT, PROSE, Detector, Reading
from ownlight.privacy.levels import LevelPolicy
from ownlight.privacy.spans import Span
from ownlight.privacy.vault import Blocked, StreamRestorer, Vault, json_escape
from ownlight.protocol.model import ChoiceDelta, Chunk, Request, Response, ToolCallDelta
from ownlight.protocol.slots import JSON, Path, Slot, SlotKind, replace_slots, text_slots
from ownlight.textcache import cache_short_texts

# The client's own text: instructions (system and developer turns too), tool definitions
# and every key of a map. Read strictly (``detector.Reading``).
CLIENT_KINDS = frozenset({SlotKind.INSTRUCTIONS, SlotKind.TOOL_NAME, SlotKind.TOOL_DESCRIPTION,
                          SlotKind.SCHEMA, SlotKind.KEY})
# Slots that are one value of a JSON map: their key says what a bare number is.
_VALUE_KINDS = frozenset({SlotKind.METADATA, SlotKind.EXTRA, SlotKind.TOOL_ARGUMENTS})


@dataclass
class Findings:
    """What the classify stage saw in one request. Types and counts only leave here."""

    slots: list[Slot]
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
    """One request's trip outside the domain: its vault and the stream restorers.

    ``json_text``: the answer's text is JSON (a structured output), so restored values
    are JSON-escaped like tool-call arguments.
    """

    vault: Vault
    json_text: bool = False
    restorers: dict[tuple[Any, ...], StreamRestorer] = field(default_factory=dict)
    # what ``pseudonymize`` put in, by slot path: the ledger hashes the text sent from
    # the request's own slots and these, without walking the new request again
    replaced: dict[Path, str] | None = None

    def restore_response(self, response: Response) -> Response:
        if not self.vault.placeholders():
            return response
        text_escape = json_escape if self.json_text else None
        for choice in response.choices:
            if choice.text:
                choice.text = self.vault.restore(choice.text, text_escape)
            if choice.refusal:
                choice.refusal = self.vault.restore(choice.refusal)
            for call in choice.tool_calls:
                call.name = self.vault.restore_identifier(call.name)
                call.arguments = self.vault.restore(call.arguments, json_escape)
        return response

    def restore_chunk(self, chunk: Chunk) -> Chunk:
        """Restore one stream chunk; text that may be half a placeholder waits for the next."""
        if not self.vault.placeholders():
            return chunk
        for delta in chunk.choices:
            i = delta.index
            if delta.text is not None:
                delta.text = self._restorer((i, "text"), self.json_text).feed(delta.text)
            if delta.refusal is not None:
                delta.refusal = self._restorer((i, "refusal"), False).feed(delta.refusal)
            for call in delta.tool_calls:
                if call.name is not None:
                    call.name = self.vault.restore_identifier(call.name)
                call.arguments = self._restorer((i, "tool", call.index), True).feed(
                    call.arguments)
            if delta.finish_reason is not None:
                self._flush(delta)
        return chunk

    def _restorer(self, key: tuple[Any, ...], json_text: bool) -> StreamRestorer:
        restorer = self.restorers.get(key)
        if restorer is None:
            restorer = StreamRestorer(self.vault, json_escape if json_text else None)
            self.restorers[key] = restorer
        return restorer

    def _flush(self, delta: ChoiceDelta) -> None:
        """The choice ends: whatever was held back is emitted with this chunk."""
        for key in [k for k in self.restorers if k[0] == delta.index]:
            rest = self.restorers.pop(key).flush()
            if not rest:
                continue
            if key[1] == "text":
                delta.text = (delta.text or "") + rest
            elif key[1] == "refusal":
                delta.refusal = (delta.refusal or "") + rest
            else:
                delta.tool_calls.append(ToolCallDelta(key[2], arguments=rest))


class PrivacyShield:
    def __init__(self, settings: PrivacySettings | None = None):
        settings = settings or PrivacySettings()
        self.detector = Detector.from_settings(settings)
        self.levels = LevelPolicy.from_settings(settings)
        self.actions: dict[str, str] = dict(settings.actions)
        self.scan_timeout = settings.scan_timeout
        # What the recognizers find in a text is the same wherever it stands; only which
        # findings count differs (``Detector.settle``), so the candidates are kept.
        self._candidates = cache_short_texts(self.detector.candidates)

    def warm_up(self) -> None:
        self.detector.warm_up()

    def scan(self, text: str, reading: Reading = PROSE) -> list[Span]:
        """``text`` read as prose (what a person wrote), or as ``reading`` says."""
        if not text.strip():
            return []
        return self.detector.settle(text, self._candidates(text), reading)

    def scan_slot(self, slot: Slot) -> list[Span]:
        """One slot, read for where it stands in the request."""
        text = slot.text
        if not text.strip():
            return []
        if slot.kind in CLIENT_KINDS:
            return self.detector.settle(text, self._candidates(text), CLIENT)
        key = slot.path[-1] if slot.kind in _VALUE_KINDS and slot.path[-1] != JSON else None
        reading = Reading(key=key) if isinstance(key, str) else PROSE
        # Claude Code's reminders ride on tool results too, and the guard's quote wraps them
        blocks = (client_blocks(text) if slot.kind in (SlotKind.TEXT, SlotKind.TOOL_RESULT)
                  else [])
        spans = self.detector.settle(text, self._candidates(text), reading, blocks)
        own = ownlight_blocks(text)
        return [s for s in spans if not any(a <= s.start and s.end <= b for a, b in own)]

    def classify(self, request: Request) -> Findings:
        """Every slot of the request scanned; the level over all of them."""
        return self.classify_slots(text_slots(request))

    def classify_slots(self, slots: list[Slot]) -> Findings:
        spans = [self.scan_slot(slot) for slot in slots]
        return Findings(slots, spans, self.level(spans))

    def level(self, spans: list[list[Span]]) -> str:
        return self.levels.level(s for group in spans for s in group)

    def egress(self, json_text: bool = False) -> Egress:
        return Egress(Vault(actions=self.actions), json_text)

    def pseudonymize(self, request: Request, findings: Findings, egress: Egress) -> Request:
        """A copy of ``request`` with every sensitive value replaced by its placeholder."""
        if not findings.any:
            return request
        vault = egress.vault
        replacements: dict[Path, str] = {}
        for slot, spans in zip(findings.slots, findings.spans, strict=True):
            if not spans:
                continue
            if slot.kind is SlotKind.KEY:
                raise PolicyRefused(
                    "A field name in this request holds sensitive data, which cannot be "
                    "pseudonymized; it may not leave the domain. Nothing was sent.",
                    code="sensitive_field_name")
            if slot.kind.identifier:
                blocked = vault.blocked_types(spans)
                if blocked:
                    raise Blocked(blocked)
                replacements[slot.path] = vault.identifier(spans[0].type, slot.text)
            else:
                replacements[slot.path] = vault.pseudonymize(slot.text, spans)
        egress.replaced = replacements
        return replace_slots(request, replacements)
