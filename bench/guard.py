"""The injection guard on held-out data: TPR at 1% and 5% FPR, AUC, over-defence, speed.

    python bench/guard.py                       # shared/eval/injection/test.jsonl + our own
    python bench/guard.py --model other.npz     # other user-input weights
    python bench/guard.py --untrusted-model u.npz   # other untrusted-content weights
    python bench/guard.py --chunks-only --documents 300 --tool-outputs 120
        # only the knowledge chunks table (n-gram beside the e5 line score stored at
        # ingest) and direct attacks per language; a first run embeds some thousand lines
    python bench/guard.py --direct-only [--plain]   # user input alone (a minute); --plain
        # reads the texts as written, without undoing disguises (``guard.unmasking``)

Rows come from ``../shared/eval/injection/test.jsonl`` (BIPIA indirect attacks in
e-mails, Giskard and PIGuard direct attacks, NotInject benign look-alikes) and
``eval/injection_multilingual_test.jsonl`` (our zh/ja/ru/en set, written apart from
its dev half) and ``eval/injection_genres_test.jsonl`` (seven genres in en/zh/ja/ru,
written apart from ``injection_genres_dev.jsonl``) and ``eval/injection_addressee_test.jsonl``
(pairs in zh/ja/ru/en whose clean twin talks about assistants and prompts or gives people
an order, where the attack addresses the assistant; split by pair from its dev half) with
its direct counterpart ``eval/injection_addressee_direct_test.jsonl``, and
``eval/injection_writers_test.jsonl`` (thirty pairs per language by writers apart from every
dev writer, from a brief that names no kind of attack or look-alike) with its direct
counterpart ``eval/injection_writers_direct_test.jsonl``, and
``eval/injection_writers_genres_test.jsonl`` (four pairs per genre and language, seven genres,
by writers apart from those of ``injection_writers_genres_dev.jsonl``). The guard was trained
on dev files only.
Every figure is printed for this tree's weights and, beside it, for the weights shipped
before them (``--previous REV`` picks others), in the same run; both are read by this tree's
code (features, segmentation), so where that code changed too, the previous weights' figures
differ from those published for them. Rates at a fixed FPR use the
benign rows of the same group; over-defence is the share of NotInject rows (all benign,
full of trigger words) that the guard, at its shipped threshold, lets pass. The peer
is the naive baseline every gateway ships without a guard: a keyword list.

Each row is read the way Ownlight reads it in service: ``direct`` rows (what a user sends)
by the user-input model, ``indirect`` rows (an e-mail the assistant reads) by the
untrusted-content model, line by line. Benign documents from the retrieval test corpus
(Wikipedia passages in en/zh/ja/ru, never used in training) measure how often an
ordinary retrieved chunk would be flagged.

Benign tool outputs from real files nobody wrote for the purpose (installed packages'
sources and docs, Debian's ``/usr/share/doc``, configuration, ``git`` and ``ls`` output;
``eval/benign_tool_outputs_test.jsonl``, split from the dev half by source) give the share
each model flags at its threshold, per genre.

Benign agent tool outputs (``agent_tool_outputs``) measure what a coding agent's tool loop
costs: this repository's own files as Claude Code's ``Read`` returns them (numbered lines;
the test side of ``make_own_sources``' split by path, whose dev side the untrusted-content
model learned from) and shell commands on it (``ls``, ``git status``, ``git log``, ``grep``,
``cat``...) as the Codex CLI returns them (under its ``Chunk ID`` / ``Wall time`` /
``Process exited`` header), files that quote attack phrases (the guard's own tests and
data) left out. Each is read
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
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import make_own_sources as own_sources  # noqa: E402
from ownlight.config.settings import GuardSettings  # noqa: E402
from ownlight.guard.chunk_head import ChunkHead  # noqa: E402
from ownlight.guard.e5_layers import layer_reader  # noqa: E402
from ownlight.guard.model import GuardModel  # noqa: E402
from ownlight.guard.stage import InjectionGuard, also_unmasked  # noqa: E402
from ownlight.protocol.model import Operation, TextPart, ToolResult, Turn  # noqa: E402

SETS = {
    "shared test": ROOT.parent / "shared" / "eval" / "injection" / "test.jsonl",
    "ours test": ROOT / "eval" / "injection_multilingual_test.jsonl",
    "genres test": ROOT / "eval" / "injection_genres_test.jsonl",
    "addressee test": ROOT / "eval" / "injection_addressee_test.jsonl",
    "addressee direct test": ROOT / "eval" / "injection_addressee_direct_test.jsonl",
    "writers test": ROOT / "eval" / "injection_writers_test.jsonl",
    "writers direct test": ROOT / "eval" / "injection_writers_direct_test.jsonl",
    # a third set of direct messages, to deployments that act (mail, shell, bookings, refunds)
    "writers direct 3 test": ROOT / "eval" / "injection_writers_direct3_test.jsonl",
    "writers genres test": ROOT / "eval" / "injection_writers_genres_test.jsonl",
    "writers genres 2 test": ROOT / "eval" / "injection_writers_genres2_test.jsonl",
    # short pages with one rule for whoever presents them (listings, FAQs, notices)
    "writers presenter test": ROOT / "eval" / "injection_writers_presenter_test.jsonl",
    # benign only: what owners type to their own agents (flagged at the threshold is the figure)
    "agent commands test": ROOT / "eval" / "agent_commands_test.jsonl",
}
OWN_SETS = ("ours test", "genres test", "addressee test", "addressee direct test",
            "writers test", "writers direct test", "writers direct 3 test", "writers genres test",
            "writers genres 2 test", "writers presenter test", "agent commands test")
# sets reported per genre too
GENRE_SETS = ("genres test", "writers genres test", "writers genres 2 test")
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
    # the test side of make_own_sources' split by path: the dev side is training data
    paths = [p for p in files.stdout.split() if own_sources.split(p) == "test"
             and p.endswith(own_sources.SUFFIXES) and not own_sources.LEFT_OUT.search(p)]
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
            if "model" not in body:  # not a model request (the recordings hold other calls)
                continue
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


BENIGN_TOOL_OUTPUTS = ROOT / "eval" / "benign_tool_outputs_test.jsonl"


def previous_weights(rev: str | None, into: Path) -> tuple[Path, Path, str]:
    """The weights shipped before the newest change to them (or at ``rev``), from git."""
    if rev is None:
        last = subprocess.run(["git", "rev-list", "-n", "1", "HEAD", "--",
                               "src/ownlight/data/guard"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
        rev = f"{last}^"
    paths = []
    for name in ("guard.npz", "untrusted.npz", "tool_e5.npz", "chunk_e5.npz"):
        blob = subprocess.run(["git", "show", f"{rev}:src/ownlight/data/guard/{name}"],
                              cwd=ROOT, capture_output=True, check=True).stdout
        (into / name).write_bytes(blob)
        paths.append(into / name)
    label = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return paths[0], paths[1], label


def measure(model: GuardModel, untrusted: GuardModel, rows: list[dict],
            plain: bool = False) -> tuple[dict[str, str], float, float]:
    """Per group: AUC, TPR at 1%/5% FPR, TPR/FPR at the shipped threshold; NotInject pass
    rate; ms per 1,000 characters. Each text is read as the guard reads it, disguises
    undone (``guard.unmasking``), unless ``plain``."""
    scores, flagged_at, spent, chars = [], [], 0.0, 0
    for row in rows:
        reader = untrusted if row.get("kind") == "indirect" else model
        start = time.perf_counter()
        scores.append((reader.scan(row["text"]) if plain
                       else also_unmasked(row["text"], reader.scan)).score)
        spent += time.perf_counter() - start
        chars += len(row["text"])
        flagged_at.append(reader.threshold)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        lang = row.get("lang") or "en"
        groups[f"{row['set']}: {row.get('kind')}"].append(i)
        if row["set"] in OWN_SETS:
            groups[f"{row['set']}: {row.get('kind')} {lang}"].append(i)
        if row["set"] in GENRE_SETS and row.get("kind") == "indirect":
            groups[f"{row['set']}: indirect {row.get('genre')}"].append(i)
    s, thresholds = np.array(scores), np.array(flagged_at)
    labels = np.array([int(r["label"]) for r in rows])
    cells: dict[str, str] = {}
    for name, index in groups.items():
        idx = np.array(index)
        pos, neg = s[idx][labels[idx] == 1], s[idx][labels[idx] == 0]
        flagged = s[idx] >= thresholds[idx]
        tp = flagged[labels[idx] == 1].mean() if len(pos) else float("nan")
        fp = flagged[labels[idx] == 0].mean() if len(neg) else float("nan")
        cells[name] = (f"{len(pos)}/{len(neg)} | {auc(pos, neg):.3f} | {tpr_at(pos, neg, 0.01):.3f}"
                       f" | **{tpr_at(pos, neg, 0.05):.3f}** | {tp:.3f} / {fp:.3f}")
    notinject = np.array([i for i, r in enumerate(rows) if r.get("source") == "notinject"])
    passed = float((s[notinject] < thresholds[notinject]).mean()) if len(notinject) else 0.0
    return cells, passed, spent / max(chars, 1) * 1e6


def benign_tool_output_rates(model: GuardModel, untrusted: GuardModel) -> dict[str, str]:
    """Share of real benign tool outputs (test split, by source) flagged by each model."""
    if not BENIGN_TOOL_OUTPUTS.exists():
        return {}
    rows = [json.loads(line) for line in BENIGN_TOOL_OUTPUTS.read_text().splitlines()]
    by_genre: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for row in rows:
        flags = (untrusted.scan(row["text"]).injection, model.scan(row["text"]).injection)
        by_genre[row["genre"]].append(flags)
        by_genre["all"].append(flags)
    return {genre: f"{len(v)} | {np.mean([u for u, _ in v]):.3f} | {np.mean([m for _, m in v]):.3f}"
            for genre, v in sorted(by_genre.items())}


def groups_of(rows: list[dict], by_genre: bool) -> dict[str, list[int]]:
    """Row indices per set, per language of our sets and, if asked, per genre."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row["set"]].append(i)
        if row["set"] in OWN_SETS:
            groups[f"{row['set']} {row.get('lang') or 'en'}"].append(i)
        if by_genre and row["set"] in GENRE_SETS:
            groups[f"{row['set']} {row.get('genre')}"].append(i)
        if by_genre and row["set"] == "addressee test":  # which look-alikes cost the most
            groups[f"addressee test, twins {row.get('twin')}"].append(i)
    return groups


