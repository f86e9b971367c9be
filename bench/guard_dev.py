"""Read one or more dev files as the service reads them: TPR at 5% FPR per language.

    python bench/guard_dev.py eval/injection_writers_direct6_dev.jsonl
    python bench/guard_dev.py --model other.npz eval/injection_writers_mail4_dev.jsonl
    python bench/guard_dev.py --by-genre eval/injection_writers_docs8_dev.jsonl
    python bench/guard_dev.py --by-writer eval/injection_writers_docs9_dev.jsonl

A new dev set is read here before any model learns it, so the figure it prints is the
guard's on text it never saw; after training it, the same file tells only how well the
model fits. ``direct`` rows are read by the user-input model; ``indirect`` rows as a tool
result (the untrusted-content n-grams with e5's second look, ``guard.second_look``) and as
a retrieved chunk (the n-grams beside the chunk head's score stored at ingest). Benign rows
of the same file and language set the 5% cut, so a language with few rows reads coarsely.
Test files are refused: they are for bench/guard.py alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from guard import tpr_at  # noqa: E402
from ownlight.guard.chunk_head import ChunkHead  # noqa: E402
from ownlight.guard.chunk_training import CACHE  # noqa: E402
from ownlight.guard.e5_layers import layer_reader  # noqa: E402
from ownlight.guard.model import GuardModel, ranked  # noqa: E402
from ownlight.guard.second_look import SecondLook  # noqa: E402
from ownlight.knowledge.chunking import prepare  # noqa: E402
from ownlight.knowledge.embedder import CachedEmbedder  # noqa: E402
from ownlight.knowledge.sqlite_store import embed_text  # noqa: E402
from ownlight.knowledge.types import Document  # noqa: E402


def margin(probability: float, threshold: float) -> float:
    """Log-odds over the threshold, so two readings compare on one scale."""
    p = min(max(probability, 1e-9), 1 - 1e-9)
    return float(np.log(p / (1 - p)) - np.log(threshold / (1 - threshold)))


def readings(rows: list[dict], model: GuardModel, untrusted: GuardModel,
             look: SecondLook, chunk_head: ChunkHead) -> dict[str, list[float]]:
    """Each row's score under every reading that applies to its kind (NaN otherwise)."""
    chunk_embed = CachedEmbedder(layer_reader(chunk_head.layers), CACHE).passages
    gate = look.gate(untrusted.threshold)
    out: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        text = row["text"]
        if row.get("kind") == "direct":
            out["user input"].append(margin(model.scan(text).score, model.threshold))
            out["tool result"].append(np.nan)
            out["chunk"].append(np.nan)
            continue
        out["user input"].append(np.nan)
        scored = untrusted.scored_units(text)
        alone = margin(untrusted.verdict(scored).score, untrusted.threshold)
        seen = margin(look.score(ranked(scored), len(text), gate), look.threshold)
        out["tool result"].append(max(alone, seen))
        doc = prepare(Document("doc", "", text), ())
        chunks = [embed_text(c.heading, c.text) for c in doc.chunks] or [text]
        ngram = max(untrusted.scan(c).score for c in chunks) / untrusted.threshold
        e5 = max(chunk_head.chunk_scores(chunks, chunk_embed)) / chunk_head.threshold
        out["chunk"].append(float(np.log(max(ngram, e5))))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--model", type=Path, help="user-input weights (.npz)")
    parser.add_argument("--untrusted-model", type=Path, help="untrusted-content n-grams")
    parser.add_argument("--look", type=Path, help="second-look head (tool_e5.npz)")
    parser.add_argument("--chunk-head", type=Path, help="chunk head (chunk_e5.npz)")
    parser.add_argument("--by-genre", action="store_true", help="a row per genre as well")
    parser.add_argument("--by-writer", action="store_true",
                        help="a row per writer as well (the pair id without its number)")
    args = parser.parse_args()
    if any("test" in f.name for f in args.files):
        parser.error("test files are measured by bench/guard.py, not read here")
    model, untrusted = GuardModel.load(args.model), GuardModel.load_untrusted(args.untrusted_model)
    head = SecondLook.load_head(args.look)
    look = SecondLook(head, CachedEmbedder(layer_reader(head.layers), CACHE).passages)
    chunk_head = ChunkHead.load(args.chunk_head)
    for path in args.files:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        scores = {k: np.array(v) for k, v in
                  readings(rows, model, untrusted, look, chunk_head).items()}
        labels = np.array([int(r["label"]) for r in rows])
        groups: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            groups["all"].append(i)
            groups[row.get("lang") or "en"].append(i)
            if row.get("twin"):
                groups[f"twins {row['twin']}"].append(i)
            if args.by_genre and row.get("genre"):
                groups[f"genre {row['genre']}"].append(i)
            if args.by_writer and row.get("pair"):
                groups[f"writer {str(row['pair']).rsplit('-', 1)[0]}"].append(i)
        print(f"\n{path.name}: TPR at 5% FPR / flagged at the shipped threshold "
              "(injected, benign)\n")
        print("| group | n | " + " | ".join(scores) + " |")
        print("|---|---|" + "---|" * len(scores))
        order = ("all", "zh", "ja", "ru", "en", "writer", "twins", "genre")
        for name, index in sorted(groups.items(), key=lambda g: next(
                (i for i, k in enumerate(order) if g[0].startswith(k)), len(order))):
            idx = np.array(index)
            cells = []
            for values in scores.values():
                v, y = values[idx], labels[idx]
                keep = ~np.isnan(v)
                pos, neg = v[keep & (y == 1)], v[keep & (y == 0)]
                if not len(pos) or not len(neg):
                    cells.append("-")
                    continue
                cells.append(f"{tpr_at(pos, neg, 0.05):.2f} ({(pos >= 0).mean():.2f}, "
                             f"{(neg >= 0).mean():.2f})")
            print(f"| {name} | {len(idx)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
