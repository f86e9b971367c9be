"""Train the complexity router and measure it the way RouteLLM does.

Rows are dicts with ``prompt``, ``task``, ``weak_correct`` and ``strong_correct``.
Evaluation ranks requests by score and sends the highest to the cloud; a routed
request's quality is ``strong_correct`` if sent to the cloud, else ``weak_correct``.
Ties are split evenly (expected value), and random routing is given as its expected
value, so every figure is deterministic.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ownlight.routing.complexity import ComplexityRouter
from ownlight.routing.features import FeatureSpec, dense_features, sparse_features

Row = Mapping[str, Any]

# Chosen by 5-fold cross-validation on dev.jsonl only.
DEFAULT_C = 1.0
CHAR_WEIGHT = 1.0
DENSE_WEIGHT = 0.1
#: Prompts the local model gets right and the cloud model wrong are the costliest mistake
#: to route out (money spent, quality lost): weighting them x10 as negatives lowered
#: CPT(50%) on dev cross-validation from 0.263 to 0.238 (MMLU), 0.300 to 0.294 (GSM8K).
WEAK_ONLY_WEIGHT = 10.0


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Read JSON Lines, skipping blank lines."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def split_holdout(rows: Sequence[Row], share: float) -> tuple[list[Row], list[Row]]:
    """Deterministic split by a hash of each row's id (or prompt): same rows every run."""
    train_rows: list[Row] = []
    held: list[Row] = []
    for row in rows:
        key = str(row.get("id", row["prompt"])).encode("utf-8")
        (held if zlib.crc32(key) % 10_000 < share * 10_000 else train_rows).append(row)
    return train_rows, held


def _target(row: Row) -> int:
    """Weak wrong and strong right: the only case where paying for the cloud buys quality."""
    return int(not row["weak_correct"] and row["strong_correct"])


def train(
    rows: Sequence[Row], c: float = DEFAULT_C, spec: FeatureSpec | None = None
) -> ComplexityRouter:
    """Fit a logistic regression on hashed tf-idf n-grams plus problem-shape features."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import normalize

    spec = spec or FeatureSpec()
    y = np.array([_target(r) for r in rows])
    if len(set(y.tolist())) < 2:
        raise ValueError("training data needs both routed and not-routed examples")
    indices: list[int] = []
    values: list[float] = []
    indptr = [0]
    for row in rows:
        feats = sparse_features(row["prompt"], spec)
        indices.extend(feats.keys())
        values.extend(feats.values())
        indptr.append(len(indices))
    tf = sp.csr_matrix((values, indices, indptr), shape=(len(rows), spec.buckets))
    df = np.bincount(tf.indices, minlength=spec.buckets)
    idf = np.log((1 + len(rows)) / (1 + df)) + 1.0
    weighted = tf.multiply(idf).tocsr()
    half = spec.buckets // 2
    sparse_x = sp.hstack(
        [normalize(weighted[:, :half]), CHAR_WEIGHT * normalize(weighted[:, half:])]
    ).tocsr()
    dense = np.array([dense_features(r["prompt"]) for r in rows])
    mean = dense.mean(axis=0)
    scale = (dense.std(axis=0) + 1e-6) / DENSE_WEIGHT
    x = sp.hstack([sparse_x, sp.csr_matrix((dense - mean) / scale)]).tocsr()
    weak_only = np.array([bool(r["weak_correct"]) and not r["strong_correct"] for r in rows])
    weights = np.where(weak_only, WEAK_ONLY_WEIGHT, 1.0)
    model = LogisticRegression(C=c, max_iter=3000).fit(x, y, sample_weight=weights)
    coef = model.coef_.ravel()
    return ComplexityRouter(
        spec=spec,
        idf=idf,
        weights=coef[: spec.buckets],
        char_weight=CHAR_WEIGHT,
        dense_mean=mean,
        dense_scale=scale,
        dense_weights=coef[spec.buckets :],
        bias=float(model.intercept_[0]),
        meta={"target": "weak wrong and strong right", "rows": len(rows), "C": c,
              "weak_only_weight": WEAK_ONLY_WEIGHT},
    )


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    cloud_share: float
    quality: float


def _curve(scores: Sequence[float], weak: Sequence[bool], strong: Sequence[bool]):
    """Exact cost-quality curve at every distinct score, highest scores sent first."""
    s = np.asarray(scores, dtype=float)
    gain = np.asarray(strong, dtype=float) - np.asarray(weak, dtype=float)
    order = np.argsort(-s, kind="stable")
    s, gain = s[order], gain[order]
    n = len(s)
    ends = np.r_[np.nonzero(np.diff(s))[0] + 1, n]
    shares = np.r_[0, ends] / n
    base = float(np.mean(weak))
    quality = base + np.r_[0.0, np.cumsum(gain)[ends - 1]] / n
    return shares, quality


def _first_share(shares: np.ndarray, quality: np.ndarray, target: float) -> float:
    """Smallest cloud share whose (tie-interpolated) quality reaches target."""
    if quality[0] >= target - 1e-12:
        return 0.0
    for i in range(1, len(shares)):
        if quality[i] >= target - 1e-12:
            q0, q1 = quality[i - 1], quality[i]
            frac = (target - q0) / (q1 - q0) if q1 != q0 else 1.0
            return float(shares[i - 1] + frac * (shares[i] - shares[i - 1]))
    return 1.0


def cpt(scores, weak, strong, recover: float) -> float:
    """Cloud share needed to recover ``recover`` of the weak-to-strong quality gap."""
    shares, quality = _curve(scores, weak, strong)
    lo, hi = float(np.mean(weak)), float(np.mean(strong))
    return _first_share(shares, quality, lo + recover * (hi - lo))


def share_for_quality(scores, weak, strong, of_strong: float = 0.95) -> float:
    """Cloud share at which quality reaches ``of_strong`` times the strong model's."""
    shares, quality = _curve(scores, weak, strong)
    return _first_share(shares, quality, of_strong * float(np.mean(strong)))


