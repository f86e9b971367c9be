"""Split the addressee set into its dev and test halves.

    python bench/make_injection_addressee.py RAW.jsonl ...

The set was written (issue 26) by writers who saw none of Ownlight's other injection data:
per language (zh, ja, ru, en) sixty pairs of documents an agent reads, each once with an
instruction addressed to the assistant that reads it and once with a look-alike line in
its place that talks *about* assistants and prompts (``twin: about-ai``) or gives a person
an order (``twin: to-people``); and direct messages, attacks beside requests that only
talk about prompts. The shipped guard confused exactly these two on dev.

Indirect rows split by pair, direct rows by message: a third to ``*_test.jsonl`` (never
trained on, read by ``bench/guard.py``), the rest to ``*_dev.jsonl``. The split is a hash of
the pair id or text within each language, so rerunning it on the same rows gives the same halves.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

EVAL = Path(__file__).resolve().parents[1] / "eval"
TEST_SHARE = 3  # a third of each language


def _hash(key: str) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16)


def split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(dev, test): per language (and label, for direct rows) the third of the keys whose
    hashes come first goes to test; both rows of an indirect pair share a key."""
    def key(row: dict) -> str:
        return str(row.get("pair") or row["text"])

    strata: dict[tuple, list[str]] = {}
    for row in rows:
        stratum = (row.get("lang"), None if row.get("pair") else row.get("label"))
        keys = strata.setdefault(stratum, [])
        if key(row) not in keys:
            keys.append(key(row))
    chosen = {k for keys in strata.values()
              for k in sorted(keys, key=_hash)[: round(len(keys) / TEST_SHARE)]}
    dev = [r for r in rows if key(r) not in chosen]
    return dev, [r for r in rows if key(r) in chosen]


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{path.name}: {len(rows)} rows")


def main(raw: list[str]) -> int:
    rows = [json.loads(line) for name in raw for line in Path(name).read_text().splitlines()
            if line.strip()]
    for kind, stem in (("indirect", "injection_addressee"),
                       ("direct", "injection_addressee_direct")):
        dev, test = split([r for r in rows if r.get("kind") == kind])
        write(EVAL / f"{stem}_dev.jsonl", dev)
        write(EVAL / f"{stem}_test.jsonl", test)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
