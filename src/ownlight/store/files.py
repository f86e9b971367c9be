"""Private files: the data directory is 0700 and everything in it 0600, from creation.

The data directory holds key hashes, stored conversations, the audit ledger and every
ingested document. Every entry point (the CLI's ``main``, ``Runtime.build`` for embedded
use) calls ``private_umask`` first, so whatever module makes a file or a directory —
SQLite databases and their ``-wal``/``-shm`` files (SQLite gives those its database's
mode), models copied into the registry, journals, exports — it is its owner's alone.
Files made with ``os.open`` name their mode (0600) as well, so they are private even in
a process that never went through an entry point.

``secure_data_dir`` looks at start-up, because an operator (or an older Ownlight) may
have loosened what is already there: what group or others may read is named with its
mode and the ``chmod`` that fixes it; a data dir, or anything in it, that others may
write is refused (they could replace the databases, or plant a journal that the next
start chains into the ledger), and with ``server.strict_permissions`` every finding is.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ownlight.errors import ConfigError

PRIVATE_UMASK = 0o077
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
MAX_ENTRIES = 10_000  # entries looked at under the data dir (it holds a few dozen)
MAX_NAMED = 5  # paths named in one warning


def private_umask() -> None:
    """Take group and other bits off everything this process creates from now on (kept
    stricter when it already was)."""
    current = os.umask(PRIVATE_UMASK)
    os.umask(current | PRIVATE_UMASK)


def make_private_dir(path: Path) -> None:
    """``path`` and any missing parents, the last one 0700 whatever the umask."""
    if not path.is_dir():
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        os.chmod(path, PRIVATE_DIR)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (for a file another library
    opens and would create with its own default mode, such as SQLite's 0644)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        pass


def open_private(path: Path) -> TextIO:
    """``path`` opened for writing text, truncated, mode 0600 (an existing file is made
    0600 too: what Ownlight writes there, such as an export of the ledger, is private)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "w")


@dataclass(frozen=True)
class Exposed:
    """A path under the data dir that someone other than its owner may use."""

    path: Path
    mode: int  # the permission bits
    is_dir: bool

    @property
    def others_write(self) -> bool:
        return bool(self.mode & stat.S_IWOTH)

    def __str__(self) -> str:
        return f"{self.path} ({self.mode:04o})"


def exposed(data_dir: Path) -> list[Exposed]:
    """The data dir and what is under it with any group or other bit set; symbolic links
    are not followed, and a hard link (a model imported by linking the user's file) is
    left out: its mode is the original file's, which a chmod here would change too."""
    found: list[Exposed] = []
    seen = 0
    for root, dirs, files in os.walk(data_dir, followlinks=False):
        for name in [".", *dirs, *files]:
            path = Path(root) if name == "." else Path(root) / name
            seen += 1
            if seen > MAX_ENTRIES:
                return found
            try:
                info = path.lstat()
            except OSError:
                continue  # gone meanwhile
            if stat.S_ISLNK(info.st_mode):
                continue
            if not stat.S_ISDIR(info.st_mode) and info.st_nlink > 1:
                continue
            mode = stat.S_IMODE(info.st_mode)
            if mode & PRIVATE_UMASK:
                found.append(Exposed(path, mode, stat.S_ISDIR(info.st_mode)))
    return found


def describe(data_dir: Path, found: list[Exposed]) -> str:
    """One message: what is exposed, to whom, and the command that fixes it."""
    fix = f"chmod -R go-rwx {shlex.quote(str(data_dir))}"
    top = [e for e in found if e.path == data_dir]
    rest = [e for e in found if e.path != data_dir]
    parts = []
    if top:
        parts.append(f"Ownlight's data dir {top[0]} is open to other local users "
                     "(it should be 0700)")
    if rest:
        named = ", ".join(str(e.path.relative_to(data_dir)) + f" ({e.mode:04o})"
                          for e in rest[:MAX_NAMED])
        more = f" and {len(rest) - MAX_NAMED} more" if len(rest) > MAX_NAMED else ""
        parts.append(f"{len(rest)} path(s) in {data_dir} are open to other local users "
                     f"(they should be 0600, directories 0700): {named}{more}")
    return "; ".join(parts) + f". It holds key hashes, conversations, the audit ledger and " \
                              f"ingested documents. Fix: {fix}"


_reported: set[Path] = set()  # data dirs already warned about by this process


def secure_data_dir(data_dir: Path, *, strict: bool = False,
                    warn: Callable[[str], None]) -> None:
    """Private umask, then the start-up check of ``data_dir`` (see the module's text).

    Raises ``ConfigError`` (start-up refused) when others may write there, or on any
    finding when ``strict``; otherwise ``warn`` gets one message, once per process and
    directory. A data dir that does not exist yet is fine: it will be made private.
    """
    private_umask()
    data_dir = data_dir.expanduser()
    if not data_dir.is_dir():
        return
    found = exposed(data_dir)
    if not found:
        return
    message = describe(data_dir, found)
    if strict or any(e.others_write for e in found):
        why = ("server.strict_permissions is set" if strict and not any(
            e.others_write for e in found) else "other users may write there")
        raise ConfigError(f"Refusing to start: {why}. {message}")
    if data_dir not in _reported:
        _reported.add(data_dir)
        warn(message)
