"""The journal: where a record becomes durable, one copy into a memory-mapped file."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import mmap
import os
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MADV_POPULATE_WRITE = 23  # Linux 5.14+: fault a mapping's pages in, writable, at once


@dataclass
class _File:
    path: Path
    fd: int
    map: mmap.mmap


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

    The next file is made ready in a thread while this one fills: created, allocated,
    mapped and its pages faulted in (``MADV_POPULATE_WRITE``, through ctypes, which lets
    go of the GIL), so the request path neither opens files nor takes a page fault per
    4 KiB of records (0.55 us a record, measured, moved to the other core).

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
        self._maker = ThreadPoolExecutor(1, thread_name_prefix="audit-journal")
        self._use(self._make(0))
        self._spare: Future[_File] = self._maker.submit(self._make, 1)
        Journal._open.add(self.name)

    def _make(self, number: int) -> _File:
        path = self.directory / f"{self.name}.{number:08d}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.SIZE)
            mapped = mmap.mmap(fd, self.SIZE)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        _fault_in(mapped)
        return _File(path, fd, mapped)

    def _use(self, file: _File) -> None:
        self.path, self.fd, self.map = file.path, file.fd, file.map
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
        try:
            self._use(self._spare.result())
        except OSError:  # once more, here (the disk may have room now); else fail closed
            self._use(self._make(self.number))
        self._spare = self._maker.submit(self._make, self.number + 1)
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
        """End the last file; the chainer deletes it once it has chained it. The spare,
        never written, is removed."""
        with self.lock:
            self._seal()
            with contextlib.suppress(OSError):
                spare = self._spare.result()
                spare.map.close()
                os.close(spare.fd)
                spare.path.unlink(missing_ok=True)
            self._maker.shutdown()
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


def _fault_in(mapped: mmap.mmap) -> None:
    """Fault every page of a fresh mapping in, writable; best effort (another kernel or
    system just leaves the faults to the first writes)."""
    try:
        view = ctypes.c_char.from_buffer(mapped)
    except (TypeError, ValueError):
        return
    try:
        _libc().madvise(ctypes.addressof(view), len(mapped), MADV_POPULATE_WRITE)
    except (OSError, AttributeError):
        pass
    finally:
        del view  # the mapping can be closed or resized again


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
