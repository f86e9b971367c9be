"""Learned complexity router: how likely the local model fails where the cloud one succeeds.

Scoring is pure numpy + stdlib (hashed n-grams, idf, one logistic layer), so the server
neither imports scikit-learn nor downloads anything; weights ship inside the package.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ownlight.routing.features import FeatureSpec, dense_features, sparse_features

FORMAT_VERSION = 1
PACKAGED = "data/router/complexity.npz"


@dataclass
class ComplexityRouter:
    """Scores a prompt in [0, 1]; higher means the cloud model is more likely worth its cost."""

    spec: FeatureSpec
    idf: np.ndarray
    weights: np.ndarray
    char_weight: float
    dense_mean: np.ndarray
    dense_scale: np.ndarray
    dense_weights: np.ndarray
    bias: float
    meta: dict[str, Any] = field(default_factory=dict)

    def logit(self, prompt: str) -> float:
        """Linear score before the sigmoid; kept apart so tests can check monotonicity."""
        feats = sparse_features(prompt, self.spec)
        total = self.bias
        if feats:
            idx = np.fromiter(feats.keys(), dtype=np.int64, count=len(feats))
            val = np.fromiter(feats.values(), dtype=np.float64, count=len(feats))
            val *= self.idf[idx]
            is_char = idx >= self.spec.buckets // 2
            for mask, scale in ((~is_char, 1.0), (is_char, self.char_weight)):
                norm = math.sqrt(float(val[mask] @ val[mask])) or 1.0
                val[mask] *= scale / norm
            total += float(val @ self.weights[idx])
        dense = (np.asarray(dense_features(prompt)) - self.dense_mean) / self.dense_scale
        return total + float(dense @ self.dense_weights)

    def score(self, prompt: str) -> float:
        """Probability that the local model is wrong and the cloud model right."""
        z = self.logit(prompt)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def score_many(self, prompts: Iterable[str]) -> list[float]:
        return [self.score(p) for p in prompts]

    def save(self, path: Path) -> None:
        """One compressed .npz: arrays plus a JSON header with the feature spec and metadata."""
        header = {
            "format": FORMAT_VERSION,
            "spec": asdict(self.spec),
            "char_weight": self.char_weight,
            "bias": self.bias,
            "meta": self.meta,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez_compressed(
                fh,
                header=np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
                idf=self.idf.astype(np.float32),
                weights=self.weights.astype(np.float32),
                dense_mean=self.dense_mean,
                dense_scale=self.dense_scale,
                dense_weights=self.dense_weights,
            )

    @classmethod
    def load(cls, path: Path | None = None) -> ComplexityRouter:
        """Load a router file; ``None`` loads the weights shipped with the package."""
        if path is None:
            with resources.files("ownlight").joinpath(PACKAGED).open("rb") as fh:
                return cls._from_npz(fh)
        with Path(path).open("rb") as fh:
            return cls._from_npz(fh)

    @classmethod
    def _from_npz(cls, fh: Any) -> ComplexityRouter:
        with np.load(fh, allow_pickle=False) as data:
            header = json.loads(data["header"].tobytes().decode("utf-8"))
            if header.get("format") != FORMAT_VERSION:
                raise ValueError(f"unsupported router format: {header.get('format')!r}")
            return cls(
                spec=FeatureSpec(**header["spec"]),
                idf=data["idf"].astype(np.float64),
                weights=data["weights"].astype(np.float64),
                char_weight=float(header["char_weight"]),
                dense_mean=data["dense_mean"].astype(np.float64),
                dense_scale=data["dense_scale"].astype(np.float64),
                dense_weights=data["dense_weights"].astype(np.float64),
                bias=float(header["bias"]),
                meta=header.get("meta", {}),
            )
