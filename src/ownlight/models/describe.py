"""What a GGUF model is, from its header: what ``ownlight models show`` prints.

The memory estimate is what llama.cpp allocates to load the model for a context of
``n_ctx`` tokens: the weights, the f16 KV cache, and a compute buffer. It is checked
against the memory the system has available before Ownlight loads a model, so an
oversized model is refused with numbers instead of being killed by the kernel.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ownlight.models.gguf_header import GGUFHeader

MB = 1 << 20
# llama.cpp's compute buffers and bookkeeping beyond weights and KV cache, measured as
# resident memory on Gemma 3 270M at 1k, 4k and 16k contexts (docs/models.md), rounded up.
BASE_OVERHEAD = 72 * MB


@dataclass(frozen=True)
class ModelFacts:
    architecture: str
    name: str | None
    parameters: int
    size_label: str | None
    quantization: str
    tensor_types: dict[str, int]
    context_length: int | None
    embedding_length: int | None
    layers: int | None
    chat_template: str | None
    tokenizer: str | None
    vocab_size: int | None
    license: str | None
    license_name: str | None
    license_link: str | None
    weights_bytes: int
    kv_bytes_per_token: int

    def memory_needed(self, n_ctx: int) -> int:
        """Bytes to load this model with an ``n_ctx``-token context."""
        return self.weights_bytes + self.kv_bytes_per_token * n_ctx + BASE_OVERHEAD

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(path: Path) -> ModelFacts:
    # the gguf package takes a third of a second to import: only where a header is read
    from ownlight.models.gguf_header import read_header

    return facts_from(read_header(path))


def facts_from(header: GGUFHeader) -> ModelFacts:
    from ownlight.models.gguf_header import ArrayInfo

    tokens = header.get("tokenizer.ggml.tokens")
    file_type = header.get("general.file_type")
    types = Counter(t.type for t in header.tensors)
    layers = header.arch("block_count")
    head_kv = header.arch("attention.head_count_kv") or header.arch("attention.head_count")
    embed = header.arch("embedding_length")
    key_len = header.arch("attention.key_length")
    value_len = header.arch("attention.value_length")
    if key_len is None and embed and header.arch("attention.head_count"):
        key_len = value_len = embed // header.arch("attention.head_count")
    kv_per_token = 0
    if layers and head_kv and key_len:
        kv_per_token = int(layers) * int(head_kv) * (int(key_len) + int(value_len or key_len)) * 2
    return ModelFacts(
        architecture=str(header.get("general.architecture", "unknown")),
        name=header.get("general.name"),
        parameters=sum(t.n_elements for t in header.tensors),
        size_label=header.get("general.size_label"),
        quantization=_quantization(file_type, types),
        tensor_types=dict(types.most_common()),
        context_length=header.arch("context_length"),
        embedding_length=embed,
        layers=layers,
        chat_template=header.get("tokenizer.chat_template"),
        tokenizer=header.get("tokenizer.ggml.model"),
        vocab_size=tokens.length if isinstance(tokens, ArrayInfo) else
        len(tokens) if isinstance(tokens, list) else None,
        license=header.get("general.license"),
        license_name=header.get("general.license.name"),
        license_link=header.get("general.license.link"),
        weights_bytes=sum(t.n_bytes for t in header.tensors),
        kv_bytes_per_token=kv_per_token,
    )


def _quantization(file_type: Any, types: Counter[str]) -> str:
    from gguf import LlamaFileType

    if isinstance(file_type, int):
        try:
            return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    return types.most_common(1)[0][0] if types else "unknown"


def available_memory() -> int:
    """Bytes the system can give a new allocation without swapping (MemAvailable)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
