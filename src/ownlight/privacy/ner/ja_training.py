"""Train the Japanese person-name CRF on ``pii_names/dev`` and report cross-validated F1.

    python -m ownlight.privacy.ner.ja_training ../shared/eval/pii_names/dev.jsonl

Only ``dev`` may be used: the test split is for measuring (``bench/privacy.py``). Labels
are BIO over UniDic tokens: a token belongs to a name when most of it lies on one.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from ownlight.privacy.ner.ja_features import Token, features, spans_from_tags, tokenize

PARAMS = {"c1": 0.1, "c2": 0.01, "max_iterations": 200, "feature.possible_transitions": True}
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "data" / "privacy" / "ja_person.crfsuite"


def bio_tags(tokens: list[Token], names: list[tuple[int, int]]) -> list[str]:
    tags: list[str] = []
    previous: tuple[int, int] | None = None
    for token in tokens:
        tag, owner = "O", None
        for name in names:
            overlap = max(0, min(token.end, name[1]) - max(token.start, name[0]))
            if overlap and overlap * 2 >= token.end - token.start:
                tag, owner = ("I" if previous == name else "B"), name
                break
        tags.append(tag)
        previous = owner
    return tags


def examples(rows: list[dict[str, Any]]) -> list[tuple[list[Token], list[list[str]], list[str]]]:
    out = []
    for row in rows:
        tokens = tokenize(row["text"])
        names = [(s["start"], s["end"]) for s in row["spans"]]
        out.append((tokens, features(row["text"], tokens), bio_tags(tokens, names)))
    return out


def train(data: list[tuple[list[Token], list[list[str]], list[str]]], path: Path) -> None:
    import pycrfsuite

    trainer = pycrfsuite.Trainer(verbose=False)
    for _, x, y in data:
        trainer.append(x, y)
    trainer.set_params(PARAMS)
    trainer.train(str(path))


def _overlap(span: tuple[int, int], others: list[tuple[int, int]]) -> int:
    return sum(max(0, min(span[1], e) - max(span[0], s)) for s, e in others)


def cross_validate(rows: list[dict[str, Any]], data: list[Any], folds: int, tmp: Path) -> str:
    import pycrfsuite

    order = list(range(len(data)))
    random.Random(1).shuffle(order)
    found = names = right = predicted = 0
    for k in range(folds):
        held = set(order[k::folds])
        train([d for i, d in enumerate(data) if i not in held], tmp)
        tagger = pycrfsuite.Tagger()
        tagger.open(str(tmp))
        for i in held:
            tokens, x, _ = data[i]
            pred = spans_from_tags(tokens, tagger.tag(x))
            gold = [(s["start"], s["end"]) for s in rows[i]["spans"]]
            names += len(gold)
            found += sum(_overlap(g, pred) * 2 >= g[1] - g[0] for g in gold)
            predicted += len(pred)
            right += sum(_overlap(p, gold) * 2 >= p[1] - p[0] for p in pred)
    precision, recall = right / max(predicted, 1), found / max(names, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    return f"{folds}-fold CV on dev: precision {precision:.3f} recall {recall:.3f} F1 {f1:.3f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dev", type=Path, help="pii_names/dev.jsonl (never a test file)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args(argv)
    if "test" in args.dev.name:
        raise SystemExit("refusing to train on a test split; use dev")
    rows = [json.loads(line) for line in args.dev.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r.get("lang") == "ja"]
    data = examples(rows)
    if args.folds > 1:
        print(cross_validate(rows, data, args.folds, args.out.with_suffix(".cv")))
        args.out.with_suffix(".cv").unlink(missing_ok=True)
    train(data, args.out)
    print(f"trained on {len(rows)} Japanese dev rows -> {args.out}")


if __name__ == "__main__":
    main()
