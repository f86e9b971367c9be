"""Build eval/benign_own_sources_dev.jsonl: Ownlight's own files as a coding agent reads them.

A coding agent working on this repository reads its modules, docs and configuration, whose
words (prompts, answers, models, "what the console shows") sit close to an injection's; the
benign tool outputs of ``make_benign_tool_outputs.py`` leave Ownlight out. This file holds
the dev side, split by path (crc32 of the path: a third of the paths are test, never
written here): each dev file at a pinned revision, its first 120 lines numbered as Claude
Code's ``Read`` returns them. ``bench/guard.py`` reads only the test-side paths, from the
working tree, as its benign agent traffic. Files about the guard itself, the eval sets and
the recorded agents, and any file with an injection's keywords, are left out on both sides.

Run: python bench/make_own_sources.py  (a second; reads only this repository's history).
"""

from __future__ import annotations

import json
import re
import subprocess
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REVISION = "8b26d1d"  # pinned, so the dev file does not move with the code
LINES = 120
SUFFIXES = (".py", ".md", ".toml", "Makefile")
LEFT_OUT = re.compile(r"guard|inject|eval/|agents/")
KEYWORDS = re.compile(r"ignore (all |the )?(previous|above|prior)|system prompt|jailbreak|"
                      r"忽略|無視|игнорир", re.IGNORECASE)


def split(path: str) -> str:
    return "test" if zlib.crc32(path.encode()) % 3 == 0 else "dev"


def eligible(path: str, text: str) -> bool:
    return path.endswith(SUFFIXES) and not LEFT_OUT.search(path) and not KEYWORDS.search(text)


def as_read(text: str) -> str:
    """A file as Claude Code's ``Read`` returns it: numbered lines, the first ``LINES``."""
    return "\n".join(f"{n:6d}\t{line}" for n, line in enumerate(text.splitlines()[:LINES], 1))


def main() -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout

    rows = []
    for path in git("ls-tree", "-r", "--name-only", REVISION).split():
        if split(path) != "dev" or not path.endswith(SUFFIXES):
            continue
        text = git("show", f"{REVISION}:{path}")
        if text.strip() and eligible(path, text):
            genre = "docs" if path.endswith(".md") else "config" if path.endswith(".toml") \
                else "code"
            rows.append({"text": as_read(text), "label": 0, "kind": "tool_output",
                         "genre": genre, "source": f"ownlight:{path}", "path": path})
    out = ROOT / "eval" / "benign_own_sources_dev.jsonl"
    with out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(out.name, len(rows), "files at", REVISION)


if __name__ == "__main__":
    main()
