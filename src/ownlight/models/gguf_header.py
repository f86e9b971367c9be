"""Reading a GGUF file's header: its metadata and tensor table, never its weights.

The ``gguf`` package's ``GGUFReader`` builds a numpy view for every element of every
array, which takes 12 s on the bundled Gemma 3 270M (its vocabulary has 262,144
tokens). Ownlight only needs the scalar metadata, the sizes of the big arrays and the
tensor table, so it walks the header itself with the ``gguf`` package's own type
constants and skips over large arrays (milliseconds on the same file).

The tensor table is then checked against the file's size, so a truncated or corrupted
file is refused before anything trusts its header: every tensor must lie inside the
file, aligned, and apart from the others. That reads the header and one ``stat``,
never the weights (docs/models.md has the timings).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gguf import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGMLQuantizationType,
    GGUFValueType,
)

from ownlight.errors import ConfigError

# Arrays longer than this are kept as their length only (vocabularies, merges, scores).
MAX_KEPT_ARRAY = 64
# The fewest bytes a metadata pair (key length, type, a one-byte value) and a tensor's
# entry (name length, dimension count, type, offset) can take: a header claiming more
# of them than its file could hold is refused before any is read.
MIN_KV_BYTES = 8 + 4 + 1
MIN_TENSOR_BYTES = 8 + 4 + 4 + 8
MAX_DIMS = 4  # GGML_MAX_DIMS

_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.FLOAT64: "<d",
    GGUFValueType.BOOL: "<?",
}


@dataclass(frozen=True)
class ArrayInfo:
    """A large metadata array, summarised: its element type and length."""

    type: str
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type: str
    n_elements: int
    n_bytes: int
    offset: int = 0  # from the start of the data section


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)
    data_start: int = 0  # where the data section begins: the aligned end of the table
    file_size: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def arch(self, key: str, default: Any = None) -> Any:
        """An architecture-scoped key: ``context_length`` -> ``gemma3.context_length``."""
        return self.metadata.get(f"{self.get('general.architecture', '')}.{key}", default)


class _Reader:
    def __init__(self, src: BinaryIO, path: Path, size: int):
        self.src = src
        self.path = path
        self.size = size
        self.pos = 0

    def take(self, size: int) -> bytes:
        self.skip(size)
        return self.src.read(size)

    def skip(self, size: int, seek: bool = False) -> None:
        """Move ``size`` bytes on (reading them is the caller's), refused past the end:
        a corrupted length may be 2**63. The position is counted, not asked (a ``tell``
        is a system call, and the bundled vocabulary is 262,144 strings)."""
        if size > self.size - self.pos:
            raise ConfigError(
                f"{self.path} ends inside its GGUF header: at byte {self.pos:,} the header "
                f"reads {size:,} bytes, but the file ends at byte {self.size:,}: the file is "
                "truncated or its header corrupted")
        self.pos += size
        if seek:
            self.src.seek(size, 1)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.unpack("<Q")).decode("utf-8", errors="replace")

    def value(self, kind: GGUFValueType) -> Any:
        if kind is GGUFValueType.STRING:
            return self.string()
        if kind is GGUFValueType.ARRAY:
            return self.array()
        return self.unpack(_SCALARS[kind])

    def array(self) -> Any:
        kind = GGUFValueType(self.unpack("<I"))
        length = self.unpack("<Q")
        least = 8 if kind is GGUFValueType.STRING else 12 if kind is GGUFValueType.ARRAY \
            else struct.calcsize(_SCALARS[kind])
        if length * least > self.size - self.pos:
            raise ConfigError(
                f"{self.path}: a metadata array at byte {self.pos:,} claims {length:,} "
                f"elements ({length * least:,} bytes at least), but the file has "
                f"{self.size:,} bytes: the file is truncated or its header corrupted")
        if length <= MAX_KEPT_ARRAY:
            return [self.value(kind) for _ in range(length)]
        if kind is GGUFValueType.STRING:
            self.skip_strings(length)
        elif kind is GGUFValueType.ARRAY:
            for _ in range(length):
                self.array()
        else:
            self.skip(struct.calcsize(_SCALARS[kind]) * length, seek=True)
        return ArrayInfo(kind.name.lower(), length)

    def skip_strings(self, count: int) -> None:
        """``skip`` over ``count`` strings, inlined: a vocabulary is the header's bulk."""
        read, seek, length = self.src.read, self.src.seek, struct.Struct("<Q").unpack
        pos, end = self.pos, self.size
        for _ in range(count):
            need = 8
            if pos + need <= end:
                (need,) = length(read(8))
                pos += 8
                if need <= end - pos:
                    pos += need
                    seek(need, 1)
                    continue
            self.pos = pos
            self.skip(need)  # past the end: raises, with the position and the sizes
        self.pos = pos


def read_header(path: Path) -> GGUFHeader:
    """Parse the metadata and tensor table of a GGUF file (v2 or v3, little-endian), and
    refuse a file that does not hold every tensor its header declares."""
    header = _parse(path)
    problem = layout_problem(header)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    return header


def _parse(path: Path) -> GGUFHeader:
    try:
        with path.open("rb") as src:
            reader = _Reader(src, path, os.fstat(src.fileno()).st_size)
            if reader.size < 4 or reader.unpack("<I") != GGUF_MAGIC:
                raise ConfigError(f"{path} is not a GGUF file (it does not begin with the "
                                  "GGUF magic bytes)")
            version = reader.unpack("<I")
            if version not in (2, 3):
                raise ConfigError(f"{path}: GGUF version {version} is not supported")
            n_tensors, n_kv = reader.unpack("<Q"), reader.unpack("<Q")
            least = 24 + n_kv * MIN_KV_BYTES + n_tensors * MIN_TENSOR_BYTES
            if least > reader.size:
                raise ConfigError(
                    f"{path}: its header declares {_count(n_tensors, 'tensor')} and "
                    f"{_count(n_kv, 'metadata key')}, which take {least:,} bytes at least, "
                    f"but the file has {reader.size:,} bytes: the file is truncated or its "
                    "header corrupted")
            metadata: dict[str, Any] = {}
            for _ in range(n_kv):
                key = reader.string()
                metadata[key] = reader.value(GGUFValueType(reader.unpack("<I")))
            tensors = [_tensor(reader) for _ in range(n_tensors)]
            data_start = _align(reader.pos, _alignment(metadata))
    except (ValueError, KeyError, struct.error) as exc:
        raise ConfigError(f"{path}: malformed GGUF header ({exc})") from None
    return GGUFHeader(version, metadata, tensors, data_start, reader.size)


def _tensor(reader: _Reader) -> TensorInfo:
    name = reader.string()
    n_dims = reader.unpack("<I")
    if n_dims > MAX_DIMS:
        raise ValueError(f"tensor {name!r} has {n_dims:,} dimensions, GGUF allows {MAX_DIMS}")
    dims = tuple(reader.unpack("<Q") for _ in range(n_dims))
    kind = GGMLQuantizationType(reader.unpack("<I"))
    offset = reader.unpack("<Q")
    n = 1
    for d in dims:
        n *= d
    block, size = GGML_QUANT_SIZES[kind]
    if n >= 1 << 63 or (dims and dims[0] % block):
        raise ValueError(f"tensor {name!r} of type {kind.name} cannot have shape {dims}")
    return TensorInfo(name, dims, kind.name, n, n // block * size, offset)


def _alignment(metadata: dict[str, Any]) -> int:
    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"general.alignment {alignment!r} is not a power of two")
    return alignment


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def layout_problem(header: GGUFHeader) -> str | None:
    """Why the tensor table does not fit the file, in words and bytes (None: it fits).

    Each tensor must start at an aligned offset of the data section, end inside the
    file, and not overlap another; names must be unique (llama.cpp finds them by name).
    """
    alignment = _alignment(header.metadata)
    seen: set[str] = set()
    for t in header.tensors:
        if t.name in seen:
            return f"the tensor name {t.name!r} appears twice: its header is corrupted"
        seen.add(t.name)
        if t.offset % alignment:
            return (f"tensor {t.name!r} starts at offset {t.offset:,} of the data section, "
                    f"not a multiple of the file's alignment ({alignment}): its header is "
                    "corrupted")
    start = header.data_start
    cut = [t for t in header.tensors if start + t.offset + t.n_bytes > header.file_size]
    if cut:
        end = max(start + t.offset + t.n_bytes for t in header.tensors)
        first = min(cut, key=lambda t: t.offset)
        return (f"the file is truncated or its header corrupted: the header declares "
                f"{_count(len(header.tensors), 'tensor')} whose data ends at byte {end:,}, "
                f"but the file has {header.file_size:,} bytes ({end - header.file_size:,} "
                f"missing); {_count(len(cut), 'tensor')} past its end, the first "
                f"{first.name!r} at bytes {start + first.offset:,}-"
                f"{start + first.offset + first.n_bytes:,}")
    ordered = sorted(header.tensors, key=lambda t: t.offset)
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.offset + before.n_bytes > after.offset:
            return (f"tensors {before.name!r} (bytes {start + before.offset:,}-"
                    f"{start + before.offset + before.n_bytes:,}) and {after.name!r} (from "
                    f"byte {start + after.offset:,}) overlap: its header is corrupted")
    return None
