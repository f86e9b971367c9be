"""The model registry: imported GGUF versions, and which version each name serves.

A name such as ``assistant`` has numbered versions (``assistant@1``, ``assistant@2``),
each a file inside the data dir with the sha256 and size recorded at import. Which
version a name serves is the replay of an append-only history of switches: ``promote``
pushes a version, ``rollback`` pops back to the one before, so history is never lost
and a rollback always returns to what served before. Every switch also bumps one
counter (``model_generation``): a running server reads that single row on requests
for registry models and reloads the table only when it has changed.

The registry lives in the state database, so the CLI (another process) and the server
see the same table; a transaction makes each switch atomic. With ``[store] url`` that
database is the shared PostgreSQL one: a version imported or promoted on any machine is
known to every instance. The metadata is shared, the weights are not: each instance looks
for a version's file under its own data dir, by name, version and sha256
(``models/registry/NAME/VERSION-SHA12.gguf``), so an operator either imports the same
file on every machine (the import finds the version and only places the file) or mounts
one shared ``models/registry`` directory on all of them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ownlight.config import Config
from ownlight.config.settings import ModelSettings
from ownlight.errors import ConfigError
from ownlight.models.describe import describe
from ownlight.models.files import Progress, file_sha256, read_sha256
from ownlight.models.licenses import normalise
from ownlight.store.base import RegistryDatabase
from ownlight.store.sqlite import StateStore

REGISTRY_PREFIX = "registry:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RegistryError(ConfigError):
    """An operator's request the registry refuses: unknown version, failed check, policy."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: Path
    sha256: str
    size: int
    license: str | None
    source: str
    facts: dict[str, Any]
    imported_at: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Switch:
    name: str
    action: str
    version: int
    previous: int | None
    at: str
    actor: str
    details: dict[str, Any]


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``assistant@3`` -> ("assistant", 3); ``assistant`` -> ("assistant", None)."""
    name, sep, version = ref.partition("@")
    if not _NAME.match(name):
        raise RegistryError(f"{name!r} is not a model name (letters, digits, . _ -)")
    if not sep:
        return name, None
    if not version.isdigit():
        raise RegistryError(f"{ref!r}: the version after @ must be a number")
    return name, int(version)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Registry:
    def __init__(self, store: RegistryDatabase, data_dir: Path, shared: bool = False,
                 on_close: Callable[[], None] | None = None):
        self.store = store
        self.root = data_dir / "models" / "registry"
        self.shared = shared  # the rows are in PostgreSQL, shared by every instance
        self._on_close = on_close

    def local_path(self, name: str, version: int, sha256: str) -> Path:
        """Where this machine keeps a version's file."""
        return self.root / name / f"{version}-{sha256[:12]}.gguf"

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()

    # -- import -------------------------------------------------------------------------

    def import_file(self, src: Path, name: str, license_id: str | None = None,
                    source: str | None = None, copy: bool = False,
                    progress: Progress | None = None) -> tuple[ModelVersion, bool]:
        """Bring a GGUF file in as the next version of ``name``.

        Hard-linked when the file is on the same filesystem (no second copy of the
        weights), copied otherwise or with ``copy``. Returns the version and whether it
        is new: a file identical to an existing version of the name is that version.
        """
        parse_ref(name)
        src = src.expanduser().resolve()
        if not src.is_file():
            raise RegistryError(f"{src} is not a file")
        facts = describe(src).as_dict()  # refuses a file that is not GGUF
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        incoming = folder / f"incoming-{secrets.token_hex(6)}.gguf"
        try:
            digest = self._bring(src, incoming, copy, progress)
            size = incoming.stat().st_size
            license_id = normalise(license_id) or normalise(facts.get("license"))
            with self.store.transaction() as db:
                # The generation row's lock, taken without a bump: imports from several
                # machines take turns, so two never pick the same next version number.
                db.execute("UPDATE model_generation SET value = value WHERE id = 1")
                row = db.execute("SELECT version FROM model_versions WHERE name = ? AND "
                                 "sha256 = ?", (name, digest)).fetchone()
                if row is not None:
                    known = self.get(name, int(row[0]), db)
                    if self.shared and not known.path.exists():
                        # Recorded by another machine: this one now holds the file too.
                        os.replace(incoming, known.path)
                    return known, False
                (version,) = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM "
                                        "model_versions WHERE name = ?", (name,)).fetchone()
                final = self.local_path(name, int(version), digest)
                os.replace(incoming, final)
                db.execute(
                    "INSERT INTO model_versions (name, version, path, sha256, size, license, "
                    "source, facts, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, version, str(final), digest, size, license_id,
                     source or str(src), json.dumps(facts), _now()))
        finally:
            incoming.unlink(missing_ok=True)
        return self.get(name, int(version)), True

    def _bring(self, src: Path, dst: Path, copy: bool, progress: Progress | None) -> str:
        if not copy:
            try:
                os.link(src, dst)
                return file_sha256(dst, progress)
            except OSError:
                pass  # another filesystem, or links not allowed: copy
        with dst.open("wb") as writer:
            digest = read_sha256([src], writer, progress)
        shutil.copystat(src, dst)
        os.chmod(dst, 0o600)  # Ownlight's copy is private, whatever the source's mode
        return digest

    # -- reading ------------------------------------------------------------------------

    def get(self, name: str, version: int | None = None, db: Any = None) -> ModelVersion:
        """One version; without a number, the one the name serves now (or its newest)."""
        if version is None:
            version = self.current(name) or self._newest(name)
            if version is None:
                raise RegistryError(f"no model named {name!r} was imported "
                                    "(ownlight models import PATH --name NAME)")
        sql = ("SELECT name, version, path, sha256, size, license, source, facts, imported_at "
               "FROM model_versions WHERE name = ? AND version = ?")
        rows = (db.execute(sql, (name, version)).fetchall() if db is not None
                else self.store.query(sql, (name, version)))
        if not rows:
            raise RegistryError(f"{name}@{version} does not exist "
                                f"(known: {self._known(name) or 'none'})")
        return self._version(rows[0])

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        sql = ("SELECT name, version, path, sha256, size, license, source, facts, imported_at "
               "FROM model_versions")
        rows = (self.store.query(sql + " WHERE name = ? ORDER BY version", (name,)) if name
                else self.store.query(sql + " ORDER BY name, version"))
        return [self._version(r) for r in rows]

    def _version(self, row: tuple[Any, ...]) -> ModelVersion:
        version = _version(row)
        if self.shared:  # the importing machine's path means nothing here
            version = replace(version, path=self.local_path(version.name, version.version,
                                                            version.sha256))
        return version

    def _newest(self, name: str) -> int | None:
        rows = self.store.query("SELECT MAX(version) FROM model_versions WHERE name = ?",
                                (name,))
        return int(str(rows[0][0])) if rows and rows[0][0] is not None else None

    def _known(self, name: str) -> str:
        return ", ".join(v.ref for v in self.versions(name))

    def history(self, name: str | None = None) -> list[Switch]:
        sql = "SELECT name, action, version, previous, at, actor, details FROM model_switches"
        rows = (self.store.query(sql + " WHERE name = ? ORDER BY id", (name,)) if name
                else self.store.query(sql + " ORDER BY id"))
        return [Switch(str(r[0]), str(r[1]), int(str(r[2])),
                       None if r[3] is None else int(str(r[3])), str(r[4]), str(r[5]),
                       json.loads(str(r[6]))) for r in rows]

    def stack(self, name: str) -> list[int]:
        """The versions a name has served, oldest first; the last serves now."""
        return _replay(self.history(name))

    def current(self, name: str) -> int | None:
        stack = self.stack(name)
        return stack[-1] if stack else None

    def served(self) -> dict[str, int]:
        """What every name serves now (one query: the server calls it on a switch)."""
        by_name: dict[str, list[Switch]] = {}
        for switch in self.history():
            by_name.setdefault(switch.name, []).append(switch)
        return {name: stack[-1] for name, rows in by_name.items() if (stack := _replay(rows))}

    def generation(self) -> int:
        rows = self.store.query("SELECT value FROM model_generation WHERE id = 1")
        return int(str(rows[0][0]))

    # -- switching ----------------------------------------------------------------------

    def switch(self, name: str, action: str, version: int, actor: str,
               details: dict[str, Any] | None = None, expect: int | None = None) -> Switch:
        """Record a promote or rollback and bump the generation, in one transaction.

        ``expect`` is the version the caller saw serving: if another operator switched
        in between, the switch is refused rather than silently undoing theirs.
        """
        with self.store.transaction() as db:
            # The counter first: its row lock makes concurrent switches (from any machine)
            # take turns, so ``expect`` is checked against the latest switch.
            db.execute("UPDATE model_generation SET value = value + 1 WHERE id = 1")
            rows = db.execute("SELECT name, action, version, previous, at, actor, details "
                              "FROM model_switches WHERE name = ? ORDER BY id", (name,))
            stack = _replay([Switch(r[0], r[1], r[2], r[3], r[4], r[5], {}) for r in rows])
            previous = stack[-1] if stack else None
            if previous != expect:
                raise RegistryError(f"{name} changed meanwhile (now @{previous}); try again")
            switch = Switch(name, action, version, previous, _now(), actor, details or {})
            db.execute("INSERT INTO model_switches (name, action, version, previous, at, "
                       "actor, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (name, action, version, previous, switch.at, actor,
                        json.dumps(switch.details)))
        return switch

    def verify(self, version: ModelVersion, progress: Progress | None = None) -> None:
        """Refuse a file that is missing, truncated or altered since it was imported."""
        problem = file_problem(version, progress)
        if problem:
            raise RegistryError(problem)


