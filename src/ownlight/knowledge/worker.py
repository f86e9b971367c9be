"""Parse files in a child process, so a file's time and memory are bounded for real.

A parser stuck in C (lxml, zlib) or in a long pure-Python loop cannot be stopped from
inside its own process. ``ParseWorker`` sends each file's bytes to a child
(``python -m ownlight.knowledge.worker``), which parses and chunks them; it waits at
most ``file_timeout`` for the chunked documents and kills the child when over (the next
file starts a fresh one). On Linux the child's address space is capped at
``parse_memory_mb`` beyond the file and what the child itself maps, so a parser that
needs more fails with MemoryError (or dies) instead of taking the machine's memory. The
child answers in JSON, never pickles: a file that subverted a parser still cannot hand
the parent code to run.

Frames on both pipes are an 8-byte big-endian length and that many bytes. The request
is two frames (a JSON header, the file's bytes); the reply is one JSON frame. Elsewhere
than POSIX the files are parsed in this process: sizes and text stay bounded, time and
memory do not.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import IO, Any

import ownlight
from ownlight.errors import InvalidRequest
from ownlight.knowledge.chunking import prepare
from ownlight.knowledge.limits import MB, IngestLimits, LoadError, OverLimit
from ownlight.knowledge.loaders import load_bytes
from ownlight.knowledge.types import Chunk, PreparedDocument

_LENGTH = 8


class _Timeout(Exception):
    pass


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(_LENGTH, "big") + data


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def _read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame on a blocking stream; None at its end."""
    head = _read_exactly(stream, _LENGTH)
    return None if head is None else _read_exactly(stream, int.from_bytes(head, "big"))


