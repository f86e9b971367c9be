"""Build eval/benign_tool_outputs_{dev,test}.jsonl: what a coding agent ordinarily reads.

Real files nobody wrote for the purpose, cut the way agents' tools return them: installed
packages' sources and docs (``.venv``'s site-packages, npm's own files), the Python
standard library, Debian's ``/usr/share/doc``, package metadata and configuration (JSON,
YAML, TOML), this repository's history (``git log``, ``git show``) and ``ls -la`` of real
directories. A file becomes one tool output (its first 80 lines, numbered as Claude Code's
``Read`` numbers them for every other file, raw as ``cat`` prints them otherwise, at most
4,000 characters).

The split is by source — a package, a stdlib module's top-level name, a Debian package, a
command — hashed (crc32 of the source name): no source has files on both sides. Sources can
still share files (Debian's binary packages built from one source package ship the same
changelog and copyright; two wheels vendor one module): a test row whose content opens as a
dev row's does is dropped (``without_shared``; 87 of 560 were, found by
``tests/test_eval_halves.py``). Sampling is
deterministic (sorted paths, a fixed seed), capped per source so no package dominates. Rows:
``{"text", "label": 0, "kind": "tool_output", "genre", "source", "path"}``.

Run: python bench/make_benign_tool_outputs.py  (about 10 s; reads only local files).
``--drop-shared`` only drops the shared rows from the test half already in ``eval/``.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
import sys
import zlib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
    / "site-packages"
STDLIB = Path("/usr/lib/python3.11")
DEBIAN_DOC = Path("/usr/share/doc")
NPM = Path("/usr/lib/node_modules")
PER_SOURCE = 3
MAX_CHARS = 3000
DEBIAN_PACKAGES = 240  # of ~700, so Debian's copyright files do not dominate
LINES = 80
GENRES = {".conf": "config", ".py": "code",
          ".js": "code", ".mjs": "code", ".ts": "code", ".c": "code",
          ".h": "code", ".pyi": "code", ".sh": "code", ".md": "docs", ".rst": "docs",
          ".txt": "docs", "": "docs", ".json": "config", ".yaml": "config", ".yml": "config",
          ".toml": "config", ".cfg": "config", ".ini": "config", ".gz": "docs"}


def _split(source: str) -> str:
    return "test" if zlib.crc32(source.encode()) % 3 == 0 else "dev"


def _read(path: Path) -> str | None:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None
    return text if text.strip() and "\x00" not in text else None


def _as_tool_output(text: str, numbered: bool) -> str:
    lines = text.splitlines()[:LINES]
    if numbered:
        lines = [f"{n:6d}\t{line}" for n, line in enumerate(lines, 1)]
    return "\n".join(lines)[:MAX_CHARS]


def _files() -> dict[str, list[Path]]:
    """Candidate files per source."""
    by_source: dict[str, list[Path]] = defaultdict(list)
    for top in sorted(SITE.iterdir()):
        if top.name.endswith((".dist-info", ".pth")) or top.name.startswith(("_", "__")) \
                or top.name == "ownlight" or not top.is_dir():
            continue
        for path in sorted(top.rglob("*")):
            if path.suffix in GENRES and path.suffix not in ("", ".gz") and path.is_file():
                by_source[f"pypi:{top.name}"].append(path)
    for dist in sorted(SITE.glob("*.dist-info")):
        meta = dist / "METADATA"
        if meta.exists():
            by_source[f"pypi:{dist.name.split('-')[0].lower()}"].append(meta)
    for path in sorted(STDLIB.glob("*.py")) + sorted(STDLIB.glob("*/*.py")):
        if "test" not in path.parts and "site-packages" not in path.parts:
            by_source[f"stdlib:{path.relative_to(STDLIB).parts[0].removesuffix('.py')}"] \
                .append(path)
    packages = sorted(DEBIAN_DOC.iterdir())
    for package in random.Random(5).sample(packages, min(DEBIAN_PACKAGES, len(packages))):
        for path in sorted(package.rglob("*")):
            if path.is_file() and (path.suffix in ("", ".gz", ".md", ".txt")):
                by_source[f"debian:{package.name}"].append(path)
    for path in sorted(Path("/etc").rglob("*")):
        try:
            if path.is_file() and path.suffix in (".conf", ".json", ".yaml", ".yml", ".cfg",
                                                  ".ini", ".toml"):
                by_source[f"etc:{path.relative_to('/etc').parts[0]}"].append(path)
        except OSError:
            continue
    for path in sorted(SITE.rglob("*")):
        if path.suffix in (".json", ".yaml", ".yml", ".toml") and path.is_file():
            by_source[f"pypi-config:{path.relative_to(SITE).parts[0]}"].append(path)
    if NPM.exists():
        for package in sorted(NPM.iterdir()):
            for path in sorted(package.rglob("*")):
                if path.suffix in (".js", ".md", ".json") and path.is_file():
                    by_source[f"npm:{package.name}:{path.relative_to(package).parts[0]}"] \
                        .append(path)
    return by_source


def _commands() -> list[tuple[str, str, str]]:
    """(source, genre, output) of commands on this repository and real directories."""
    out = []
    revs = subprocess.run(["git", "rev-list", "--max-count=40", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.split()
    for rev in revs[::2]:
        show = subprocess.run(["git", "show", "--stat", "-p", "--format=fuller", rev],
                              cwd=ROOT, capture_output=True, text=True).stdout
        out.append((f"git:show:{rev[:8]}", "git", show[:MAX_CHARS]))
    for n, skip in enumerate(range(0, 200, 25)):
        log = subprocess.run(["git", "log", f"--skip={skip}", "-n", "12"], cwd=ROOT,
                             capture_output=True, text=True).stdout
        out.append((f"git:log:{n}", "git", log[:MAX_CHARS]))
    for directory in ("/usr/bin", "/usr/lib", "/etc", "/usr/share/doc", "/var/lib/dpkg",
                      "/usr/lib/python3.11", "/usr/include", str(SITE), "/usr/share",
                      "/usr/lib/python3.11/email", "/usr/lib/python3.11/asyncio", "/etc/apt"):
        ls = subprocess.run(["ls", "-la", directory], capture_output=True, text=True).stdout
        out.append((f"ls:{directory}", "ls", ls[:MAX_CHARS]))
    for command in ("dpkg -l", "pip list", "pip freeze", "env -i PATH=/usr/bin python3 -V -V",
                    "df -h", "uname -a", "ps -o pid,comm", "cat /etc/os-release",
                    "pip show numpy scipy", "python3 -m pydoc -k json"):
        run = subprocess.run(command, shell=True, capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
        out.append((f"cmd:{command.split()[0]}:{command}", "command",
                    (run.stdout + run.stderr)[:MAX_CHARS]))
    return [o for o in out if o[2].strip()]


def _content(text: str) -> str:
    """A tool output's first 400 characters of file, whatever its numbering and spacing."""
    return re.sub(r"\s+", " ", re.sub(r"(?m)^ *\d+\t", "", text)).strip()[:400]


