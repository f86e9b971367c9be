"""The complexity scorer, loaded on first use so gateways that never score pay nothing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any


class LazyScorer:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).expanduser() if path else None
        self._router: Any = None
        self._lock = threading.Lock()

    def __call__(self, prompt: str) -> float:
        if self._router is None:
            with self._lock:
                if self._router is None:
                    from ownlight.routing.complexity import ComplexityRouter

                    self._router = ComplexityRouter.load(self.path)
        return float(self._router.score(prompt))
