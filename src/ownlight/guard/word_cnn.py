"""A second reading of each line of untrusted content: a small convolutional network over
its words' lexicon vectors.

The untrusted-content model reads a line's words as the *mean* of their vectors
(``lexicon``), so order and combination are lost: "ignore" beside "previous instructions"
reads much like "please ignore Monday's reminder". This network reads runs of one, two and
three words (each word: its lexicon vector and its SIF weight), keeps each filter's
strongest run in the line and weighs them into one logit, which ``GuardModel`` averages with
the logistic model's logit for the line. Alone it ranks worse than the logistic model; as
a second opinion it lifts the dev cross-validation (``docs/guard.md``).

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


def word_rows(text: str) -> list[int]:
    """The lexicon rows of the words the network reads in ``text``, in order."""
    return packaged().words(normalise(text[:_MAX_CHARS])[0])[:MAX_WORDS]


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

    def __post_init__(self) -> None:
        # every width's every offset in one matrix, so a line costs one product
        self._stacked = np.hstack([k[j] for k in self.kernels for j in range(len(k))])

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        # one BLAS thread: two spinning threads per small product would starve the e5
        # second look that reads the same tool result next (``ownlight.blas``)
        with one_blas_thread():
            return self.logits_of_rows([word_rows(t) for t in texts])

    def logits_of_rows(self, lines: Sequence[Sequence[int]]) -> np.ndarray:
        """The network's logit for each line's words, all lines in one product. A line
        without known words reads nothing, so its logit is the output layer's bias."""
        if not lines:
            return np.zeros(0, np.float32)
        longest = max(1, max(map(len, lines)))
        padded = np.zeros((len(lines), longest, self._stacked.shape[0]), np.float32)
        for i, rows in enumerate(lines):
            if rows:
                padded[i, : len(rows)] = inputs(rows)
        products = padded @ self._stacked  # (lines, words, every width's every offset)
        valid = np.arange(longest)[None, :] < np.array([len(r) for r in lines])[:, None]
        at, pooled = 0, []
        for kernel, bias in zip(self.kernels, self.biases, strict=True):
            width, filters = kernel.shape[0], kernel.shape[2]
            # a position reads its word and the width - 1 words before it (zeros before
            # the start); offset j of the kernel reads the word j - width + 1 places back
            total = np.broadcast_to(bias, (len(lines), longest, filters)).copy()
            for j in range(width):
                shift = width - 1 - j
                block = products[:, :, at + j * filters : at + (j + 1) * filters]
                total[:, shift:] += block[:, : longest - shift]
            # positions past a line's end read no word of their own: they do not count
            pooled.append((np.maximum(total, 0.0) * valid[:, :, None]).max(axis=1))
            at += width * filters
        return (np.concatenate(pooled, axis=1) @ self.out_weights
                + self.out_bias).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """What ``GuardModel.save`` stores, under names starting ``cnn_``."""
        out = {f"cnn_kernel{i}": k.astype(np.float32) for i, k in enumerate(self.kernels)}
        out |= {f"cnn_bias{i}": b.astype(np.float32) for i, b in enumerate(self.biases)}
        out |= {"cnn_out": self.out_weights.astype(np.float32),
                "cnn_out_bias": np.array(self.out_bias, np.float32)}
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
                   if "cnn_check_logits" in data else None)

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
