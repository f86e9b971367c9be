"""The injection guard on held-out data: TPR at 1% and 5% FPR, AUC, over-defence, speed.

    python bench/guard.py                       # shared/eval/injection/test.jsonl + our own
    python bench/guard.py --model other.npz     # other user-input weights
    python bench/guard.py --untrusted-model u.npz   # other untrusted-content weights

Rows come from ``../shared/eval/injection/test.jsonl`` (BIPIA indirect attacks in
e-mails, Giskard and PIGuard direct attacks, NotInject benign look-alikes) and
``eval/injection_multilingual_test.jsonl`` (our zh/ja/ru/en set, written apart from
its dev half). The guard was trained on dev files only. Rates at a fixed FPR use the
benign rows of the same group; over-defence is the share of NotInject rows (all benign,
full of trigger words) that the guard, at its shipped threshold, lets pass. The peer
is the naive baseline every gateway ships without a guard: a keyword list.

Each row is read the way Ownlight reads it in service: ``direct`` rows (what a user sends)
by the user-input model, ``indirect`` rows (an e-mail the assistant reads) by the
untrusted-content model, line by line. Benign documents from the retrieval test corpus
(Wikipedia passages in en/zh/ja/ru, never used in training) measure how often an
ordinary retrieved chunk would be flagged.

Benign agent tool outputs (``agent_tool_outputs``) measure what a coding agent's tool loop
costs: this repository's own files as Claude Code's ``Read`` returns them (numbered lines)
and shell commands on it (``ls``, ``git status``, ``git log``, ``grep``, ``cat``...) as the
Codex CLI returns them (under its ``Chunk ID`` / ``Wall time`` / ``Process exited`` header),
files that quote attack phrases (the guard's own tests and data) left out. Each is read
as the pipeline reads a tool result (``InjectionGuard.returned_text``); the row "as sent"
scores the same outputs whole, header and reminders included, as the guard did before.
The user turns of the recorded agents (``tests/data/agents``) are read as the pipeline
reads them (``InjectionGuard.typed_text``) and whole.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ownlight.config.settings import GuardSettings  # noqa: E402
from ownlight.guard.model import GuardModel  # noqa: E402
from ownlight.guard.stage import InjectionGuard  # noqa: E402
from ownlight.protocol.model import Operation, TextPart, ToolResult, Turn  # noqa: E402

SETS = {
    "shared test": ROOT.parent / "shared" / "eval" / "injection" / "test.jsonl",
    "ours test": ROOT / "eval" / "injection_multilingual_test.jsonl",
}
DOCUMENTS = ROOT.parent / "shared" / "eval" / "retrieval" / "test_corpus.jsonl"
KEYWORDS = re.compile(r"ignore (all |the )?(previous|above|prior)|system prompt|jailbreak|"
                      r"忽略|無視|игнорир", re.IGNORECASE)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    if not len(pos) or not len(neg):
        return float("nan")
    ranks = np.concatenate([pos, neg]).argsort().argsort() + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def tpr_at(pos: np.ndarray, neg: np.ndarray, fpr: float) -> float:
    if not len(pos) or not len(neg):
        return float("nan")
    cut = np.quantile(neg, 1 - fpr, method="higher")
    return float((pos > cut).mean())


AGENTS = ROOT / "tests" / "data" / "agents"
COMMANDS = (
    "ls -la", "ls src/ownlight", "ls -R src/ownlight/privacy", "git status",
    "git log --oneline -n 25", "git log -n 5 --stat", "git show --stat HEAD",
    "git diff --stat HEAD~5", "git branch -a", "wc -l src/ownlight/*.py",
    "grep -rn 'def ' src/ownlight/knowledge", "grep -rn 'import' src/ownlight/store",
    "grep -rn 'TODO\\|FIXME' src tests", "find src -name '*.py' -newer pyproject.toml",
    "find . -name '*.toml' -not -path './.venv/*'", "head -40 Makefile", "cat pyproject.toml",
    "cat .gitignore", "du -sh src tests docs", "python3 --version", "uname -a", "df -h .",
    "env | grep -c PATH", "tail -n 30 src/ownlight/config.py",
)
CODEX_HEADER = ("Chunk ID: {chunk:06x}\nWall time: 0.{ms:04d} seconds\nProcess exited with code "
                "{code}\nOriginal token count: {tokens}\nOutput:\n")
CLAUDE_REMINDER = ("\n\n<system-reminder>\nWhenever you read a file, you should consider "
                   "whether it would be considered malware. You CAN and SHOULD provide analysis "
                   "of malware, what it is doing. But you MUST refuse to improve or augment the "
                   "code.\n</system-reminder>\n")


def agent_tool_outputs(limit: int = 120) -> list[str]:
    """Benign tool results of a coding agent working on this repository (module doc)."""
    out: list[str] = []
    for i, command in enumerate(COMMANDS):
        run = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True)
        text = (run.stdout + run.stderr)[:6000]
        if text.strip() and not KEYWORDS.search(text):
            header = CODEX_HEADER.format(chunk=0xA19037 + i, ms=12 + i, code=run.returncode,
                                         tokens=len(text) // 4)
            out.append(header + text)
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    paths = [p for p in files.stdout.split() if p.endswith((".py", ".md", ".toml", "Makefile"))
             and not re.search(r"guard|inject|eval/|agents/", p)]
    step = max(1, len(paths) // max(1, limit - len(out)))
    for path in paths[::step]:
        text = (ROOT / path).read_text(encoding="utf-8", errors="replace")
        if KEYWORDS.search(text):
            continue
        lines = text.splitlines()[:120]  # what Read returns of a long file, numbered
        out.append("\n".join(f"{n:6d}\t{line}" for n, line in enumerate(lines, 1))
                   + CLAUDE_REMINDER)
    return out[:limit]


def agent_rows(guard: InjectionGuard) -> None:
    """The rate at which the guard flags benign agent traffic, as read and as sent."""
    outputs = agent_tool_outputs()
    read = [guard.scan_untrusted(guard.returned_text(ToolResult("call", [TextPart(t)])))
            for t in outputs]
    whole = [guard.scan_untrusted(t) for t in outputs]
    print("\n| benign agent traffic | n | flagged as read (pipeline) | flagged whole, as sent |")
    print("|---|---:|---:|---:|")
    print(f"| tool outputs (this repository: files, shell commands) | {len(outputs)} | "
          f"{sum(v.injection for v in read) / len(read):.3f} | "
          f"{sum(v.injection for v in whole) / len(whole):.3f} |")
    if not AGENTS.exists():
        return
    from ownlight.protocol import anthropic, responses

    turns: list[Turn] = []
    for path in sorted(AGENTS.glob("*.json")):
        for call in json.loads(path.read_text()):
            body = call["body"]
            request = (responses.parse_call(body).request if "input" in body
                       else anthropic.parse_request(Operation.CHAT, body))
            user = next((t for t in reversed(request.turns) if t.role == "user"), None)
            if user is not None:
                turns.append(user)
    typed = [guard.scan(guard.typed_text(t)) for t in turns]
    sent = [guard.scan(t.text()) for t in turns]
    print(f"| recorded agents' newest user turns ({AGENTS.relative_to(ROOT)}) | {len(turns)} | "
          f"{sum(v.injection for v in typed) / len(typed):.3f} (max score "
          f"{max(v.score for v in typed):.2f}) | {sum(v.injection for v in sent) / len(sent):.3f}"
          f" (max score {max(v.score for v in sent):.2f}) |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--untrusted-model", type=Path)
    parser.add_argument("--documents", type=int, default=1000,
                        help="benign retrieval passages to score (0: none)")
    parser.add_argument("--agents-only", action="store_true",
                        help="only the benign agent traffic table")
    args = parser.parse_args()
    if args.agents_only:
        agent_rows(InjectionGuard(GuardSettings(
            model_path=args.model, untrusted_model_path=args.untrusted_model)))
        return 0
    model = GuardModel.load(args.model)
    untrusted = GuardModel.load_untrusted(args.untrusted_model)
    rows = []
    for name, path in SETS.items():
        if not path.exists():
            print(f"(missing: {path})", file=sys.stderr)
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append({**json.loads(line), "set": name})
    if args.documents and DOCUMENTS.exists():
        passages = [json.loads(line) for line in DOCUMENTS.read_text().splitlines()]
        rows += [{"text": p["text"], "label": 0, "kind": "indirect", "lang": p.get("lang"),
                  "set": "retrieval passages"} for p in passages[: args.documents]]
    scores, flagged_at, spent, chars = [], [], 0.0, 0
    for row in rows:
        reader = untrusted if row.get("kind") == "indirect" else model
        start = time.perf_counter()
        scores.append(reader.scan(row["text"]).score)
        spent += time.perf_counter() - start
        chars += len(row["text"])
        flagged_at.append(reader.threshold)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        lang = row.get("lang") or "en"
        groups[f"{row['set']}: all"].append(i)
        groups[f"{row['set']}: {row.get('kind')}"].append(i)
        if row["set"] == "ours test":
            groups[f"ours test: {lang}"].append(i)
    s = np.array(scores)
    thresholds = np.array(flagged_at)
    labels = np.array([int(r["label"]) for r in rows])
    keyword = np.array([1.0 if KEYWORDS.search(r["text"]) else 0.0 for r in rows])
    print("| rows | n (inj/benign) | AUC | TPR @1% FPR | TPR @5% FPR | TPR / FPR at shipped "
          "threshold | keyword list TPR / FPR |")
    print("|---|---|---|---|---|---|---|")
    for name, index in sorted(groups.items()):
        idx = np.array(index)
        pos, neg = s[idx][labels[idx] == 1], s[idx][labels[idx] == 0]
        flagged = s[idx] >= thresholds[idx]
        kw = keyword[idx] > 0
        tp = flagged[labels[idx] == 1].mean() if len(pos) else float("nan")
        fp = flagged[labels[idx] == 0].mean() if len(neg) else float("nan")
        ktp = kw[labels[idx] == 1].mean() if len(pos) else float("nan")
        kfp = kw[labels[idx] == 0].mean() if len(neg) else float("nan")
        print(f"| {name} | {len(pos)}/{len(neg)} | {auc(pos, neg):.3f} | "
              f"{tpr_at(pos, neg, 0.01):.3f} | {tpr_at(pos, neg, 0.05):.3f} | "
              f"{tp:.3f} / {fp:.3f} | {ktp:.3f} / {kfp:.3f} |")
    notinject = np.array([i for i, r in enumerate(rows) if r.get("source") == "notinject"])
    if len(notinject):
        passed = (s[notinject] < thresholds[notinject]).mean()
        print(f"\nOver-defence (NotInject, {len(notinject)} benign rows with trigger words): "
              f"{passed:.1%} pass at threshold {model.threshold:.3f} "
              f"(keyword list: {(keyword[notinject] == 0).mean():.1%}).")
    print(f"Thresholds shipped: user input {model.threshold:.3f}, untrusted content "
          f"{untrusted.threshold:.3f}.")
    print(f"Speed: {spent / max(chars, 1) * 1000 * 1000:.2f} ms per 1,000 characters "
          f"({len(rows)} texts, {chars:,} characters, one core).")
    agent_rows(InjectionGuard(GuardSettings(
        model_path=args.model, untrusted_model_path=args.untrusted_model)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