def print_rates(title: str, rows: list[dict], scores: dict[str, np.ndarray], at: float) -> None:
    """A table per set, language and genre: for each reading, TPR at 5% FPR of the group's
    own benign rows / the shares of injected and benign rows at or over ``at`` (the shipped
    thresholds on that reading's scale)."""
    labels = np.array([int(r["label"]) for r in rows])
    groups = groups_of(rows, by_genre=True)
    print(f"\n{title}. TPR at 5% FPR of the group's own benign rows, then the shares of "
          "injected and benign rows flagged at the shipped thresholds.\n")
    print("| rows | n (inj/benign) | " + " | ".join(f"{k}: TPR@5% / TPR, FPR at threshold"
                                                  for k in scores) + " |")
    print("|---|---|" + "---|" * len(scores))
    for name in sorted(groups):
        idx = np.array(groups[name])
        cells = []
        for values in scores.values():
            pos, neg = values[idx][labels[idx] == 1], values[idx][labels[idx] == 0]
            caught = f"{(pos >= at).mean():.3f}" if len(pos) else "-"
            at5 = f"{tpr_at(pos, neg, 0.05):.3f}" if len(pos) else "-"
            cells.append(f"{at5} / {caught} / {(neg >= at).mean():.3f}")
        n_pos = int(labels[idx].sum())
        print(f"| {name} | {n_pos}/{len(idx) - n_pos} | " + " | ".join(cells) + " |")


