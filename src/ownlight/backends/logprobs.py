"""Token log-probabilities from llama.cpp without keeping logits for the whole context.

llama-cpp-python's own ``logprobs`` needs ``logits_all=True``: one row of logits per
context position, 4 GiB for the bundled model's 262,144-token vocabulary at 4,096
tokens. Instead a logits processor keeps only the newest distribution: when it is
called for step k+1, the token chosen at step k is the last input id, and its
log-probability (with the top alternatives) is read from the distribution kept at
step k. The last token, never followed by another call, is recovered from the text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ownlight.protocol.model import TokenLogprob


class LogprobRecorder:
    def __init__(self, llm: Any, top: int):
        self.llm = llm
        self.top = top
        self._pending: np.ndarray | None = None
        self._done: list[TokenLogprob] = []
        self._drained = 0

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self._pending is not None:
            self._done.append(self._entry(self._pending, int(input_ids[-1])))
        shifted = scores.astype(np.float64) - float(np.max(scores))
        self._pending = (shifted - np.log(np.exp(shifted).sum())).astype(np.float32)
        return scores

    def drain(self) -> list[TokenLogprob]:
        """Entries resolved since the last call (for streamed pieces)."""
        out = self._done[self._drained :]
        self._drained = len(self._done)
        return out

    def finish(self, generated: str) -> list[TokenLogprob]:
        """The rest, including the final token, once the generation is over.

        Tokens of a stop string were decoded but are not part of the answer: dropped.
        """
        ids = self.llm.tokenize(generated.encode(), add_bos=False, special=True) \
            if generated else []
        if self._pending is not None and ids and len(self._done) < len(ids):
            self._done.append(self._entry(self._pending, int(ids[-1])))
        self._pending = None
        del self._done[max(len(ids), self._drained):]
        return self.drain()

    def _entry(self, logprobs: np.ndarray, token: int) -> TokenLogprob:
        top: list[tuple[str, float]] = []
        if self.top:
            best = np.argpartition(-logprobs, self.top)[: self.top]
            best = best[np.argsort(-logprobs[best])]
            top = [(self._piece(int(t)), float(logprobs[t])) for t in best]
        piece = self._piece(token)
        return TokenLogprob(piece, float(logprobs[token]), list(piece.encode()), top)

    def _piece(self, token: int) -> str:
        return bytes(self.llm.detokenize([token])).decode("utf-8", errors="replace")
