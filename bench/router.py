"""Benchmark the complexity router on the RouteLLM test split against peers.

Peers, run in the same process on the same machine: random routing (expected value)
and a plain TF-IDF word uni/bigram + logistic regression baseline trained on dev.jsonl
to predict "weak wrong and strong right". Only this script reads test.jsonl.

    python bench/router.py [--dev PATH] [--test PATH] [--router PATH]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ownlight.routing.complexity import ComplexityRouter
from ownlight.routing.training import evaluate, load_rows

EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "routing"
TASKS = ("mmlu", "gsm8k")


def baseline(dev: Sequence[dict]) -> Callable[[str], float]:
    """The peer: TF-IDF word 1-2 grams + logistic regression, weak wrong and strong right."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2))
    x = vec.fit_transform([r["prompt"] for r in dev])
    y = [int(not r["weak_correct"] and r["strong_correct"]) for r in dev]
    model = LogisticRegression(max_iter=2000).fit(x, y)
    return lambda prompt: float(model.predict_proba(vec.transform([prompt]))[0, 1])


def timed_scores(score: Callable[[str], float], prompts: Sequence[str]) -> tuple[list, list]:
    """Score one prompt at a time, as the gateway does, and keep each call's time in ms."""
    scores, times = [], []
    for prompt in prompts:
        start = time.perf_counter()
        scores.append(score(prompt))
        times.append((time.perf_counter() - start) * 1000)
    return scores, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, default=EVAL_DIR / "dev.jsonl")
    parser.add_argument("--test", type=Path, default=EVAL_DIR / "test.jsonl")
    parser.add_argument("--router", type=Path, default=None, help="default: packaged weights")
    args = parser.parse_args()

    dev, test = load_rows(args.dev), load_rows(args.test)
    prompts = [r["prompt"] for r in test]
    router = ComplexityRouter.load(args.router)
    ours, our_ms = timed_scores(router.score, prompts)
    peer, peer_ms = timed_scores(baseline(dev), prompts)
    res_ours, res_peer = evaluate(ours, test), evaluate(peer, test)

    counts = ", ".join(f"{t} {res_ours[t]['n']}" for t in TASKS)
    print(f"test rows: {len(test)} ({counts})\n")
    print("| task | router | CPT(50%) | CPT(80%) | cloud share for 95% of cloud quality |")
    print("|---|---|---|---|---|")
    for task in TASKS:
        rows = [
            ("Ownlight", res_ours[task]["router"]),
            ("TF-IDF + LR baseline", res_peer[task]["router"]),
            ("random (expected)", res_ours[task]["random"]),
        ]
        for name, r in rows:
            print(f"| {task} | {name} | {r['cpt50']:.3f} | {r['cpt80']:.3f} | {r['share95']:.3f} |")
    print("\nratio Ownlight / baseline (lower is better):")
    for task in TASKS:
        a, b = res_ours[task]["router"], res_peer[task]["router"]
        print(
            f"  {task}: CPT(50%) {a['cpt50'] / b['cpt50']:.2f}x, "
            f"CPT(80%) {a['cpt80'] / b['cpt80']:.2f}x"
        )
    print("\n| scorer | p50 ms/prompt | p99 ms/prompt |")
    print("|---|---|---|")
    for name, ms in (("Ownlight", our_ms), ("TF-IDF + LR baseline", peer_ms)):
        print(f"| {name} | {np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} |")


if __name__ == "__main__":
    main()
