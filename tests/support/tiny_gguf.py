"""Tiny GGUF files written with the ``gguf`` package, and a backend that "runs" them.

A tiny GGUF carries real metadata and a tensor, but no working network: the
``fake-local`` backend reads its header (as llama.cpp would) and answers with the
text in its ``test.answer`` key after ``test.delay_ms``. Registered only by the tests
(``monkeypatch.setitem(KINDS, ...)``), it lets a real gateway serve, switch, evict and
evaluate model versions in milliseconds. A file with ``test.load_error`` fails to load
with that message; one with ``test.crash`` aborts the process that loads it (only
``ownlight models promote``'s child process may try it, never the test process).
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from ownlight.backends.base import Backend, BackendResult, Operation
from ownlight.models.gguf_header import read_header
from ownlight.protocol.model import Choice, ChoiceDelta, Chunk, Request, Response, Usage

FAKE_KIND = "fake-local"
FAKE_CLASS = "tests.support.tiny_gguf:FakeLocalBackend"


def write_tiny_gguf(path: Path, *, name: str = "Tiny", license: str | None = "apache-2.0",
                    answer: str = "hello", delay_ms: int = 0, weights: int = 4096,
                    load_error: str | None = None, crash: bool = False,
                    extra: dict[str, np.ndarray] | None = None) -> Path:
    """A tiny GGUF; ``load_error`` or ``crash`` make the fake backend fail to load it
    (with that message, or by aborting the process, as llama.cpp does on some files);
    ``extra`` tensors are written after ``token_embd.weight``."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    if license:
        writer.add_license(license)
    writer.add_context_length(2048)
    writer.add_block_count(1)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(4)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "<s>", "</s>", "hello", "world"])
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_string("test.answer", answer)
    writer.add_uint32("test.delay_ms", delay_ms)
    if load_error:
        writer.add_string("test.load_error", load_error)
    if crash:
        writer.add_bool("test.crash", True)
    writer.add_tensor("token_embd.weight", np.arange(weights, dtype=np.float32).reshape(-1, 64))
    for tensor_name, values in (extra or {}).items():
        writer.add_tensor(tensor_name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


class FakeLocalBackend(Backend):
    kind = FAKE_KIND
    operations = frozenset({Operation.CHAT, Operation.COMPLETION})

    def __init__(self, entry: Any, config: Any):
        super().__init__(entry, config)
        self.answer = ""
        self.delay = 0.0
        self.closed = False

    def prepare(self, progress: Any = None) -> None:
        header = read_header(Path(self.entry.path))
        if header.get("test.crash"):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left behind
            os.abort()
        if header.get("test.load_error"):
            raise ValueError(str(header.get("test.load_error")))
        self.answer = str(header.get("test.answer"))
        self.delay = int(header.get("test.delay_ms", 0)) / 1000

    async def close(self) -> None:
        self.closed = True

    async def execute(self, request: Request) -> BackendResult:
        if self.closed:
            raise AssertionError(f"{self.model_name} used after it was unloaded")
        if request.stream:
            return self._stream()
        await asyncio.sleep(self.delay)
        return Response(request.operation, self.model_name,
                        choices=[Choice(text=self.answer)], usage=Usage(3, 2))

    async def _stream(self) -> AsyncIterator[Chunk]:
        yield Chunk(Operation.CHAT, self.model_name, choices=[ChoiceDelta(role="assistant")])
        for word in self.answer.split(" "):
            await asyncio.sleep(self.delay / 2)
            if self.closed:
                raise AssertionError(f"{self.model_name} unloaded mid-stream")
            yield Chunk(Operation.CHAT, self.model_name, choices=[ChoiceDelta(text=word + " ")])
        yield Chunk(Operation.CHAT, self.model_name,
                    choices=[ChoiceDelta(finish_reason="stop")])
