"""Training the guard on JSON Lines rows ``{"text", "label"}`` (dev sets only).

A logistic regression (scikit-learn, liblinear) over the same features the scorer uses;
C and the threshold are chosen by cross-validation on the training rows themselves: the
threshold keeps the false-positive rate on benign training rows at about 5%.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from ownlight.guard.features import BUCKETS, SIGNAL_SCALE, SIGNALS, hashed, normalise, signals
from ownlight.guard.model import GuardModel

MAX_CHARS = 4000


def load(paths: Sequence[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def matrix(texts: Sequence[str]) -> sparse.csr_matrix:
    data, rows, cols = [], [], []
    for r, raw in enumerate(texts):
        text, invisible = normalise(raw[:MAX_CHARS])
        for c, v in hashed(text).items():
            rows.append(r)
            cols.append(c)
            data.append(v)
        found = signals(text, invisible)
        for k, name in enumerate(SIGNALS):
            if found[name]:
                rows.append(r)
                cols.append(BUCKETS + k)
                data.append(found[name] * SIGNAL_SCALE)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(texts), BUCKETS + len(SIGNALS)))


# Our multilingual rows are few beside the English ones: weighted up (3x chosen by dev CV).
SOURCE_WEIGHTS = {"ownlight-ml": 3.0}


def train(rows: Sequence[dict[str, Any]], c_values: Sequence[float] = (4.0, 16.0),
          target_fpr: float = 0.05) -> tuple[GuardModel, dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = matrix([r["text"] for r in rows])
    y = np.array([int(r["label"]) for r in rows])
    weight = np.array([SOURCE_WEIGHTS.get(str(r.get("source")), 1.0) for r in rows])
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    best: tuple[float, float, np.ndarray] | None = None
    for c in c_values:
        model = LogisticRegression(C=c, class_weight="balanced", solver="liblinear",
                                   max_iter=2000)
        scores = cross_val_predict(model, x, y, cv=folds, method="predict_proba",
                                   params={"sample_weight": weight})[:, 1]
        auc = float(roc_auc_score(y, scores))
        if best is None or auc > best[0]:
            best = (auc, c, scores)
    assert best is not None
    auc, c, scores = best
    threshold = float(np.quantile(scores[y == 0], 1 - target_fpr))
    final = LogisticRegression(C=c, class_weight="balanced", solver="liblinear", max_iter=2000)
    final.fit(x, y, sample_weight=weight)
    weights = final.coef_[0]
    model = GuardModel(weights[:BUCKETS].astype(np.float32),
                       weights[BUCKETS:].astype(np.float32), float(final.intercept_[0]),
                       min(max(threshold, 0.05), 0.95))
    return model, {"rows": len(rows), "C": c, "cv_auc": round(auc, 4),
                   "threshold": round(model.threshold, 4)}
