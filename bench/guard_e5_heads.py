"""Which of e5's layers should the guard's heads read? A dev-only reading.

The chunk head and the second look's head read one line's e5 vector. multilingual-e5's
last layers are tuned for retrieval (a passage's topic); its middle layers may still carry
how a line is put. For each layer count this embeds the lines of Ownlight's indirect dev
sets (and the shared dev e-mails, direct dev attacks, Wikipedia dev passages and dev tool
outputs as in ``chunk_training``) with ``guard.e5_layers``, then holds out each of the
three multilingual dev sets in turn (``injection_multilingual_dev``, ``injection_genres_dev``,
``injection_indirect_varied_dev``: three writers and styles), trains a logistic head on
the rest and scores the held-out set's documents by their highest line. It prints TPR at
5% FPR of each held-out set's clean documents / AUC, per language, and their means.

    python bench/guard_e5_heads.py 3 5 7 9 12     # about ten minutes on two cores

Dev files only; vectors are cached in /tmp.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from guard import auc, tpr_at  # noqa: E402
from ownlight.guard.chunk_head import lines  # noqa: E402
from ownlight.guard.chunk_training import CACHE  # noqa: E402
from ownlight.guard.e5_layers import layer_reader  # noqa: E402
from ownlight.guard.untrusted_training import attack_lines  # noqa: E402
from ownlight.knowledge.embedder import CachedEmbedder  # noqa: E402

OWN, SHARED = ROOT / "eval", ROOT.parent / "shared" / "eval"
HELD_OUT = {"multilingual": "injection_multilingual_dev", "genres": "injection_genres_dev",
            "varied": "injection_indirect_varied_dev"}


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def units() -> tuple[list[tuple[str, int, str]], list[tuple[str, str, int, list[int]]]]:
    """(line, label (-1: an attacked document's other lines, not trained on), set) and
    (set, language, label, its line indexes) for every indirect dev document."""
    rng = random.Random(0)
    sets = {"shared": load(SHARED / "injection" / "dev.jsonl")}
    sets |= {name: load(OWN / f"{file}.jsonl") for name, file in HELD_OUT.items()}
    out: list[tuple[str, int, str]] = []
    docs: list[tuple[str, str, int, list[int]]] = []
    for name, rows in sets.items():
        injected = {id(row): set(new) for row, new, _ in attack_lines(rows)}
        for row in rows:
            if row.get("kind") == "direct":
                if int(row["label"]) == 1:
                    out.append((row["text"][:600], 1, name))
                continue
            new, idx = injected.get(id(row), set()), []
            for line in lines(row["text"]):
                label = 0 if int(row["label"]) == 0 else (
                    1 if any(line == n[:300] for n in new) else -1)
                idx.append(len(out))
                out.append((line, label, name))
            docs.append((name, str(row.get("lang", "en")), int(row["label"]), idx))
    for row in load(OWN / "injection_benign_documents_dev.jsonl"):
        out += [(line, 0, "benign") for line in lines(row["text"])]
    for row in rng.sample(load(SHARED / "retrieval" / "dev_corpus.jsonl"), 150):
        out += [(line, 0, "wiki") for line in lines(row["text"])]
    for row in rng.sample(load(OWN / "benign_tool_outputs_dev.jsonl"), 120):
        out += [(line, 0, "tools") for line in lines(row["text"])[:40]]
    return out, docs


def main(argv: list[str]) -> None:
    from sklearn.linear_model import LogisticRegression

    found, docs = units()
    texts = [t for t, _, _ in found]
    labels = np.array([label for _, label, _ in found])
    origin = np.array([name for _, _, name in found])
    print(f"{len(texts)} lines, {len(docs)} documents\n")
    print("| layers | ms / 1,000 chars | " + " | ".join(
        f"{s} {lang}" for s in HELD_OUT for lang in ("zh", "ja", "ru", "en"))
        + " | mean TPR@5% | mean AUC |")
    print("|---" * 16 + "|")
    for layers in [int(a) for a in argv] or [3, 5, 7, 9, 12]:
        reader = layer_reader(layers)
        sample = texts[:200]
        start = time.perf_counter()
        reader.passages(sample)
        cost = (time.perf_counter() - start) / sum(map(len, sample)) * 1e6
        x = CachedEmbedder(reader, CACHE).passages(texts)
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        cells, tprs, aucs = [], [], []
        for held in HELD_OUT:
            train = (origin != held) & (labels >= 0)
            head = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000)
            scores = head.fit(x[train], labels[train]).decision_function(x)
            for lang in ("zh", "ja", "ru", "en"):
                doc = [(label, max(scores[i] for i in idx)) for name, lg, label, idx in docs
                       if name == held and lg == lang and idx]
                y = np.array([label for label, _ in doc])
                s = np.array([score for _, score in doc])
                pos, neg = s[y == 1], s[y == 0]
                tpr, area = tpr_at(pos, neg, 0.05), auc(pos, neg)
                tprs.append(tpr)
                aucs.append(area)
                cells.append(f"{tpr:.2f} / {area:.3f}")
        print(f"| {layers} | {cost:.0f} | " + " | ".join(cells)
              + f" | {np.mean(tprs):.3f} | {np.mean(aucs):.3f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