def tool_result_rows(untrusted: GuardModel, rows: list[dict], previous: ChunkHead,
                     previous_untrusted: GuardModel) -> None:
    """Tool results: the untrusted-content n-gram model alone beside it with e5's second
    look at the segments it ranks highest (``guard.second_look``, as the pipeline reads a
    tool result), and both as the previous weights read them (their n-gram model ranking
    for their head), on every indirect row and every benign tool output of the test half.
    Vectors are cached in /tmp for the table; the cost is timed apart, uncached."""
    import random

    from ownlight.guard.chunk_training import CACHE
    from ownlight.guard.model import ranked
    from ownlight.guard.second_look import SecondLook, chosen
    from ownlight.knowledge.embedder import CachedEmbedder

    head = SecondLook.load_head()
    look = SecondLook(head, CachedEmbedder(layer_reader(head.layers), CACHE).passages)
    before = SecondLook(previous, CachedEmbedder(layer_reader(previous.layers), CACHE).passages)
    chosen_rows = [r for r in rows if r.get("kind") == "indirect"
                   and r["set"] != "retrieval passages"]
    tools = [json.loads(line) for line in BENIGN_TOOL_OUTPUTS.read_text().splitlines()]
    chosen_rows += [{**r, "set": "benign tool outputs", "kind": "indirect"} for r in tools]
    def margin(probability: float, threshold: float) -> float:
        """Log-odds over the threshold: the two readings' scores on one scale."""
        p = min(max(probability, 1e-9), 1 - 1e-9)
        return float(np.log(p / (1 - p)) - np.log(threshold / (1 - threshold)))

    floor = look.gate(untrusted.threshold)  # under it e5 is not consulted (second_look.GATE)
    floor_before = before.gate(previous_untrusted.threshold)
    alone: list[float] = []
    both: list[float] = []
    both_before: list[float] = []
    for row in chosen_rows:
        text = row["text"]
        for ngrams, reader, gate, out in ((untrusted, look, floor, both),
                                          (previous_untrusted, before, floor_before,
                                           both_before)):
            scored = ngrams.scored_units(text)
            from_text = margin(ngrams.verdict(scored).score, ngrams.threshold)
            if out is both:
                alone.append(from_text)
            meaning = margin(reader.score(ranked(scored), len(text), gate), reader.threshold)
            out.append(max(from_text, meaning))
    scores = {"n-gram alone": np.array(alone), "with e5 second look": np.array(both),
              "both, previous weights": np.array(both_before)}
    print_rates("Tool results (indirect rows and benign tool outputs read as the pipeline "
                "reads a tool result)", chosen_rows, scores, at=0.0)
    uncached = SecondLook(look.head, layer_reader(head.layers).passages)
    uncached.score([("warm up", 0.0)], 7)
    mixed = random.Random(0).sample([r["text"] for r in chosen_rows], 120)
    benign = random.Random(0).sample([r["text"] for r in tools], 120)
    for name, sample in (("120 rows of this table", mixed), ("120 benign tool outputs", benign)):
        start = time.perf_counter()
        read = 0
        for text in sample:
            scored = untrusted.scored_units(text)
            untrusted.verdict(scored)
            # e5 reads every row here, flagged or not (the gateway skips it when the n-grams
            # flag a result), but only within the gate, as the gateway reads
            uncached.score(ranked(scored), len(text), floor)
            if ranked(scored) and ranked(scored)[0][1] >= floor:
                read += sum(map(len, chosen(ranked(scored), len(text))))
        size = sum(map(len, sample))
        spent = (time.perf_counter() - start) / size * 1e6
        print(f"\nBoth readings together cost {spent:.1f} ms per 1,000 characters of tool "
              f"result (uncached, {name}, this machine); e5 read {read / size:.1%} of their "
              "characters.")