def without_shared(dev: list[dict[str, object]],
                   test: list[dict[str, object]]) -> list[dict[str, object]]:
    """The test rows whose content no dev row opens with."""
    seen = {_content(str(row["text"])) for row in dev}
    return [row for row in test if _content(str(row["text"])) not in seen]


def _write(split: str, items: list[dict[str, object]]) -> None:
    path = ROOT / "eval" / f"benign_tool_outputs_{split}.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for row in items:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    genres: dict[str, int] = defaultdict(int)
    for row in items:
        genres[str(row["genre"])] += 1
    print(path.name, len(items), dict(genres), len({r["source"] for r in items}), "sources")


def drop_shared() -> None:
    halves = {split: [json.loads(line) for line in (
        ROOT / "eval" / f"benign_tool_outputs_{split}.jsonl").read_text().splitlines()]
        for split in ("dev", "test")}
    _write("test", without_shared(halves["dev"], halves["test"]))


def main() -> None:
    if "--drop-shared" in sys.argv[1:]:
        drop_shared()
        return
    rng = random.Random(26)
    rows: dict[str, list[dict[str, object]]] = {"dev": [], "test": []}
    for source, paths in sorted(_files().items()):
        picked = rng.sample(paths, min(PER_SOURCE, len(paths)))
        for path in sorted(picked):
            text = _read(path)
            if text is None:
                continue
            genre = "docs" if path.name == "METADATA" else GENRES.get(path.suffix, "docs")
            if source.startswith("etc:"):
                genre = "config"
            rows[_split(source)].append({
                "text": _as_tool_output(text, numbered=rng.random() < 0.5), "label": 0,
                "kind": "tool_output", "genre": genre, "source": source, "path": str(path)})
    for source, genre, text in _commands():
        rows[_split(source)].append({"text": text, "label": 0, "kind": "tool_output",
                                     "genre": genre, "source": source, "path": ""})
    rows["test"] = without_shared(rows["dev"], rows["test"])
    for split, items in rows.items():
        _write(split, items)


if __name__ == "__main__":
    main()
