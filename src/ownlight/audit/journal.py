"""The journal: where a record becomes durable, one copy into a memory-mapped file."""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import threading
from pathlib import Path


class Journal:
    """This process's records, each made durable by one copy before it is chained.

    The journal is a file mapped into memory. Appending a record copies its line into
    the mapping: the mapped pages are the file's own pages in the kernel's cache, so once
    the copy is done the record survives the process being killed (``kill -9``, a crash,
    the OOM killer), exactly as after a ``write()``, and like one it is not flushed to
    the disk, so it does not survive the machine losing power (the ledger's SQLite file
    is not flushed on each commit either). Unlike a ``write()``, the copy is no system
    call and never lets go of the GIL. The file's blocks are allocated up front
    (``posix_fallocate``), so a full disk is an error here (fail closed), never a fault
    on a mapped page.

    A journal is a series of files, ``audit.journal.<pid>.<random>.<n>``: when one is
    full, an ``END`` line closes it and the next one is started. The chainer (a thread
    or a process of its own, see ``Ledger``) reads each file as it fills, chains what it
    holds and deletes it once it has chained it up to its ``END``. A journal left by a
    process that died is replayed into the chain by the next ledger opened on the same
    data dir: lines up to the first zero byte, a last line without its newline (cut by
    the kill, its request never answered) left out, and records already chained (by
    ``uid``) skipped.
    """

    PREFIX = "audit.journal."
    SIZE = 1 << 20
    END = b"END"
    _open: set[str] = set()  # name prefixes of ledgers open in this process (never orphans)

    def __init__(self, directory: Path):
        # pid plus a random part: a restarted container often gets the same pid, and
        # must not take its predecessor's journal for its own (and truncate it)
        self.directory = directory
        self.name = f"{self.PREFIX}{os.getpid()}.{secrets.token_hex(4)}"
        self.lock = threading.Lock()
        self.number = 0
        self._start()
        Journal._open.add(self.name)

    def _start(self) -> None:
        self.path = self.directory / f"{self.name}.{self.number:08d}"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.SIZE)
            self.map = mmap.mmap(fd, self.SIZE)
        except OSError:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        self.fd = fd
        self.size = self.SIZE
        self.end = 0

    def put(self, line: bytes) -> None:
        with self.lock:
            end = self.end + len(line)
            if end + len(self.END) + 1 > self.size:
                self._next(len(line))
                end = len(line)
            self.map[self.end:end] = line
            self.end = end

    def _next(self, needed: int) -> None:
        """Close this file with ``END`` and go on in the next one."""
        self._seal()
        self.number += 1
        self._start()
        if needed + len(self.END) + 1 > self.size:  # one record bigger than a file
            size = self.size * 2
            while size < needed + len(self.END) + 1:
                size *= 2
            os.posix_fallocate(self.fd, 0, size)
            self.map.resize(size)
            self.size = size

    def _seal(self) -> None:
        tail = self.END + b"\n"
        self.map[self.end:self.end + len(tail)] = tail
        self.end += len(tail)
        self.map.close()
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, self.end)
        os.close(self.fd)

    def close(self) -> None:
        """End the last file; the chainer deletes it once it has chained it."""
        with self.lock:
            self._seal()
        Journal._open.discard(self.name)

    @classmethod
    def lines(cls, raw: bytes) -> list[bytes]:
        """The complete records in a journal's bytes."""
        *complete, _cut = raw.split(b"\0", 1)[0].split(b"\n")
        return [line for line in complete if line.strip() and line != cls.END]

    @classmethod
    def orphans(cls, directory: Path) -> list[Path]:
        """Journals no open ledger is writing: their process is gone (or was this pid
        before a restart)."""
        found = []
        for path in sorted(directory.glob(cls.PREFIX + "*")):
            pid = path.name[len(cls.PREFIX):].split(".")[0]
            if not pid.isdigit() or any(path.name.startswith(n + ".") for n in cls._open):
                continue
            if int(pid) == os.getpid() or not _alive(int(pid)):
                found.append(path)
        return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
