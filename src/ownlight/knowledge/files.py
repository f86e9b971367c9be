"""Which files an ingest run reads, and reading one without being led elsewhere.

A run reads what it was given and nothing else: a symbolic link is followed only to a
file or folder inside the ingested folder (``follow_links`` follows it anywhere), nothing
in Ownlight's own data directory is ever read, and only regular files are opened (a FIFO,
device or socket is reported, never opened, so nothing blocks). A file is opened by the
path its link resolved to, without following a link there, and must still be the file
that was found (same device and inode): a link swapped in after the walk is not read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ownlight.knowledge.limits import IngestLimits, LoadError
from ownlight.knowledge.loaders import supported

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
          stat.S_IFBLK: "a device"}
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
_FOLLOW_HINT = "not followed (--follow-links follows links out of the folder)"
_DATA_DIR = "in Ownlight's data directory: never ingested"


@dataclass(frozen=True)
class Found:
    """A regular file to read: ``path`` names it under the ingested root (a link's own
    path), ``real`` is the file itself, ``identity`` its (device, inode)."""

    path: Path
    real: Path
    identity: tuple[int, int]


@dataclass(frozen=True)
class Refused:
    """Something the walk did not read, and why (for the ingest report)."""

    path: Path
    reason: str


def _inside(path: Path, folders: Iterable[Path]) -> bool:
    return any(path == folder or path.is_relative_to(folder) for folder in folders)


class _Walk:
    def __init__(self, root: Path, follow_links: bool, protected: Sequence[Path]):
        self.root = root
        self.follow_links = follow_links
        self.protected = [Path(p).expanduser().resolve() for p in protected]
        self.found: list[Found] = []
        self.refused: list[Refused] = []
        self.walked: set[tuple[int, int]] = set()

    def file(self, path: Path, real: Path, info: os.stat_result) -> None:
        if stat.S_ISREG(info.st_mode):
            if supported(path) or path == self.root:
                self.found.append(Found(path, real, (info.st_dev, info.st_ino)))
        elif stat.S_IFMT(info.st_mode) in _KINDS and (supported(path) or path == self.root):
            kind = _KINDS[stat.S_IFMT(info.st_mode)]
            self.refused.append(Refused(path, f"{kind}, not a regular file: not opened"))

    def link(self, path: Path) -> Path | None:
        """A symbolic link met in the walk: checked, then taken for what it points to;
        returns the folder to walk when it is a folder to follow."""
        try:
            real = path.resolve(strict=True)
            info = real.stat()
        except (OSError, RuntimeError):
            if supported(path):
                self.refused.append(Refused(path, "a broken link"))
            return None
        inside = _inside(real, [self.root])
        if _inside(real, self.protected):
            self.refused.append(Refused(path, f"a link to a file {_DATA_DIR}"))
        elif not inside and not self.follow_links:
            if stat.S_ISDIR(info.st_mode) or supported(path):
                self.refused.append(Refused(path, f"a link to {real}, outside the folder: "
                                                  f"{_FOLLOW_HINT}"))
        elif stat.S_ISDIR(info.st_mode):
            return None if inside else real  # inside, its files are walked where they are
        else:
            self.file(path, real, info)
        return None

    def folder(self, path: Path, real: Path) -> None:
        """Every entry under a folder (``path`` as named, ``real`` where it is), by a
        stack rather than recursion: a deep tree cannot exhaust the interpreter."""
        stack = [(path, real)]
        while stack:
            path, real = stack.pop()
            try:
                info = real.stat()
                if (info.st_dev, info.st_ino) in self.walked:
                    continue  # reached again through a link
                self.walked.add((info.st_dev, info.st_ino))
                entries = sorted(os.scandir(real), key=lambda e: e.name)
            except OSError as exc:
                self.refused.append(Refused(path, f"cannot read the folder: {exc.strerror}"))
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                named, where = path / entry.name, real / entry.name
                try:
                    if entry.is_symlink():
                        target = self.link(named)
                        if target is not None:
                            stack.append((named, target))
                    elif entry.is_dir(follow_symlinks=False):
                        if _inside(where, self.protected):
                            self.refused.append(Refused(named, _DATA_DIR))
                        else:
                            stack.append((named, where))
                    else:
                        self.file(named, where, entry.stat(follow_symlinks=False))
                except OSError as exc:
                    self.refused.append(Refused(named, f"cannot read it: {exc.strerror}"))


def discover(
    root: Path, follow_links: bool = False, protected: Sequence[Path] = ()
) -> tuple[list[Found], list[Refused]]:
    """Supported files under ``root`` (resolved; or ``root`` itself), skipping hidden ones,
    in path order; and what was not read, with the reason."""
    walk = _Walk(root, follow_links, protected)
    if _inside(root, walk.protected):
        walk.refused.append(Refused(root, _DATA_DIR))
    elif root.is_dir():
        walk.folder(root, root)
    else:
        walk.file(root, root, root.stat())
    walk.found.sort(key=lambda f: str(f.path))
    return walk.found, walk.refused


def read(found: Found, limits: IngestLimits) -> bytes:
    """The bytes of a found file, at most ``max_file_mb`` of them."""
    fd = os.open(found.real, _OPEN_FLAGS)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != found.identity:
            raise LoadError("it was replaced while the folder was read: not read")
        if info.st_size > limits.file_bytes:
            raise limits.too_big("the file is", info.st_size)
        data = handle.read(limits.file_bytes + 1)
    if len(data) > limits.file_bytes:
        raise limits.too_big("the file grew past", limits.file_bytes)
    return data
