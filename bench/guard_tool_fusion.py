"""How should a tool result's two readings combine? A dev-only reading, held out by writer.

A tool result is read by the n-gram model on every segment and, near its threshold, by an
e5 head on the segments the n-gram model ranks highest (``guard.second_look``); the result
is flagged when either reading is over its threshold. On dev data that is a biased reading:
the shipped n-gram model learned every dev document. So this study needs n-gram models
that never saw one writer's documents: ``ownlight guard train --untrusted`` run three times,
each time without one of the three multilingual dev sets (``injection_multilingual_dev``,
``injection_genres_dev``, ``injection_indirect_varied_dev``: three writers and styles),
written to ``DIR/untrusted_{multilingual,genres,varied}.npz``. The second look's e5 head
is held out the same way: trained as ``chunk_training --second-look`` trains it, without
that writer's documents and on the segments the held-out n-gram model picks.

For each held-out set's documents it then reads, per segment, the n-gram logit and the e5
logit, each less its threshold (each model's own, chosen on dev as shipped), and scores a
document several ways: the n-grams alone, the shipped "either flags" over the chosen
segments, the same with a larger e5 budget, e5 on every line (the ceiling, five times the
budget) and weighted means of the two margins. It prints TPR at 5% FPR of the held-out
set's clean twins per language and the mean AUC; at each score's zero, the share of
attacks caught and of clean twins flagged (pooled) and of benign dev tool outputs
flagged; and the share of those tool outputs' characters e5 reads (its cost).

    # for each writer: the --data and --documents of docs/performance.md's untrusted
    # training, less eval/<its file>.jsonl (18 to 30 minutes each on two cores)
    ownlight guard train --untrusted ... --word-cnn --out DIR/untrusted_multilingual.npz
    python bench/guard_tool_fusion.py DIR     # then about fifteen minutes

Dev files only; vectors are cached in /tmp.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from guard import auc, tpr_at  # noqa: E402
from guard_e5_heads import HELD_OUT, OWN, SHARED, load  # noqa: E402
from ownlight.guard.chunk_head import ChunkHead  # noqa: E402
from ownlight.guard.chunk_training import CACHE, LAYERS, second_look_examples, train  # noqa: E402
from ownlight.guard.e5_layers import layer_reader  # noqa: E402
from ownlight.guard.model import GuardModel  # noqa: E402
from ownlight.guard.second_look import GATE, MAX_SEGMENTS, MIN_CHARS, SHARE  # noqa: E402
from ownlight.knowledge.embedder import CachedEmbedder, Embedder  # noqa: E402

LANGS = ("zh", "ja", "ru", "en")
# (segment text, n-gram margin, e5 margin), the n-gram model's order
Read = list[tuple[str, float, float]]


def logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def budgeted(read: Read, size: int, share: float, min_chars: int,
             max_segments: int = MAX_SEGMENTS) -> Read:
    """The segments e5 reads, as ``second_look.chosen`` picks them."""
    budget, used, out = max(min_chars, share * size), 0, []
    for unit in read[:max_segments]:
        if used + len(unit[0]) > budget:
            break
        used += len(unit[0])
        out.append(unit)
    return out


def policies() -> dict[str, Callable[[Read, int], tuple[float, int]]]:
    """Name -> (document score, characters e5 read)."""

    def either(share: float, min_chars: int, gate: float | None = GATE, stricter: float = 0.0
               ) -> Callable[[Read, int], tuple[float, int]]:
        def score(read: Read, size: int) -> tuple[float, int]:
            top = read[0][1]
            if gate is not None and top < -gate:
                return top, 0
            seen = budgeted(read, size, share, min_chars)
            return (max([top] + [e - stricter for _, _, e in seen]),
                    sum(len(t) for t, _, _ in seen))
        return score

    def fused(weight: float, share: float, min_chars: int, gate: float | None = GATE
              ) -> Callable[[Read, int], tuple[float, int]]:
        def score(read: Read, size: int) -> tuple[float, int]:
            top = read[0][1]
            seen = [] if gate is not None and top < -gate else budgeted(
                read, size, share, min_chars)
            if not seen:  # nothing for e5 to read: the n-grams alone, on the same scale
                return top, 0
            both = [(n + weight * e) / (1 + weight) for _, n, e in seen]
            return max(both), sum(len(t) for t, _, _ in seen)
        return score

    out: dict[str, Callable[[Read, int], tuple[float, int]]] = {
        "n-grams alone": lambda read, size: (read[0][1], 0),
        f"either, shipped ({SHARE:.2f}, {MIN_CHARS})": either(SHARE, MIN_CHARS),
        "either, no gate": either(SHARE, MIN_CHARS, None),
        "either, e5 threshold +1 logit": either(SHARE, MIN_CHARS, stricter=1.0),
        "either, e5 threshold +2 logits": either(SHARE, MIN_CHARS, stricter=2.0),
        "either (0.15, 200)": either(0.15, 200),
        "either (0.25, 300)": either(0.25, 300),
        "e5 on every line": lambda read, size: (
            max(e for _, _, e in read), sum(len(t) for t, _, _ in read)),
        "either, every line": lambda read, size: (
            max(max(e for _, _, e in read), read[0][1]), sum(len(t) for t, _, _ in read)),
    }
    for weight in (0.5, 1.0, 2.0):
        out[f"sum w={weight} ({SHARE:.2f}, {MIN_CHARS})"] = fused(weight, SHARE, MIN_CHARS)
        out[f"sum w={weight} (0.15, 200)"] = fused(weight, 0.15, 200)
    return out


def reader(ngrams: GuardModel, head: ChunkHead, embedder: Embedder) -> Callable[[str], Read]:
    """A text's segments in the n-gram model's order, each with both margins."""
    n_threshold, e5_threshold = logit(ngrams.threshold), logit(head.threshold)

    def read(text: str) -> Read:
        ranked = ngrams.ranked_units(text)
        e5 = head.scores(embedder.passages([t for t, _ in ranked]))
        return [(t, n - n_threshold, logit(float(e)) - e5_threshold)
                for (t, n), e in zip(ranked, e5, strict=True)]
    return read


def main(argv: list[str]) -> None:
    folder = Path(argv[0])
    embedder = CachedEmbedder(layer_reader(LAYERS), CACHE)
    tools = [t for t in (r["text"] for r in load(OWN / "benign_tool_outputs_dev.jsonl"))
             if t.strip()][:200]
    names = list(policies())
    table: dict[str, list[float]] = {name: [] for name in names}
    areas: dict[str, list[float]] = {name: [] for name in names}
    # at each reading's own zero (its threshold): attacks caught, clean twins flagged, pooled
    caught: dict[str, list[bool]] = {name: [] for name in names}
    twins: dict[str, list[bool]] = {name: [] for name in names}
    cost: dict[str, float] = {}
    tools_flagged: dict[str, float] = {}
    present = {h: f for h, f in HELD_OUT.items() if (folder / f"untrusted_{h}.npz").exists()}
    if not present:
        wanted = ", ".join(f"untrusted_{h}.npz" for h in HELD_OUT)
        sys.exit(f"no held-out n-gram models in {folder}: train {wanted} first "
                 "(this script's docstring says how)")
    for held, file in present.items():
        ngrams = GuardModel.load_untrusted(folder / f"untrusted_{held}.npz")
        found = second_look_examples(SHARED, OWN, ngrams, leave_out=file)
        head, report = train(embedder, SHARED, OWN, True, LAYERS, found)
        print(held, report, file=sys.stderr, flush=True)
        read = reader(ngrams, head, embedder)
        rows = [r for r in load(OWN / f"{file}.jsonl") if r.get("kind") == "indirect"]
        reads = [(r, read(r["text"])) for r in rows]
        for name, policy in policies().items():
            scored = [(r, policy(rd, len(r["text"]))[0]) for r, rd in reads if rd]
            for lang in LANGS:
                pos = np.array([v for r, v in scored
                                if r.get("lang", "en") == lang and int(r["label"]) == 1])
                neg = np.array([v for r, v in scored
                                if r.get("lang", "en") == lang and int(r["label"]) == 0])
                table[name].append(tpr_at(pos, neg, 0.05))
                areas[name].append(auc(pos, neg))
            caught[name] += [v >= 0 for r, v in scored if int(r["label"]) == 1]
            twins[name] += [v >= 0 for r, v in scored if int(r["label"]) == 0]
        if held == "multilingual":  # benign dev tool outputs (learned by every model), once
            tool_reads = [(read(t), len(t)) for t in tools]
            for name, policy in policies().items():
                out = [policy(rd, size) for rd, size in tool_reads if rd]
                cost[name] = float(np.mean([spent / size for (_, spent), (_, size)
                                            in zip(out, tool_reads, strict=True)]))
                tools_flagged[name] = float(np.mean([v >= 0 for v, _ in out]))
    print("| reading | " + " | ".join(f"{h} {lang}" for h in present for lang in LANGS)
          + " | mean TPR@5% | mean AUC | caught at 0 | twins at 0 | dev tool outputs at 0 "
          "| e5 share of their chars |")
    print("|---" * (len(present) * len(LANGS) + 7) + "|")
    for name in names:
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in table[name])
              + f" | {np.mean(table[name]):.3f} | {np.mean(areas[name]):.3f} "
              f"| {np.mean(caught[name]):.2f} "
              f"| {np.mean(twins[name]):.2f} | {tools_flagged[name]:.3f} | {cost[name]:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
