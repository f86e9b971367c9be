"""Small matrix products on one BLAS thread.

OpenBLAS spreads even a 48 x 97 product over both cores and its threads then spin, waiting
for more work, while the e5 model (onnxruntime) or a second request wants the same cores.
The guard's word network and natasha's Russian tagger multiply small matrices many times
per request: on one thread they cost less and leave the cores to the models that need them
(measured in ``bench/guard.py``: a tool result's two readings 64 ms per 1,000 characters
with two BLAS threads, 36 ms with one).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import cache
from typing import Any


@cache
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager[Any]:
    """A context in which numpy's BLAS runs on one thread (about 8 µs to enter and leave)."""
    return _controller().limit(limits=1, user_api="blas")
