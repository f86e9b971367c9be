"""No text of a test half is in any dev half Ownlight trains on.

Every guard figure in the README is read on a ``*_test.jsonl`` file on the promise that no
training run read it; a row copied into a dev file (by a writer who reused a line, or by a
split gone wrong) would quietly break that promise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

EVAL = Path(__file__).resolve().parents[1] / "eval"


def _texts(path: Path) -> set[str]:
    return {re.sub(r"\s+", " ", json.loads(line)["text"]).strip()
            for line in path.read_text().splitlines() if line.strip()}


def test_no_test_text_is_in_a_dev_half() -> None:
    dev = set().union(*(_texts(p) for p in EVAL.glob("*_dev.jsonl")))
    tests = sorted(EVAL.glob("*_test.jsonl"))
    assert len(tests) >= 8
    leaked = {p.name: sorted(_texts(p) & dev)[:3] for p in tests if _texts(p) & dev}
    assert leaked == {}