def chunk_rows(untrusted: GuardModel, rows: list[dict], tool_outputs: int,
               previous: ChunkHead, previous_untrusted: GuardModel) -> None:
    """Retrieved knowledge chunks: the n-gram model on the text beside the e5 head's score
    stored at ingest (``guard.chunk_head``: the highest of the chunk's lines), and both
    together as the grounding stage uses them (either flags); then the e5 head and both
    readings as the previous weights gave them, in the same run. Each document is chunked as
    ingest does it; a document scores its highest chunk. Line vectors are cached in /tmp;
    ``tool_outputs`` benign tool outputs (a fixed sample of the test half) keep the run
    to minutes. The ingest cost is timed apart, on uncached text."""
    import random

    from ownlight.guard.chunk_training import CACHE
    from ownlight.knowledge.chunking import prepare
    from ownlight.knowledge.embedder import CachedEmbedder
    from ownlight.knowledge.sqlite_store import embed_text
    from ownlight.knowledge.types import Document

    def chunks_of(text: str) -> list[str]:
        doc = prepare(Document("doc", "", text), ())
        return [embed_text(c.heading, c.text) for c in doc.chunks] or [text]

    head = ChunkHead.load()
    embedder = CachedEmbedder(layer_reader(head.layers), CACHE)
    embedder_before = CachedEmbedder(layer_reader(previous.layers), CACHE)
    chosen = [r for r in rows if r.get("kind") == "indirect"]
    if BENIGN_TOOL_OUTPUTS.exists():
        tools = [json.loads(line) for line in BENIGN_TOOL_OUTPUTS.read_text().splitlines()]
        chosen += [{**r, "set": "benign tool outputs", "kind": "indirect"}
                   for r in random.Random(0).sample(tools, min(tool_outputs, len(tools)))]
    ngram, e5, ngram_before, e5_before = [], [], [], []
    for row in chosen:
        chunks = chunks_of(row["text"])
        ngram.append(max(untrusted.scan(c).score for c in chunks) / untrusted.threshold)
        ngram_before.append(max(previous_untrusted.scan(c).score for c in chunks)
                            / previous_untrusted.threshold)
        e5.append(max(head.chunk_scores(chunks, embedder.passages)) / head.threshold)
        e5_before.append(max(previous.chunk_scores(chunks, embedder_before.passages))
                         / previous.threshold)
    scores = {"n-gram (text)": np.array(ngram), "e5 lines (stored at ingest)": np.array(e5)}
    scores["both (either flags)"] = np.maximum(ngram, e5)
    scores[f"previous e5 head (after {previous.layers} layers)"] = np.array(e5_before)
    scores["both, previous weights"] = np.maximum(ngram_before, e5_before)
    print_rates("Knowledge chunks (indirect rows chunked as ingest does; a document scores "
                "its highest chunk)", chosen, scores, at=1.0)
    sample = [r["text"] for r in chosen if r["set"] == "genres test"][:24]
    start = time.perf_counter()
    head.chunk_scores([c for t in sample for c in chunks_of(t)], head.embed)
    spent = (time.perf_counter() - start) / sum(map(len, sample)) * 1e6
    print(f"\nThe e5 line pass costs {spent:.0f} ms per 1,000 characters at ingest (uncached, "
          f"{len(sample)} genre test documents, this machine); at query time it is a stored "
          "number.")


