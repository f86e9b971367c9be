"""A second reading of each line of untrusted content, and of each window of a user's
message: a small convolutional network over its words' lexicon vectors.

The untrusted-content model reads a line's words as the *mean* of their vectors
(``lexicon``), so order and combination are lost: "ignore" beside "previous instructions"
reads much like "please ignore Monday's reminder". This network reads runs of one, two and
three words (each word: its lexicon vector and its SIF weight), keeps each filter's
strongest run in the line and weighs them into one logit, which ``GuardModel`` averages with
the logistic model's logit for the line's text (``combined``). Alone it ranks worse than the
logistic model; as a second opinion it lifts the dev cross-validation (``docs/guard.md``).
The user-input model has its own network, trained on prompts, beside its n-grams; it reads
each 600-character window (a later window starts 400 characters on) in runs of
``MAX_WORDS`` words, each starting half a run after the last, and keeps the highest
(``window_logits``): a window of Chinese holds some 300 words, and reading only its first
48 left all but 80 of its characters to the n-grams.

Trained with torch (``word_cnn_training``, training only); read here in numpy, a fraction
of a millisecond per line, so serving needs no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ownlight.blas import one_blas_thread
from ownlight.guard.features import normalise
from ownlight.guard.lexicon import packaged

MAX_WORDS = 48  # words read per line: a segment is at most 100 characters (SENTENCE_SEGMENT)
_MAX_CHARS = 4000


# The network's share of a line's text logit, chosen on dev (``train_untrusted``'s grouped
# cross-validation, with the same trained readers): 0.35 gave document AUC 0.974, 0.85 of
# attacks caught at the threshold, 9.0% of clean dev documents and 0.98% of dev tool outputs
# flagged; 0.5 gave 0.973, 0.84, 9.3%, 1.08%; 0.65 gave 0.972, 0.83, 9.3%, 1.08%.
SHARE = 0.35


def combined(whole: Any, text: Any, network: Any, share: float = SHARE) -> tuple[Any, Any]:
    """(whole logit, text logit) of a line read by both: the text's logit weighs the
    logistic reading and the network's (``share``), and the structural signals (``whole -
    text``: an override phrase, a role marker) are added in full. The network reads words
    only; halving a signal with the text let "ignore all previous instructions" in a tool's
    description pass as a line about tools. Works on floats and on numpy arrays alike."""
    text_logit = (1 - share) * text + share * network
    return whole - text + text_logit, text_logit


def word_rows(text: str, extended: bool = False) -> list[int]:
    """The lexicon rows of the words the network reads in ``text``, in order (``extended``:
    the lexicon's Russian extension too, for a network trained with it)."""
    return packaged().words(normalise(text[:_MAX_CHARS])[0], extended)[:MAX_WORDS]


def inputs(rows: Sequence[int]) -> np.ndarray:
    """(words, dims + 1): each word's lexicon vector and its SIF weight."""
    lexicon = packaged()
    picked = np.asarray(rows, dtype=np.int64)
    return np.hstack([lexicon.vectors[picked], lexicon.weights[picked, None]])


@dataclass
class WordCNN:
    kernels: list[np.ndarray]  # one per width: (width, dims + 1, filters)
    biases: list[np.ndarray]  # one per width: (filters,)
    out_weights: np.ndarray  # (widths * filters,)
    out_bias: float
    # lines with the logits torch gave them at training time (``GuardModel.load`` checks them)
    check_texts: tuple[str, ...] = ()
    check_logits: np.ndarray | None = None
    share: float = SHARE  # of a line's text logit (``combined``)
    # reads the lexicon's Russian extension (trained since it was added; ``lexicon``)
    extended: bool = False

    def __post_init__(self) -> None:
        # every width's every offset in one matrix, so a line costs one product
        self._stacked = np.hstack([k[j] for k in self.kernels for j in range(len(k))])

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        # one BLAS thread: two spinning threads per small product would starve the e5
        # second look that reads the same tool result next (``ownlight.blas``)
        with one_blas_thread():
            return self.logits_of_rows([word_rows(t, self.extended) for t in texts])

    def window_logits(self, texts: Sequence[str]) -> np.ndarray:
        """The user-input model's reading of each window: the highest logit over runs of
        ``MAX_WORDS`` words, ``MAX_WORDS // 2`` apart, so every word is read within a run the
        size the network was trained on."""
        runs: list[list[int]] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            rows = self.window_rows(text)
            step = MAX_WORDS // 2
            for start in range(0, max(1, len(rows) - step), step):
                runs.append(rows[start:start + MAX_WORDS])
                owner.append(i)
        if not runs:
            return np.zeros(0, np.float32)
        with one_blas_thread():
            read = self.logits_of_rows(runs)
        best = np.full(len(texts), -np.inf, np.float32)
        np.maximum.at(best, np.asarray(owner), read)
        return best

    def window_rows(self, text: str) -> list[int]:
        """The lexicon rows of all of a window's words, as this network reads them."""
        return packaged().words(normalise(text[:_MAX_CHARS])[0], self.extended)

    def logits_of_rows(self, lines: Sequence[Sequence[int]]) -> np.ndarray:
        """The network's logit for each line's words. All lines' words are read in one
        product, end to end without padding; a run never reaches back past its line's first
        word. A line without known words reads nothing: its logit is the output bias.

        A user's message is mostly one run of words: it skips the bookkeeping that keeps
        several lines apart, which is most of the cost of so small a product. Both ways sum
        the same floats in the same order (``tests/test_guard_word_cnn.py`` holds them to it)."""
        lengths = [len(rows) for rows in lines]
        pooled = np.zeros((len(lines), self.out_weights.shape[0]), np.float32)
        if sum(lengths):
            products = inputs([r for rows in lines for r in rows]) @ self._stacked
            one = len(lines) == 1
            if not one:
                ends = np.cumsum(lengths)
                firsts_all = ends - np.asarray(lengths)
                # each word's position within its line: a run of width w at that word reads
                # only the words of its own line (what lies before the line's start is zeroed)
                within = np.arange(len(products)) - np.repeat(firsts_all, lengths)
                read = np.asarray(lengths) > 0
                firsts = firsts_all[read]
            at = column = 0
            for kernel, bias in zip(self.kernels, self.biases, strict=True):
                width, filters = kernel.shape[0], kernel.shape[2]
                total = products[:, at + (width - 1) * filters : at + width * filters] + bias
                for j in range(width - 1):  # offset j reads width - 1 - j words back
                    back = width - 1 - j
                    earlier = products[:-back, at + j * filters : at + (j + 1) * filters]
                    if not one:
                        earlier = earlier.copy()
                        earlier[within[back:] < back] = 0.0
                    total[back:] += earlier
                relu = np.maximum(total, 0.0)
                if one:
                    pooled[0, column : column + filters] = relu.max(axis=0)
                else:
                    pooled[read, column : column + filters] = np.maximum.reduceat(
                        relu, firsts, axis=0)
                at += width * filters
                column += filters
        return (pooled @ self.out_weights + self.out_bias).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """What ``GuardModel.save`` stores, under names starting ``cnn_``."""
        out = {f"cnn_kernel{i}": k.astype(np.float32) for i, k in enumerate(self.kernels)}
        out |= {f"cnn_bias{i}": b.astype(np.float32) for i, b in enumerate(self.biases)}
        out |= {"cnn_out": self.out_weights.astype(np.float32),
                "cnn_out_bias": np.array(self.out_bias, np.float32),
                "cnn_share": np.array(self.share, np.float32),
                "cnn_extended": np.array(self.extended)}
        if self.check_logits is not None:
            out |= {"cnn_check_texts": np.array(self.check_texts, dtype=str),
                    "cnn_check_logits": self.check_logits.astype(np.float32)}
        return out

    @classmethod
    def from_arrays(cls, data: Mapping[str, Any]) -> WordCNN | None:
        if "cnn_out" not in data:
            return None
        widths = sum(1 for name in data if str(name).startswith("cnn_kernel"))
        return cls([np.asarray(data[f"cnn_kernel{i}"], np.float32) for i in range(widths)],
                   [np.asarray(data[f"cnn_bias{i}"], np.float32) for i in range(widths)],
                   np.asarray(data["cnn_out"], np.float32), float(data["cnn_out_bias"]),
                   tuple(str(t) for t in data["cnn_check_texts"])
                   if "cnn_check_texts" in data else (),
                   np.asarray(data["cnn_check_logits"], np.float32)
                   if "cnn_check_logits" in data else None,
                   float(data["cnn_share"]) if "cnn_share" in data else SHARE,
                   bool(data["cnn_extended"]) if "cnn_extended" in data else False)

    def check(self) -> None:
        """Fail closed when the numpy reading does not give torch's logits for the stored
        lines (a damaged file, or a change to the lexicon or to this code)."""
        if self.check_logits is None:
            return
        got = self.logits(self.check_texts)
        worst = float(np.abs(got - self.check_logits).max()) if len(got) else 0.0
        if worst > 1e-3:
            raise ValueError(f"the guard's word network reads its check lines {worst:.4f} "
                             "away from its training run: retrain or reinstall its weights")
