"""The guard's speed against the code it replaced, in one run on one machine.

    python bench/guard_speed.py                  # this tree against HEAD
    python bench/guard_speed.py --previous REV   # against another revision

``bench/guard.py`` scores the previous *weights* with this tree's code; speed is the
code's, so here the previous revision's whole package (code and weights, ``git archive``)
runs in its own process beside this tree's, turn about, on the same texts, a round each
in turn, and each side's median round is compared. Two readings, as the gateway does them:

- **user input** (``InjectionGuard.scan``: the user-input model, disguises undone): every
  row ``bench/guard.py --direct-only`` reads that is not a document, from the same sets;
  budget 10 ms per 1,000 characters;
- **tool results** (``InjectionGuard.scan_untrusted``: the untrusted-content model and e5's
  second look where it is consulted): the real tool outputs' test half
  (``eval/benign_tool_outputs_test.jsonl``) and the injected documents of the writers' test
  half; budget 30 ms per 1,000 characters.

Every text is read once before timing (the lexicon, e5 and the compiled patterns load on
first use), and read past the gateway's cache of texts it has read before
(``textcache``), which would otherwise answer every round after the first. Threads as in
service: the guard's small products on one BLAS thread, e5 on onnxruntime's default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from guard import SETS  # noqa: E402  (the sets bench/guard.py reads)

TOOL_SETS = (ROOT / "eval" / "benign_tool_outputs_test.jsonl",
             ROOT / "eval" / "injection_writers_test.jsonl")

# Run inside each tree: time ``rounds`` passes over the texts, print ms per 1,000 characters.
WORKER = """
import json, sys, time
from ownlight.guard.stage import InjectionGuard, also_unmasked
texts, reading = json.load(open(sys.argv[1])), sys.argv[2]
guard = InjectionGuard()
# what guard.scan and guard.scan_untrusted do, without their cache of texts already read
if reading == "input":
    read = lambda text: also_unmasked(text, lambda t: guard.model.scan(t, guard.threshold))
else:
    read = lambda text: also_unmasked(text, guard._read_untrusted)
for text in texts:
    read(text)
size = sum(map(len, texts))
for line in sys.stdin:
    start = time.perf_counter()
    for text in texts:
        read(text)
    print(json.dumps((time.perf_counter() - start) / size * 1e6), flush=True)
"""


def user_input_texts() -> list[str]:
    texts = []
    for path in SETS.values():
        if path.exists():
            texts += [row["text"] for line in path.read_text().splitlines() if line.strip()
                      and (row := json.loads(line)).get("kind") != "indirect"]
    return texts


def tool_result_texts() -> list[str]:
    texts = []
    for path in TOOL_SETS:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        texts += [r["text"] for r in rows if r.get("kind") in ("indirect", "tool_output")]
    return texts


def previous_tree(rev: str, into: Path) -> Path:
    """The revision's ``src`` (code and packaged weights), unpacked under ``into``."""
    blob = subprocess.run(["git", "archive", "--format=tar", rev, "src"], cwd=ROOT,
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as archive:
        archive.extractall(into, filter="data")
    return into / "src"


def race(texts: list[str], reading: str, trees: dict[str, Path], rounds: int,
         work: Path) -> dict[str, list[float]]:
    """Each tree's worker reads the texts, a round at a time, turn about."""
    path = work / f"{reading}.json"
    path.write_text(json.dumps(texts))
    workers = {name: subprocess.Popen(
        [sys.executable, "-c", WORKER, str(path), reading], text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=work,
        env={**os.environ, "PYTHONPATH": str(src)}) for name, src in trees.items()}
    spent: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(rounds):
        for name, worker in workers.items():
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
            spent[name].append(float(worker.stdout.readline()))
    for worker in workers.values():
        worker.communicate()
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--previous", metavar="REV", default="HEAD")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("input", "untrusted"))
    args = parser.parse_args()
    label = subprocess.run(["git", "rev-parse", "--short", args.previous], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    readings = {"input": (user_input_texts, 10.0), "untrusted": (tool_result_texts, 30.0)}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": ROOT / "src", label: previous_tree(args.previous, Path(tmp))}
        print(f"ms per 1,000 characters, median of {args.rounds} rounds (all rounds in "
              "brackets); this machine, nothing else running.\n")
        print(f"| reading | texts | this tree | {label} | ratio ({label} / this tree) | "
              "budget |\n|---|---|---|---|---|---|")
        for reading, (texts_of, budget) in readings.items():
            if args.only and reading != args.only:
                continue
            texts = texts_of()
            spent = race(texts, reading, trees, args.rounds, Path(tmp))
            mine, theirs = (statistics.median(spent[n]) for n in trees)
            rounds = {n: ", ".join(f"{s:.1f}" for s in spent[n]) for n in trees}
            print(f"| {reading} | {len(texts)} | {mine:.2f} ({rounds['this tree']}) | "
                  f"{theirs:.2f} ({rounds[label]}) | {theirs / mine:.2f} | {budget:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