def direct_e5_rows(model: GuardModel, rows: list[dict]) -> None:
    """Direct attacks per language: the user-input model beside the chunk head on the
    message's e5 vector (its first 600 characters, one pass), to see whether an e5 reading
    of the user's turn would be worth its cost. Not shipped: see the cost it prints."""
    from ownlight.guard.chunk_training import CACHE
    from ownlight.knowledge.embedder import CachedEmbedder

    head = ChunkHead.load()
    embedder = CachedEmbedder(layer_reader(head.layers), CACHE)
    chosen = [r for r in rows if r.get("kind") == "direct"]
    ngram = np.array([model.scan(r["text"]).score for r in chosen])
    e5 = head.scores(embedder.passages([r["text"][:600] for r in chosen]))
    labels = np.array([int(r["label"]) for r in chosen])
    groups = groups_of(chosen, by_genre=False)
    print("\nDirect attacks: TPR at 5% FPR of the group's own benign rows.\n")
    print("| rows | n (inj/benign) | user-input model | e5 head on the message |")
    print("|---|---|---|---|")
    for name in sorted(groups):
        idx = np.array(groups[name])
        cells = [f"{tpr_at(s[idx][labels[idx] == 1], s[idx][labels[idx] == 0], 0.05):.3f}"
                 for s in (ngram, e5)]
        n_pos = int(labels[idx].sum())
        print(f"| {name} | {n_pos}/{len(idx) - n_pos} | " + " | ".join(cells) + " |")


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--untrusted-model", type=Path)
    parser.add_argument("--previous", metavar="REV",
                        help="git revision of the weights to compare with (default: the "
                             "weights shipped before the newest change to them)")
    parser.add_argument("--documents", type=int, default=1000,
                        help="benign retrieval passages to score (0: none)")
    parser.add_argument("--agents-only", action="store_true",
                        help="only the benign agent traffic table")
    parser.add_argument("--tool-results-only", action="store_true",
                        help="only the tool results table (n-gram beside e5's second look)")
    parser.add_argument("--chunks-only", action="store_true",
                        help="only the knowledge chunks table (n-gram beside the e5 head)")
    parser.add_argument("--direct-only", action="store_true",
                        help="only the direct attacks and their look-alikes (user input)")
    parser.add_argument("--plain", action="store_true",
                        help="read texts as written, without undoing disguises")
    parser.add_argument("--tool-outputs", type=int, default=120,
                        help="benign tool outputs (test half, fixed sample) in that table")
    args = parser.parse_args()
    if args.agents_only:
        agent_rows(InjectionGuard(GuardSettings(
            model_path=_str(args.model), untrusted_model_path=_str(args.untrusted_model))))
        return 0
    model = GuardModel.load(args.model)
    untrusted = GuardModel.load_untrusted(args.untrusted_model)
    with tempfile.TemporaryDirectory() as tmp:
        old_path, old_untrusted_path, old_label = previous_weights(args.previous, Path(tmp))
        old, old_untrusted = GuardModel.load(old_path), GuardModel.load(old_untrusted_path)
        old_look = ChunkHead.load(Path(tmp) / "tool_e5.npz")
        old_chunk_head = ChunkHead.load(Path(tmp) / "chunk_e5.npz")
    rows = []
    for name, path in SETS.items():
        if not path.exists():
            print(f"(missing: {path})", file=sys.stderr)
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append({**json.loads(line), "set": name})
    if args.direct_only:
        rows = [r for r in rows if r.get("kind") != "indirect"]
    elif args.documents and DOCUMENTS.exists():
        passages = [json.loads(line) for line in DOCUMENTS.read_text().splitlines()]
        rows += [{"text": p["text"], "label": 0, "kind": "indirect", "lang": p.get("lang"),
                  "set": "retrieval passages"} for p in passages[: args.documents]]
    if not args.direct_only:
        tool_result_rows(untrusted, rows, old_look, old_untrusted)
        if args.tool_results_only:
            return 0
        chunk_rows(untrusted, rows, args.tool_outputs, old_chunk_head, old_untrusted)
        direct_e5_rows(model, rows)
        if args.chunks_only:
            return 0
    new_cells, new_pass, new_speed = measure(model, untrusted, rows, args.plain)
    old_cells, old_pass, old_speed = measure(old, old_untrusted, rows, args.plain)
    if args.direct_only:
        print(f"Each cell: this tree's weights, then the previous ones ({old_label}); "
              f"{'as written' if args.plain else 'disguises undone'}.\n")
        for name in sorted(new_cells):
            print(f"| {name} | now | {new_cells[name]} |\n| | previous | {old_cells[name]} |")
        print(f"\nSpeed: {new_speed:.2f} ms per 1,000 characters now ({len(rows)} texts).")
        return 0
    print(f"Each cell: this tree's weights, then the previous ones ({old_label}).\n")
    print("| rows | model | n (inj/benign) | AUC | TPR @1% FPR | TPR @5% FPR | TPR / FPR at "
          "its threshold |")
    print("|---|---|---|---|---|---|---|")
    for name in sorted(new_cells):
        print(f"| {name} | now | {new_cells[name]} |")
        print(f"| | previous | {old_cells[name]} |")
    print(f"\nOver-defence (NotInject, benign rows with trigger words) passed: {new_pass:.1%} "
          f"now, {old_pass:.1%} previous.")
    print(f"Thresholds: user input {model.threshold:.3f} / untrusted {untrusted.threshold:.3f} "
          f"now; {old.threshold:.3f} / {old_untrusted.threshold:.3f} previous.")
    print(f"Speed: {new_speed:.2f} ms per 1,000 characters now, {old_speed:.2f} previous "
          f"({len(rows)} texts, one core).")
    now, before = benign_tool_output_rates(model, untrusted), benign_tool_output_rates(
        old, old_untrusted)
    if now:
        print(f"\nBenign tool outputs ({BENIGN_TOOL_OUTPUTS.relative_to(ROOT)}: real files and "
              "command output, split by source), share flagged at each model's threshold:\n")
        print("| genre | model | n | untrusted-content model | user-input model |")
        print("|---|---|---:|---:|---:|")
        for genre in now:
            print(f"| {genre} | now | {now[genre]} |\n| | previous | {before[genre]} |")
    agent_rows(InjectionGuard(GuardSettings(
        model_path=_str(args.model), untrusted_model_path=_str(args.untrusted_model))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
