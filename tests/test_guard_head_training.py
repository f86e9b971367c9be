"""The second look's training examples, with one writer's dev set left out: the held-out
study (``bench/guard_tool_fusion.py``) trains heads that never read one writer's documents,
so a leak here would make its figures a reading of the training data."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from ownlight.guard.chunk_training import WRITERS, second_look_examples, train
from ownlight.guard.segments import segments
from ownlight.guard.untrusted_training import HARD_TWIN

OWN = Path(__file__).resolve().parents[1] / "eval"
SHARED = OWN.parents[1] / "shared" / "eval"
pytestmark = pytest.mark.skipif(not (SHARED / "injection" / "dev.jsonl").exists(),
                                reason="../shared/eval missing")


class ReadingOrder:
    """Ranks a text's segments as they come: enough to see which documents are read."""

    @staticmethod
    def ranked_units(text: str) -> list[tuple[str, float]]:
        return [(s, 0.0) for s in segments(text)]


def _bare(text: str) -> str:
    """Without spaces and invisible characters (an attack may hide in zero-width spaces)."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(c for c in re.sub(r"\s+", "", folded) if unicodedata.category(c) != "Cf")


def _rows(writer: str) -> list[dict]:
    return [json.loads(line) for line in (OWN / f"{writer}.jsonl").read_text().splitlines()
            if line.strip()]


@pytest.mark.parametrize("writer", WRITERS)
def test_a_writer_left_out_is_not_read(writer: str) -> None:
    every = second_look_examples(SHARED, OWN, ReadingOrder())
    held = second_look_examples(SHARED, OWN, ReadingOrder(), leave_out=writer)
    rows = _rows(writer)
    clean = [r for r in rows if r.get("kind") == "indirect" and int(r["label"]) == 0]
    hard = [r for r in clean if r.get("twin") == HARD_TWIN]
    assert len(every[1]) - len(held[1]) == len(clean) - len(hard)
    assert len(every[3]) - len(held[3]) == len(hard)
    assert held[2] == every[2]  # tool outputs belong to no writer
    # a line is an attack line where no clean twin has it: without this writer's twins a
    # line of another writer's attack may turn new (a closing "</span>"), but never its own
    others = _bare("\n".join(r["text"] for w in WRITERS if w != writer for r in _rows(w)))
    assert all(_bare(piece)[:12] in others for piece in set(held[0]) - set(every[0]))
    assert len(set(every[0]) - set(held[0])) > 0
    # what left is the writer's own: each dropped positive is a piece of one of its rows
    # (segments fold full-width forms and re-space punctuation: a piece is known by its
    # opening characters, spaces aside)
    texts = _bare("\n".join(r["text"] for r in rows))
    assert all(_bare(piece)[:12] in texts for piece in set(every[0]) - set(held[0]))


class WordVectors:
    """A stand-in for e5: each word a fixed random vector, a line the mean of its words'."""

    def __init__(self) -> None:
        self.words: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(0)

    def passages(self, texts: list[str]) -> np.ndarray:
        def word(w: str) -> np.ndarray:
            return self.words.setdefault(w, self.rng.normal(size=32))

        return np.array([np.mean([word(w) for w in t.split()], axis=0) for t in texts])


def test_the_hardest_twins_are_learned_from_but_do_not_set_the_threshold() -> None:
    rng = np.random.default_rng(1)
    vocabulary = [f"w{i}" for i in range(60)]

    def line(*extra: str) -> str:
        return " ".join([*rng.choice(vocabulary, 3), *extra])

    positives = [line("assistant", "send", "password") for _ in range(60)]
    benign = [[line() for _ in range(4)] for _ in range(120)]
    tools = [[line() for _ in range(3)] for _ in range(60)]
    hard = [[line(), line("assistant", "send", "password")] for _ in range(40)]
    apart, report = train(WordVectors(), SHARED, OWN, found=(positives, benign, tools, hard))
    counted, _ = train(WordVectors(), SHARED, OWN, found=(positives, benign + hard, tools, []))
    assert report["oof_hard_twins_flagged"] > 0.05  # they do look like attacks
    assert apart.threshold < counted.threshold