def file_problem(version: ModelVersion, progress: Progress | None = None) -> str | None:
    """What is wrong with a version's file, in words an operator can act on (None: fine)."""
    path = version.path
    try:
        size = path.stat().st_size
    except OSError:
        return f"{version.ref}: its file {path} is missing; import the model again"
    if size != version.size:
        return (f"{version.ref}: its file {path} is {size} bytes, but {version.size} were "
                "imported: the file is truncated or replaced; import the model again")
    found = file_sha256(path, progress)
    if found != version.sha256:
        return (f"{version.ref}: its file {path} fails its sha256 check (imported "
                f"{version.sha256[:16]}…, now {found[:16]}…): the file is corrupted; "
                "import the model again")
    # Unchanged since import, but imported before import checked the tensor table.
    from ownlight.models.gguf_header import read_header

    try:
        read_header(path)
    except ConfigError as exc:
        return f"{version.ref}: {exc}"
    return None


def _replay(switches: list[Switch]) -> list[int]:
    stack: list[int] = []
    for s in switches:
        if s.action == "rollback":
            if stack:
                stack.pop()
        elif not stack or stack[-1] != s.version:
            stack.append(s.version)
    return stack


def _version(row: tuple[Any, ...]) -> ModelVersion:
    return ModelVersion(str(row[0]), int(row[1]), Path(str(row[2])), str(row[3]), int(row[4]),
                        None if row[5] is None else str(row[5]), str(row[6]),
                        json.loads(str(row[7])), str(row[8]))


