"""Turning one sequence's sampled tokens into the text a client may see.

Tokens arrive one at a time as bytes; a character may span two tokens, and a stop
string may span several. So the text is decoded incrementally and the tail that could
still become a stop string is held back until it cannot; when a stop string appears,
the answer ends just before it. Each token's log-probability entry travels with the
text it produced, and an entry is released once its text has been.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from ownlight.protocol.model import TokenLogprob


@dataclass
class Released:
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    stopped: bool = False  # a stop string ended the answer


class AnswerText:
    def __init__(self, stop: tuple[str, ...]):
        self.stop = tuple(s for s in stop if s)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""  # decoded so far, released or not
        self._released = 0  # characters of _text already released
        self._entries: list[tuple[int, TokenLogprob]] = []  # (end offset, entry), unreleased
        self.stopped = False

    @property
    def text(self) -> str:
        """What has been released: the answer so far."""
        return self._text[: self._released]

    def add(self, piece: bytes, entry: TokenLogprob | None = None) -> Released:
        self._text += self._decoder.decode(piece)
        if entry is not None:
            self._entries.append((len(self._text), entry))
        for stop in self.stop:
            at = self._text.find(stop, max(0, self._released - len(stop) + 1))
            if at >= 0:
                self.stopped = True
                return self._release(at, stopped=True)
        return self._release(len(self._text) - self._held_back())

    def finish(self) -> Released:
        """The answer ended (length, end of generation): release what was held back."""
        self._text += self._decoder.decode(b"", final=True)
        return self._release(len(self._text))

    def _held_back(self) -> int:
        """Length of the longest tail that begins some stop string."""
        tail = self._text[self._released:]
        longest = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(tail)), longest, -1):
                if tail.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def _release(self, upto: int, stopped: bool = False) -> Released:
        text = self._text[self._released: upto]
        self._released = max(self._released, upto)
        if stopped:
            self._text = self._text[:upto]
        out = [e for end, e in self._entries if end <= upto]
        # After a stop, a token whose text reaches into the stop string was not answer.
        self._entries = [] if stopped else [(end, e) for end, e in self._entries if end > upto]
        return Released(text, out, stopped)