class _Reader:
    """Frames from a pipe, waiting at most until a deadline."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = bytearray()

    def _fill(self, size: int, deadline: float) -> None:
        while len(self.buffer) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise _Timeout
            chunk = os.read(self.fd, max(size - len(self.buffer), 1 << 16))
            if not chunk:
                raise EOFError
            self.buffer += chunk

    def frame(self, deadline: float) -> bytes:
        self._fill(_LENGTH, deadline)
        size = _LENGTH + int.from_bytes(self.buffer[:_LENGTH], "big")
        self._fill(size, deadline)
        data = bytes(self.buffer[_LENGTH:size])
        del self.buffer[:size]
        return data


class ParseWorker:
    """Parses files in a child process within ``limits``; one instance per ingest run."""

    def __init__(self, limits: IngestLimits):
        self.limits = limits
        self._child: subprocess.Popen[bytes] | None = None
        self._reader: _Reader | None = None

    def __enter__(self) -> ParseWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child (it also ends by itself when this process goes)."""
        child, self._child, self._reader = self._child, None, None
        if child is not None:
            child.kill()
            child.wait()
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    pipe.close()

    def _started(self) -> tuple[subprocess.Popen[bytes], _Reader]:
        if self._child is not None and self._child.poll() is not None:
            self.close()  # it died between files: the next file is not to blame
        if self._child is None or self._reader is None:
            package_root = str(Path(ownlight.__file__).resolve().parent.parent)
            path = os.environ.get("PYTHONPATH")
            env = {**os.environ,
                   "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
            self._child = subprocess.Popen(
                [sys.executable, "-P", "-m", __name__, str(os.getpid())], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            assert self._child.stdout is not None
            self._reader = _Reader(self._child.stdout.fileno())
        return self._child, self._reader

    def prepare(self, key: str, data: bytes, allow: tuple[str, ...]) -> list[PreparedDocument]:
        """The documents in a file's bytes, chunked (``allow``: the command's access list);
        raises ``LoadError`` (``OverLimit`` for a bound) when they cannot be read within
        the limits."""
        if os.name != "posix":
            return prepare_file(key, data, self.limits, allow)
        child, reader = self._started()
        deadline = time.monotonic() + self.limits.file_timeout
        header = json.dumps({"key": key, "limits": dataclasses.asdict(self.limits),
                             "allow": list(allow)})
        try:
            assert child.stdin is not None
            child.stdin.write(_frame(header.encode()))
            child.stdin.write(len(data).to_bytes(_LENGTH, "big"))
            child.stdin.write(data)  # not framed by concatenation: no copy of 50 MB
            child.stdin.flush()
            reply = json.loads(reader.frame(deadline))
        except _Timeout:
            self.close()
            raise OverLimit("parsing it takes too long", "file_timeout",
                            self.limits.file_timeout, "s") from None
        except (OSError, EOFError):  # the child died: a crash, or killed out of memory
            code = _exit_code(child)
            self.close()
            raise LoadError(f"the parser process stopped (exit code {code})") from None
        if reply.get("restart"):
            self.close()
        if "over" in reply:
            raise OverLimit(*reply["over"])
        if "error" in reply:
            raise LoadError(reply["error"])
        return [_prepared(d) for d in reply["documents"]]


def _exit_code(child: subprocess.Popen[bytes]) -> int | None:
    try:
        return child.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return None


def _prepared(fields: dict[str, Any]) -> PreparedDocument:
    return PreparedDocument(
        fields["key"], fields["title"], fields["metadata"], tuple(fields["allow"]),
        fields["content_hash"], [Chunk(*chunk) for chunk in fields["chunks"]])


def _as_json(doc: PreparedDocument) -> dict[str, Any]:
    return {"key": doc.key, "title": doc.title, "metadata": doc.metadata,
            "allow": doc.allow, "content_hash": doc.content_hash,
            "chunks": [(c.text, c.start, c.end, c.heading) for c in doc.chunks]}


def prepare_file(
    key: str, data: bytes, limits: IngestLimits, allow: tuple[str, ...]
) -> list[PreparedDocument]:
    """A file's documents, chunked and ready to store, within every bound but time and
    memory (the child this runs in holds those)."""
    prepared = [prepare(doc, allow) for doc in load_bytes(key, data, limits)]
    if sum(len(doc.chunks) for doc in prepared) > limits.max_chunks:
        raise OverLimit(f"it splits into more than {limits.max_chunks:,} chunks (one per "
                        f"{limits.text_chars // limits.max_chunks} characters of the text "
                        "allowed)", "max_text_mb", limits.max_text_mb)
    return prepared


# -- the child ------------------------------------------------------------------------------


def _mapped_bytes() -> int | None:
    """This process's address space, or None where /proc does not tell it."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _cap_memory(limit: int | None) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS,
                           (limit if limit is not None else resource.RLIM_INFINITY,
                            resource.RLIM_INFINITY))
    except (ImportError, ValueError, OSError):
        pass


#: A child whose address space grew this much past its start is replaced after the file:
#: memory a parse freed but the allocator kept does not carry over to the next file's bound.
_REGROWTH = 256 * MB


def _answer(request: dict[str, Any], data: bytes, start: int | None) -> dict[str, Any]:
    limits = IngestLimits(**request["limits"])
    now = _mapped_bytes()  # the file's bytes included
    _cap_memory(None if now is None else now + int(limits.parse_memory_mb * MB))
    reply: dict[str, Any]
    try:
        prepared = prepare_file(request["key"], data, limits, tuple(request["allow"]))
        reply = {"documents": [_as_json(doc) for doc in prepared]}
    except MemoryError:
        reply = {"over": ["parsing it needs more memory", "parse_memory_mb",
                          limits.parse_memory_mb], "restart": True}
    except OverLimit as exc:
        reply = {"over": [exc.what, exc.setting, exc.value, exc.unit]}
    except (LoadError, InvalidRequest, ValueError) as exc:
        reply = {"error": str(exc)}
    except Exception as exc:  # reported for the file, as loading in process would
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        _cap_memory(None)
    after = _mapped_bytes()
    if start is not None and after is not None and after - start > _REGROWTH:
        reply["restart"] = True
    return reply


def _die_with_parent(parent: int) -> None:
    """On Linux, be killed when the parent goes, even in the middle of a long parse."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent went before that was set
        os._exit(1)


def main() -> None:
    """Answer requests on stdin until it closes (argv[1]: the parent's process id)."""
    _die_with_parent(int(sys.argv[1]))
    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a parser prints goes to stderr, not into the replies
    logging.disable(logging.CRITICAL)  # parsers log every oddity of a broken file
    warnings.simplefilter("ignore")
    import lxml.etree  # noqa: F401  (mapped before the start is measured)
    import pypdf  # noqa: F401

    start = _mapped_bytes()
    while (header := _read_frame(requests)) is not None:
        data = _read_frame(requests)
        if data is None:
            return
        reply = _answer(json.loads(header), data, start)
        del data
        replies.write(_frame(json.dumps(reply).encode()))
        replies.flush()


if __name__ == "__main__":
    main()
