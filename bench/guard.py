"""The injection guard on held-out data: TPR at 1% and 5% FPR, AUC, over-defence, speed.

    python bench/guard.py                       # shared/eval/injection/test.jsonl + our own
    python bench/guard.py --model other.npz     # other user-input weights
    python bench/guard.py --untrusted-model u.npz   # other untrusted-content weights

Rows come from ``../shared/eval/injection/test.jsonl`` (BIPIA indirect attacks in
e-mails, Giskard and PIGuard direct attacks, NotInject benign look-alikes) and
``eval/injection_multilingual_test.jsonl`` (our zh/ja/ru/en set, written apart from
its dev half). The guard was trained on dev files only. Rates at a fixed FPR use the
benign rows of the same group; over-defence is the share of NotInject rows (all benign,
full of trigger words) that the guard, at its shipped threshold, lets pass. The peer
is the naive baseline every gateway ships without a guard: a keyword list.

Each row is read the way Ownlight reads it in service: ``direct`` rows (what a user sends)
by the user-input model, ``indirect`` rows (an e-mail the assistant reads) by the
untrusted-content model, line by line. Benign documents from the retrieval test corpus
(Wikipedia passages in en/zh/ja/ru, never used in training) measure how often an
ordinary retrieved chunk would be flagged.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ownlight.guard.model import GuardModel  # noqa: E402

SETS = {
    "shared test": ROOT.parent / "shared" / "eval" / "injection" / "test.jsonl",
    "ours test": ROOT / "eval" / "injection_multilingual_test.jsonl",
}
DOCUMENTS = ROOT.parent / "shared" / "eval" / "retrieval" / "test_corpus.jsonl"
KEYWORDS = re.compile(r"ignore (all |the )?(previous|above|prior)|system prompt|jailbreak|"
                      r"忽略|無視|игнорир", re.IGNORECASE)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    if not len(pos) or not len(neg):
        return float("nan")
    ranks = np.concatenate([pos, neg]).argsort().argsort() + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def tpr_at(pos: np.ndarray, neg: np.ndarray, fpr: float) -> float:
    if not len(pos) or not len(neg):
        return float("nan")
    cut = np.quantile(neg, 1 - fpr, method="higher")
    return float((pos > cut).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--untrusted-model", type=Path)
    parser.add_argument("--documents", type=int, default=1000,
                        help="benign retrieval passages to score (0: none)")
    args = parser.parse_args()
    model = GuardModel.load(args.model)
    untrusted = GuardModel.load_untrusted(args.untrusted_model)
    rows = []
    for name, path in SETS.items():
        if not path.exists():
            print(f"(missing: {path})", file=sys.stderr)
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append({**json.loads(line), "set": name})
    if args.documents and DOCUMENTS.exists():
        passages = [json.loads(line) for line in DOCUMENTS.read_text().splitlines()]
        rows += [{"text": p["text"], "label": 0, "kind": "indirect", "lang": p.get("lang"),
                  "set": "retrieval passages"} for p in passages[: args.documents]]
    scores, flagged_at, spent, chars = [], [], 0.0, 0
    for row in rows:
        reader = untrusted if row.get("kind") == "indirect" else model
        start = time.perf_counter()
        scores.append(reader.scan(row["text"]).score)
        spent += time.perf_counter() - start
        chars += len(row["text"])
        flagged_at.append(reader.threshold)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        lang = row.get("lang") or "en"
        groups[f"{row['set']}: all"].append(i)
        groups[f"{row['set']}: {row.get('kind')}"].append(i)
        if row["set"] == "ours test":
            groups[f"ours test: {lang}"].append(i)
    s = np.array(scores)
    thresholds = np.array(flagged_at)
    labels = np.array([int(r["label"]) for r in rows])
    keyword = np.array([1.0 if KEYWORDS.search(r["text"]) else 0.0 for r in rows])
    print("| rows | n (inj/benign) | AUC | TPR @1% FPR | TPR @5% FPR | TPR / FPR at shipped "
          "threshold | keyword list TPR / FPR |")
    print("|---|---|---|---|---|---|---|")
    for name, index in sorted(groups.items()):
        idx = np.array(index)
        pos, neg = s[idx][labels[idx] == 1], s[idx][labels[idx] == 0]
        flagged = s[idx] >= thresholds[idx]
        kw = keyword[idx] > 0
        tp = flagged[labels[idx] == 1].mean() if len(pos) else float("nan")
        fp = flagged[labels[idx] == 0].mean() if len(neg) else float("nan")
        ktp = kw[labels[idx] == 1].mean() if len(pos) else float("nan")
        kfp = kw[labels[idx] == 0].mean() if len(neg) else float("nan")
        print(f"| {name} | {len(pos)}/{len(neg)} | {auc(pos, neg):.3f} | "
              f"{tpr_at(pos, neg, 0.01):.3f} | {tpr_at(pos, neg, 0.05):.3f} | "
              f"{tp:.3f} / {fp:.3f} | {ktp:.3f} / {kfp:.3f} |")
    notinject = np.array([i for i, r in enumerate(rows) if r.get("source") == "notinject"])
    if len(notinject):
        passed = (s[notinject] < thresholds[notinject]).mean()
        print(f"\nOver-defence (NotInject, {len(notinject)} benign rows with trigger words): "
              f"{passed:.1%} pass at threshold {model.threshold:.3f} "
              f"(keyword list: {(keyword[notinject] == 0).mean():.1%}).")
    print(f"Thresholds shipped: user input {model.threshold:.3f}, untrusted content "
          f"{untrusted.threshold:.3f}.")
    print(f"Speed: {spent / max(chars, 1) * 1000 * 1000:.2f} ms per 1,000 characters "
          f"({len(rows)} texts, {chars:,} characters, one core).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