# -- the registry as the configuration sees it (shared by `ownlight models` and `ownlight eval`)


def open_registry(config: Config) -> Registry:
    """The registry of ``[store] url`` (shared by every instance), else of this machine's
    state file. ``close()`` it when done."""
    from ownlight.store.open import store_url  # the store's modules only when needed

    url = store_url(config)
    if url is None:
        return Registry(StateStore(config.data_dir / "state.db"), config.data_dir)
    from ownlight.store.postgres import PostgresDatabase
    from ownlight.store.registry_rows import PostgresRegistryRows

    db = PostgresDatabase(url, max_connections=2)
    return Registry(PostgresRegistryRows(db), config.data_dir, shared=True, on_close=db.close)


def alias_for(config: Config, name: str) -> str | None:
    """The configured alias that serves registry name ``name``, if any."""
    return next((a for a, e in config.models.items() if e.path == REGISTRY_PREFIX + name), None)


def n_ctx_for(config: Config, name: str) -> int:
    """The context window registry name ``name`` is served with: its alias's, else the
    declared default of ``models.NAME.n_ctx``."""
    alias = alias_for(config, name)
    return config.models[alias].n_ctx if alias else DEFAULT_N_CTX


DEFAULT_N_CTX: int = ModelSettings.model_fields["n_ctx"].default
