"""The second look's training examples, with one writer's dev set left out: the held-out
study (``bench/guard_tool_fusion.py``) trains heads that never read one writer's documents,
so a leak here would make its figures a reading of the training data."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from ownlight.guard.chunk_training import WRITERS, second_look_examples
from ownlight.guard.segments import segments

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
    assert len(every[1]) - len(held[1]) == len(clean)
    assert held[2] == every[2]  # tool outputs belong to no writer
    assert set(held[0]) < set(every[0])
    # what left is the writer's own: each dropped positive is a piece of one of its rows
    # (segments fold full-width forms and re-space punctuation: a piece is known by its
    # opening characters, spaces aside)
    texts = _bare("\n".join(r["text"] for r in rows))
    assert all(_bare(piece)[:12] in texts for piece in set(every[0]) - set(held[0]))