def random_cpt(recover: float) -> float:
    """Random routing gains linearly with cloud share, so in expectation CPT(x) = x."""
    return recover


def random_share_for_quality(weak, strong, of_strong: float = 0.95) -> float:
    lo, hi = float(np.mean(weak)), float(np.mean(strong))
    target = of_strong * hi
    if lo >= target:
        return 0.0
    return 1.0 if hi <= lo else min(1.0, (target - lo) / (hi - lo))


def cost_quality_table(scores, weak, strong, steps: int = 10) -> list[CurvePoint]:
    """Cloud share and quality for thresholds 0, 1/steps, ..., 1 (score >= threshold -> cloud)."""
    s = np.asarray(scores, dtype=float)
    w = np.asarray(weak, dtype=float)
    g = np.asarray(strong, dtype=float)
    table = []
    for k in range(steps + 1):
        t = k / steps
        cloud = s >= t
        table.append(CurvePoint(t, float(cloud.mean()), float(np.where(cloud, g, w).mean())))
    return table


def summarize(scores, weak, strong) -> dict[str, Any]:
    """Headline figures for one group of rows, router next to random routing."""
    return {
        "n": len(scores),
        "weak_quality": float(np.mean(weak)),
        "strong_quality": float(np.mean(strong)),
        "router": {
            "cpt50": cpt(scores, weak, strong, 0.5),
            "cpt80": cpt(scores, weak, strong, 0.8),
            "share95": share_for_quality(scores, weak, strong),
        },
        "random": {
            "cpt50": random_cpt(0.5),
            "cpt80": random_cpt(0.8),
            "share95": random_share_for_quality(weak, strong),
        },
        "table": [asdict(p) for p in cost_quality_table(scores, weak, strong)],
    }


def evaluate(scores: Sequence[float], rows: Iterable[Row]) -> dict[str, dict[str, Any]]:
    """Summaries per task and overall."""
    rows = list(rows)
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(str(row.get("task", "all")), []).append(i)
    groups = dict(sorted(groups.items()))
    if len(groups) > 1 or "all" not in groups:
        groups["overall"] = list(range(len(rows)))
    out = {}
    for name, idx in groups.items():
        out[name] = summarize(
            [scores[i] for i in idx],
            [bool(rows[i]["weak_correct"]) for i in idx],
            [bool(rows[i]["strong_correct"]) for i in idx],
        )
    return out
