"""Ownlight's own files, as a coding agent reads them through Ownlight, are not injections.

A coding agent working on this repository reads its modules and docs, whose words
(prompts, answers, models, "what the console shows") sit close to an injection's: before
the untrusted-content model learned the dev side of these files
(``bench/make_own_sources.py``), it flagged about one in twelve of the test side. This test
reads the test side as the working tree holds it (so a file added tomorrow is read too),
numbered as Claude Code's ``Read`` returns them, the way the pipeline reads a tool result,
and names what is flagged.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from ownlight.guard.stage import InjectionGuard
from ownlight.protocol.model import TextPart, ToolResult

ROOT = Path(__file__).resolve().parents[1]
# loaded from its file: bench/ on sys.path would put its mcp.py before the mcp package for
# this process and for every server the suite starts (they inherit sys.path)
_SPEC = importlib.util.spec_from_file_location("make_own_sources",
                                               ROOT / "bench" / "make_own_sources.py")
assert _SPEC is not None and _SPEC.loader is not None
own_sources = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(own_sources)

# The test-side files flagged at the shipped thresholds (docs/performance.md, "Agents'
# benign traffic"): the overhead benchmark, whose request body gives the model a persona
# ("You are the support assistant of an online shop", as an injection would). The
# configuration reference, which quotes a prompt to the model ("What is the capital of
# France?"), was flagged too until the model learned the writers' set. The assertion fails
# if the benchmark is fixed, or if another file joins it. Since the second look read every
# writer's dev set, the developers' guide joins it: e5 reads its block of `make` commands,
# each with what it does, as orders (docs/performance.md, "the second look reads every
# writer"). The configuration reference is flagged again since the model learned the mail
# writers' set ("e-mails and chats about AI tools"): 3 of the 120 reads, over the 2% goal.
# With a hidden layer under the second look's head, e5 reads the developers' guide as a
# guide again (docs/performance.md, "a second look that can tell the reader from the
# presenter"). Since the model read the lexicon's Russian extension, the configuration
# reference passes again ("the untrusted-content model reads the Russian extension").
KNOWN_FLAGGED = ["bench/overhead.py"]


def files_on_the_test_side() -> dict[str, str]:
    """The test side of the split by path, as ``Read`` returns each file."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    files = {}
    for path in listed:
        if own_sources.split(path) != "test" or not (ROOT / path).is_file():
            continue
        text = (ROOT / path).read_text(encoding="utf-8", errors="replace")
        if text.strip() and own_sources.eligible(path, text):
            files[path] = own_sources.as_read(text)
    return files


@pytest.mark.slow
def test_ownlights_own_files_read_as_tool_results_pass() -> None:
    files = files_on_the_test_side()
    assert len(files) > 80  # the split still holds a third of the repository (108 today)
    guard = InjectionGuard()
    flagged = [path for path, text in files.items() if guard.scan_untrusted(
        guard.returned_text(ToolResult("call", [TextPart(text)]))).injection]
    assert flagged == KNOWN_FLAGGED, flagged


def test_the_dev_file_holds_no_test_side_path() -> None:
    """The split is by path: no file the model learned from is one this test reads."""
    import json

    rows = [json.loads(line) for line in
            (ROOT / "eval" / "benign_own_sources_dev.jsonl").read_text().splitlines()]
    assert rows and all(own_sources.split(r["path"]) == "dev" for r in rows)
