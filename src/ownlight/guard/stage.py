"""The injection guard as the pipeline uses it.

Two uses, on every protocol (they all become the same canonical request):

* **user input** — the newest user turn, what the user typed in it: not the context
  blocks an agent inserts there (Claude Code's ``<system-reminder>``, the Codex CLI's
  ``<environment_context>``; ``privacy/client_text.py``), which are the client's own
  instructions, like its system and developer turns (never scored): ``flag`` records the
  verdict only, ``block``
  refuses with 400 ``injection_blocked``, ``isolate`` quotes the turn as data with a
  warning to the model; per tenant if ``[guard.tenants]`` says so;
* **untrusted content** — tool results (Chat ``tool`` messages, Responses
  ``function_call_output`` items, Anthropic ``tool_result`` blocks; less the agent's own
  header and reminders) and retrieved chunks, which is where agents get hijacked: above
  the threshold, a tool result is
  quoted inert (``quote``, the default) or withheld (``drop``); with ``drop`` a chunk is
  also left out of the sources (quoted, it stays: the sources are already framed as data).

``quote`` is the default because the shipped model's false positives on ordinary
e-mails are not rare (README, bench/guard.py): quoting costs a benign text little,
withholding costs it everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ownlight.config.settings import GuardSettings
from ownlight.guard.chunk_head import shared_head
from ownlight.guard.model import GuardModel, Verdict, ranked
from ownlight.guard.second_look import SecondLook
from ownlight.guard.unmasking import unmasked
from ownlight.principal import Principal
from ownlight.privacy.client_text import QUOTE_PREAMBLE, tool_output, without_client_blocks
from ownlight.protocol.model import TextPart, ToolResult, Turn
from ownlight.textcache import cache_short_texts

WITHHELD = ("[Ownlight withheld this content: it looks like an attempt to give the assistant "
            "instructions (prompt injection).]")
QUOTE = QUOTE_PREAMBLE + "{text}\n>>>"


@dataclass
class GuardFacts:
    """What the guard did to one request, for the response headers and the ledger."""

    input_score: float | None = None
    input_flagged: bool = False
    action: str | None = None
    tool_results_flagged: int = 0  # quoted or withheld, per untrusted_action
    chunks_flagged: int = 0  # kept, quoted as sources are
    chunks_withheld: int = 0
    documents: list[list[str]] = field(default_factory=list)  # the chunks' documents

    @property
    def untrusted(self) -> int:
        return self.tool_results_flagged + self.chunks_flagged + self.chunks_withheld

    def to_dict(self) -> dict[str, Any]:
        return {"input_score": self.input_score, "input_flagged": self.input_flagged,
                "action": self.action, "tool_results_flagged": self.tool_results_flagged,
                "chunks_flagged": self.chunks_flagged, "chunks_withheld": self.chunks_withheld,
                "documents": self.documents}


def also_unmasked(text: str, read: Callable[[str], Verdict]) -> Verdict:
    """``read`` the text and, when it wears a disguise (``guard.unmasking``), the text
    spelt normally too: the higher of the two, as a multiple of its threshold, with
    ``disguised`` among its reasons when only the text spelt normally is flagged."""
    verdict = read(text)
    plain = unmasked(text)
    if plain == text:
        return verdict
    other = read(plain)
    if other.score / other.threshold <= verdict.score / verdict.threshold:
        return verdict
    named = ("disguised",) if other.injection and not verdict.injection else ()
    return Verdict(other.score, (*other.reasons, *named), other.threshold)


class InjectionGuard:
    def __init__(self, settings: GuardSettings | None = None):
        s = settings or GuardSettings()
        self.model = GuardModel.load(Path(s.model_path) if s.model_path else None)
        self.untrusted_model = GuardModel.load_untrusted(
            Path(s.untrusted_model_path) if s.untrusted_model_path else None)
        self.threshold = s.threshold if s.threshold is not None else self.model.threshold
        self.untrusted_threshold = (s.untrusted_threshold if s.untrusted_threshold is not None
                                    else self.untrusted_model.threshold)
        self.chunk_head = shared_head()
        self.input_action: str = s.input_action
        self.untrusted_action: str = s.untrusted_action
        self.tenants: dict[str, str] = dict(s.tenants)
        self.scan: Callable[[str], Verdict] = cache_short_texts(
            lambda text: also_unmasked(text, lambda t: self.model.scan(t, self.threshold)))
        self.second_look = _second_look() if s.second_look else None
        self.scan_untrusted: Callable[[str], Verdict] = cache_short_texts(
            lambda text: also_unmasked(text, self._read_untrusted))

    def _read_untrusted(self, text: str) -> Verdict:
        """A tool result (or a chunk without a stored score): the n-gram model on every
        segment, then e5 on the most suspicious ones (``second_look``) when the n-gram
        model alone does not flag it and its top segment is within ``GATE`` of its
        threshold. When e5 is consulted the score is the larger of the two as a multiple
        of its threshold (as ``scan_chunk`` reports it)."""
        scored = self.untrusted_model.scored_units(text)
        verdict = self.untrusted_model.verdict(scored, self.untrusted_threshold)
        look = self.second_look
        if look is None or verdict.injection or not text.strip():
            return verdict
        meaning = look.score(ranked(scored), len(text), look.gate(self.untrusted_threshold))
        from_text, from_vector = verdict.score / verdict.threshold, meaning / look.threshold
        reasons = verdict.reasons + (("second_look",) if from_vector >= 1.0 else ())
        return Verdict(max(from_text, from_vector), reasons, 1.0)

    def scan_chunk(self, text: str, stored_score: float | None) -> Verdict:
        """A retrieved knowledge chunk: the n-gram model on its text and, when the chunk
        was scored at ingest, the e5 head's stored score (it reads meaning, so it holds in
        languages and genres the n-grams miss). Either one at or over its threshold flags
        the chunk; the score is the larger of the two as a multiple of its threshold. A
        chunk without a stored score is read as a tool result is."""
        if stored_score is None:
            return self.scan_untrusted(text)
        verdict = also_unmasked(
            text, lambda t: self.untrusted_model.scan(t, self.untrusted_threshold))
        from_text = verdict.score / verdict.threshold
        from_vector = stored_score / self.chunk_head.threshold
        reasons = verdict.reasons + (("stored_chunk_score",) if from_vector >= 1.0 else ())
        return Verdict(max(from_text, from_vector), reasons, 1.0)

    def reads_by_meaning(self) -> bool:
        return self.second_look is not None

    def action_for(self, principal: Principal | None) -> str:
        if principal is not None and principal.tenant in self.tenants:
            return str(self.tenants[principal.tenant])
        return self.input_action

    @staticmethod
    def typed_text(turn: Turn) -> str:
        """The text of a user turn that the user typed: its parts less the client's blocks."""
        return "".join(without_client_blocks(p.text) for p in turn.parts
                       if isinstance(p, TextPart)).strip()

    @staticmethod
    def returned_text(result: ToolResult) -> str:
        """What a tool returned: the result's text less the client's header and blocks."""
        return tool_output("".join(q.text for q in result.parts
                                   if isinstance(q, TextPart))).strip()

    def neutralise(self, text: str) -> str:
        """Untrusted text that scored as an injection, as the model may still see it."""
        return WITHHELD if self.untrusted_action == "drop" else QUOTE.format(text=text)

    @staticmethod
    def isolate(text: str) -> str:
        return QUOTE.format(text=text)


def _second_look() -> SecondLook:
    """The packaged tool-result head on the e5 layers it was trained on (loaded on first
    use; the engine is called under the process's one e5 lock)."""
    head = SecondLook.load_head()
    return SecondLook(head, head.embed)
