"""The guard's scorer: a logistic model over hashed n-grams and structural signals.

``score`` is the highest score over a text's units, so one injected line in a long e-mail
is not diluted by the rest of it. ``reasons`` name the structural signals that fired
and whether the n-gram model alone says injection. Two models ship in the package, trained
by ``ownlight guard train`` on the dev sets: ``guard.npz`` reads what users send in
600-character windows; ``untrusted.npz`` reads what the system reads on their behalf
(documents, tool results) line by line (``segments``), asking whether a line is a prompt
where no prompt belongs; it also reads each line's words by meaning, through vectors that
hold across the four languages (``lexicon``), and, when trained with one, averages the
logit of each line's text with a small network's reading of its runs of words
(``word_cnn``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ownlight.guard.features import (
    BUCKETS,
    SIGNAL_SCALE,
    SIGNALS,
    Window,
    hashed_arrays,
    windows,
)
from ownlight.guard.lexicon import LEXICON_SCALE, packaged
from ownlight.guard.segments import segment_windows
from ownlight.guard.word_cnn import WordCNN, combined

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Verdict:
    score: float
    reasons: tuple[str, ...] = ()
    threshold: float = DEFAULT_THRESHOLD

    @property
    def injection(self) -> bool:
        return self.score >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "label": "injection" if self.injection
                else "benign", "reasons": list(self.reasons)}


@dataclass
class GuardModel:
    weights: np.ndarray  # BUCKETS n-gram weights
    signal_weights: np.ndarray  # one per SIGNALS
    bias: float
    threshold: float = DEFAULT_THRESHOLD
    meta: dict[str, Any] = field(default_factory=dict)
    unit: str = "window"  # "window" (user input) or "segment" (untrusted content)
    # weights over the unit's lexicon vector (``lexicon``); None: n-grams and signals only
    lexicon_weights: np.ndarray | None = None
    # a second reading of each unit's text, averaged with the logistic one; None: logistic alone
    word_cnn: WordCNN | None = None

    def units(self, text: str) -> list[Window]:
        return segment_windows(text) if self.unit == "segment" else windows(text)

    def logit(self, grams: tuple[np.ndarray, np.ndarray], signals: dict[str, float],
              text: str | None = None) -> tuple[float, float]:
        """The logistic model's (whole logit, logit of the text alone: bias, n-grams and,
        given ``text``, its words' meaning, without the structural signals)."""
        text_part = self.bias + _weighted_sum(self.weights, grams)
        if self.lexicon_weights is not None and text is not None:
            text_part += LEXICON_SCALE * float(self.lexicon_weights @ packaged().vector(text))
        signal_part = SIGNAL_SCALE * sum(
            w * signals[name] for w, name in zip(self.signal_weights, SIGNALS, strict=True))
        return float(text_part + signal_part), float(text_part)

    def scored_units(self, text: str) -> list[tuple[Window, float, float]]:
        """Each unit of ``text`` with (its whole logit, the logit of its text alone); with a
        word network, both readings ``combined``."""
        units = self.units(text)
        scored = [(w, *self.logit(hashed_arrays(w.text), w.signals, w.text)) for w in units]
        if self.word_cnn is None:
            return scored
        texts = [w.text for w in units]
        second = (self.word_cnn.logits(texts) if self.unit == "segment"
                  else self.word_cnn.window_logits(texts))
        return [(w, *combined(whole, alone, float(c), self.word_cnn.share))
                for (w, whole, alone), c in zip(scored, second, strict=True)]

    def ranked_units(self, text: str) -> list[tuple[str, float]]:
        """Each unit's text and logit, the most suspicious first (what the e5 second look
        at a tool result chooses from, ``guard.second_look``)."""
        return ranked(self.scored_units(text))

    def verdict(self, scored: list[tuple[Window, float, float]],
                threshold: float | None = None) -> Verdict:
        """The highest unit's score, with the signals that fired in it."""
        best, best_reasons = 0.0, tuple[str, ...]()
        for window, logit, text_logit in scored:
            score = 1.0 / (1.0 + math.exp(-max(min(logit, 40.0), -40.0)))
            if score >= best:
                # a signal the model gives no weight (added after it was trained) is no reason
                fired = [name for name, weight in zip(SIGNALS, self.signal_weights, strict=True)
                         if window.signals[name] > 0 and weight != 0]
                if text_logit > 0:
                    fired.append("classifier")
                best, best_reasons = score, tuple(fired)
        return Verdict(best, best_reasons, self.threshold if threshold is None else threshold)

    def scan(self, text: str, threshold: float | None = None) -> Verdict:
        return self.verdict(self.scored_units(text), threshold)

    def save(self, path: Path) -> None:
        nonzero = np.flatnonzero(self.weights)
        arrays: dict[str, Any] = {
            "index": nonzero.astype(np.int32), "value": self.weights[nonzero].astype(np.float32),
            "signals": self.signal_weights.astype(np.float32), "bias": np.float32(self.bias),
            "threshold": np.float32(self.threshold), "unit": np.array(self.unit)}
        if self.lexicon_weights is not None:
            arrays["lexicon"] = self.lexicon_weights.astype(np.float32)
        if self.word_cnn is not None:
            arrays |= self.word_cnn.arrays()
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path | None = None) -> GuardModel:
        if path is None:
            return _packaged()
        with np.load(path) as data:
            weights = np.zeros(BUCKETS, dtype=np.float32)
            weights[data["index"]] = data["value"]
            unit = str(data["unit"]) if "unit" in data.files else "window"
            # weights trained before later signals were added read them with weight 0
            signal_weights = np.zeros(len(SIGNALS), dtype=np.float32)
            signal_weights[: len(data["signals"])] = data["signals"]
            lexicon = data["lexicon"] if "lexicon" in data.files else None
            bias, threshold = float(data["bias"]), float(data["threshold"])
            word_cnn = WordCNN.from_arrays(data)
        if lexicon is not None:
            packaged()  # read the table now, not in the first request that needs it
        if word_cnn is not None:
            word_cnn.check()
        return cls(weights, signal_weights, bias, threshold, unit=unit, lexicon_weights=lexicon,
                   word_cnn=word_cnn)

    @classmethod
    def load_untrusted(cls, path: Path | None = None) -> GuardModel:
        return cls.load(path) if path is not None else _packaged("untrusted.npz")


def _weighted_sum(weights: np.ndarray, grams: tuple[np.ndarray, np.ndarray]) -> Any:
    """The n-grams' part of a logit, ``sum(weights[i] * v)``, in one gather and one running
    sum: float32 products added one after another in the grams' order, as the plain loop the
    thresholds were chosen with adds them (a pairwise ``sum`` would differ in the last bits;
    ``tests/test_guard_hashing.py`` holds the two to the same bits)."""
    index, value = grams
    if not len(index):
        return 0
    return np.add.accumulate(weights[index] * value.astype(np.float32))[-1]


def ranked(scored: list[tuple[Window, float, float]]) -> list[tuple[str, float]]:
    return sorted(((w.text, logit) for w, logit, _ in scored), key=lambda unit: -unit[1])


@lru_cache(maxsize=2)
def _packaged(name: str = "guard.npz") -> GuardModel:
    with resources.as_file(resources.files("ownlight") / "data" / "guard" / name) as p:
        return GuardModel.load(Path(p))
