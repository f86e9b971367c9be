"""Training the knowledge chunk head (``chunk_head.py``) on dev sets only.

The head reads one line's e5 passage vector (``passage:`` prefix, mean pooled, as the
knowledge base embeds), and a chunk scores its highest line, like the n-gram model. A
head on the whole chunk's stored vector was tried first and does not work: a chunk's
vector is its topic, and an attacked document and its clean twin land a few hundredths
apart (on the genre dev set the injected and clean twins score alike), so the one line
addressed to the assistant has to be read alone.

Positives: the injected lines of the dev attacks (``attack_lines``: BIPIA dev e-mails,
Ownlight's multilingual, genre, addressee and writers' dev sets, the presenter and mail ones
among them) and the dev direct attacks. Negatives: the
lines of clean dev documents (their clean twins with look-alike instructions, the benign
documents set), of 150 Wikipedia dev passages in four languages and of every real tool
output of the dev half (its first 40 lines). The threshold comes from out-of-fold line
scores taken to documents (a document scores its highest line): at most 3% of benign
documents and 0.5% of tool outputs (the n-gram model, read beside it, flags its own).
The clean twins that talk about assistants (``HARD_TWIN``) are negatives too, but outside
the pool the threshold is chosen on, as for the untrusted-content model.

    python -m ownlight.guard.chunk_training ../shared/eval eval   # vectors cached in /tmp

The vectors are e5's after its first ``--layers`` layers (7 by default, ``e5_layers``).

``--second-look`` trains the head for tool results instead (``guard.second_look``): it
reads the segments the n-gram model ranks highest, so its negatives are those segments
of every benign dev document and of every dev tool output, Ownlight's own dev-side files
included (``bench/make_own_sources.py``; the hard cases: what looked
most like a prompt to the n-gram model), its positives the injected lines and each dev
direct attack's top segment, and its threshold keeps at most 3% of benign documents and
0.2% of tool outputs flagged out of fold (the n-gram model flags about 5% and 1.4% of
them already; together they should stay near 5% and under 2%).

Both heads have one hidden layer of ``HIDDEN`` ReLU units under their logit, ``SEEDS``
networks averaged (as one trained network's threshold and catches move with its random
start; the second look's head since it reads the top segment however long): a logistic
head could not keep a line to whoever presents a page apart from a line to its human
readers (docs/performance.md). The chunk head took it once its threshold was chosen on
every dev tool output (on a sample of 120, it flagged 3.3% of the tool outputs' test half in
a study; on all 1,023, 1.1%); ``--hidden N`` trains either with N units, ``--hidden 0``
a logistic head. ``--input`` trains a head for user input (``input_examples``): a study,
not shipped, as it flagged twice the owners' agent commands (docs/performance.md).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ownlight.guard.chunk_head import ChunkHead, lines
from ownlight.guard.e5_layers import layer_reader
from ownlight.guard.model import GuardModel
from ownlight.guard.second_look import chosen
from ownlight.guard.untrusted_training import HARD_TWIN, attack_lines
from ownlight.knowledge.embedder import CachedEmbedder, Embedder

C = 4.0
#: the e5 layers the heads read (``e5_layers``): on dev, 7 told attacks from look-alikes best
LAYERS = 7
FOLDS = 5
# Both heads: one ReLU layer of this many units under the logit, L2 penalty ALPHA
HIDDEN = 256
ALPHA = 1e-2
#: Both e5 heads average this many networks' logits (``Averaged``); the input head, a
#: study, is one network
SEEDS = 3
CACHE = Path("/tmp/ownlight-chunk-vectors.sqlite")


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


#: (positive lines, benign documents' lines, tool outputs' lines, the hardest twins' lines:
#: negatives that do not set the threshold, ``untrusted_training.HARD_TWIN``)
Examples = tuple[list[str], list[list[str]], list[list[str]], list[list[str]]]


def _clean(dev: list[dict[str, Any]], hard: bool) -> list[str]:
    return [r["text"] for r in dev if r.get("kind") == "indirect" and int(r["label"]) == 0
            and (r.get("twin") == HARD_TWIN) == hard]


def examples(shared: Path, own: Path) -> Examples:
    """``Examples`` from the dev files only."""
    rng = random.Random(0)
    dev = (load(shared / "injection" / "dev.jsonl")
           + load(own / "injection_multilingual_dev.jsonl")
           + load(own / "injection_genres_dev.jsonl")
           + load(own / "injection_indirect_varied_dev.jsonl")
           + load(own / "injection_addressee_dev.jsonl")
           + load(own / "injection_writers_dev.jsonl")
           + load(own / "injection_writers_genres_dev.jsonl")
           + load(own / "injection_writers_mail_dev.jsonl")
           + load(own / "injection_writers_presenter_dev.jsonl")
           + load(own / "injection_writers_mail2_dev.jsonl")
           + load(own / "injection_writers_presenter2_dev.jsonl"))
    positives = [s[:300] for _, injected, _ in attack_lines(dev) for s in injected]
    direct = (dev + load(own / "injection_en_direct_dev.jsonl")
              + load(own / "injection_direct_varied_dev.jsonl")
              + load(own / "injection_addressee_direct_dev.jsonl"))
    positives += [r["text"][:600] for r in direct
                  if r.get("kind") == "direct" and int(r["label"]) == 1]
    clean = _clean(dev, hard=False)
    clean += [r["text"] for r in load(own / "injection_benign_documents_dev.jsonl")]
    clean += [r["text"] for r in rng.sample(load(shared / "retrieval" / "dev_corpus.jsonl"), 150)]
    tools = [r["text"] for r in load(own / "benign_tool_outputs_dev.jsonl")]
    return (list(dict.fromkeys(positives)), [lines(t) for t in clean],
            [lines(t)[:40] for t in tools], [lines(t) for t in _clean(dev, hard=True)])


# Every indirect dev set by a writer of its own. The addressee and both writers' sets were
# left out until this release because, with them, the head let through two hand-written
# attacks of ``tests/test_guard_second_look.py``; it still does, but it reads every
# writers' test half better (docs/performance.md, "the second look reads every writer").
WRITERS = ("injection_multilingual_dev", "injection_genres_dev", "injection_indirect_varied_dev",
           "injection_addressee_dev", "injection_writers_dev", "injection_writers_genres_dev",
           "injection_writers_presenter_dev", "injection_writers_mail2_dev",
           "injection_writers_mail3_dev", "injection_writers_presenter3_dev")


def second_look_examples(shared: Path, own: Path, untrusted: GuardModel | None = None,
                         leave_out: str | None = None) -> Examples:
    """(positive segments, benign documents' chosen segments, tool outputs' chosen
    segments): what ``SecondLook`` reads, dev files only. ``untrusted`` ranks the segments
    (the packaged model by default); ``leave_out`` names one of ``WRITERS`` to train
    without (``bench/guard_tool_fusion.py`` holds each writer out in turn)."""
    rng = random.Random(0)
    ranking = untrusted or GuardModel.load_untrusted()

    def picked(text: str) -> list[str]:
        return chosen(ranking.ranked_units(text), len(text)) or [text[:120]]

    dev = load(shared / "injection" / "dev.jsonl")
    for writer in WRITERS:
        if writer != leave_out:
            dev += load(own / f"{writer}.jsonl")
    positives = [s for _, injected, _ in attack_lines(dev) for s in injected]
    direct = (dev + load(own / "injection_en_direct_dev.jsonl")
              + load(own / "injection_direct_varied_dev.jsonl"))
    positives += [picked(r["text"])[0] for r in direct
                  if r.get("kind") == "direct" and int(r["label"]) == 1]
    clean = _clean(dev, hard=False)
    clean += [r["text"] for r in load(own / "injection_benign_documents_dev.jsonl")]
    clean += [r["text"] for r in rng.sample(load(shared / "retrieval" / "dev_corpus.jsonl"), 300)]
    tools = [r["text"] for r in load(own / "benign_tool_outputs_dev.jsonl")
             + load(own / "benign_own_sources_dev.jsonl")]
    return (list(dict.fromkeys(positives)), [picked(t) for t in clean],
            [picked(t) for t in tools], [picked(t) for t in _clean(dev, hard=True)])


#: The dev sets of direct messages the input head reads (their attacks and look-alikes)
DIRECT = ("injection_en_direct_dev", "injection_direct_varied_dev",
          "injection_addressee_direct_dev", "injection_writers_direct_dev",
          "injection_writers_direct2_dev",
          "injection_writers_direct4_dev", "injection_direct_four_languages_dev")


def input_examples(shared: Path, own: Path, user: GuardModel | None = None) -> Examples:
    """(attacks, ordinary messages, pasted files, []): the user-input model's top window of
    each dev direct message (what ``InjectionGuard`` shows e5 when ``input_second_look`` is
    on), dev files only. Ordinary messages: the look-alikes, the owners' agent commands and
    the shared set's benign prompts; pasted files: the dev tool outputs and own sources."""
    ranking = user or GuardModel.load()

    def top(text: str) -> list[str]:
        return [ranking.ranked_units(text)[0][0] if text.strip() else text]

    rows = [r for name in DIRECT for r in load(own / f"{name}.jsonl")]
    rows += load(own / "agent_commands_dev.jsonl") + load(shared / "injection" / "dev.jsonl")
    rows = [r for r in rows if r.get("kind") == "direct" and r["text"].strip()]
    attacks = [top(r["text"])[0] for r in rows if int(r["label"]) == 1]
    ordinary = [top(r["text"]) for r in rows if int(r["label"]) == 0]
    pasted = [top(r["text"]) for r in load(own / "benign_tool_outputs_dev.jsonl")
              + load(own / "benign_own_sources_dev.jsonl")]
    return list(dict.fromkeys(attacks)), ordinary, pasted, []


def _fit(x: np.ndarray, y: np.ndarray, hidden: int = 0, seeds: int = 1) -> Any:
    """A logistic head, or with ``hidden`` units one ReLU layer under it (positives
    repeated to balance the classes: ``MLPClassifier`` takes no class weights); with
    ``seeds`` > 1, that many networks whose logits are averaged (``Averaged``)."""
    if not hidden:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(x, y)
    from sklearn.neural_network import MLPClassifier

    repeat = max(1, round((1 - y.mean()) / max(y.mean(), 1e-9)))
    rows = np.concatenate([np.arange(len(y)), np.repeat(np.flatnonzero(y == 1), repeat - 1)])
    nets = [MLPClassifier(hidden_layer_sizes=(hidden,), alpha=ALPHA, max_iter=300,
                          random_state=seed).fit(x[rows], y[rows]) for seed in range(seeds)]
    return nets[0] if seeds == 1 else Averaged(nets)


class Averaged:
    """Networks of one hidden layer whose logits are averaged, as one network: their hidden
    units side by side, each output weight divided by their number. One network's
    threshold moves with its random start and the order of its examples (0.961 and 0.979
    on the same dev examples in two orders); the average moves less."""

    def __init__(self, nets: list[Any]):
        n = len(nets)
        self.coefs_ = [np.hstack([m.coefs_[0] for m in nets]),
                       np.vstack([m.coefs_[1] for m in nets]) / n]
        self.intercepts_ = [np.concatenate([m.intercepts_[0] for m in nets]),
                            np.mean([m.intercepts_[1] for m in nets], axis=0)]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        hidden = np.maximum(x @ self.coefs_[0] + self.intercepts_[0], 0)
        p = 1 / (1 + np.exp(-(hidden @ self.coefs_[1] + self.intercepts_[1])[:, 0]))
        return np.column_stack([1 - p, p])


def _head(model: Any, threshold: float, layers: int) -> ChunkHead:
    if hasattr(model, "coef_"):
        return ChunkHead(model.coef_[0].astype(np.float32), float(model.intercept_[0]),
                         threshold, layers)
    return ChunkHead(model.coefs_[1][:, 0].astype(np.float32), float(model.intercepts_[1][0]),
                     threshold, layers, model.coefs_[0].astype(np.float32),
                     model.intercepts_[0].astype(np.float32))


def train(embedder: Embedder, shared: Path, own: Path, second_look: bool = False,
          layers: int = 12, found: Examples | None = None, hidden: int = 0,
          user_input: bool = False, seeds: int = 1) -> tuple[ChunkHead, dict[str, Any]]:
    """The head on ``embedder``'s vectors (e5 after ``layers`` layers) and its out-of-fold
    figures on dev; ``found`` gives other examples than the dev files' (a study's)."""
    positives, benign, tools, hard = found or (
        input_examples if user_input else
        second_look_examples if second_look else examples)(shared, own)
    # the second look adds to the n-gram model's own flags (about 5% of benign documents and
    # 1.4% of dev tool outputs): the 2% budget leaves it about half a point of tool outputs,
    # of which it takes 0.2%, as its flags are not all on outputs the n-grams flag already
    # the chunk head, read beside the n-grams at query time: 3% of documents, 0.5% of tool
    # outputs (a logistic chunk head, ``--hidden 0``, keeps the looser 5% and 2%)
    # the input head, read beside the user-input model: 1% of ordinary messages and files
    document_fpr, tool_fpr = (0.01, 0.01) if user_input else (0.03, 0.002) if second_look else (
        (0.03, 0.005) if hidden else (0.05, 0.02))
    documents = benign + tools + hard
    texts = positives + [s for d in documents for s in d]
    doc = np.array([-1] * len(positives) + [i for i, d in enumerate(documents) for _ in d])
    x = np.concatenate([embedder.passages(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    y = (doc < 0).astype(int)
    rng = np.random.default_rng(0)
    # folds by document: a document's lines are never scored by a head that saw them
    fold = np.where(doc < 0, rng.integers(0, FOLDS, len(doc)),
                    rng.integers(0, FOLDS, len(documents))[np.maximum(doc, 0)])
    out_of_fold = np.zeros(len(y))
    for k in range(FOLDS):
        model = _fit(x[fold != k], y[fold != k], hidden, seeds)
        out_of_fold[fold == k] = model.predict_proba(x[fold == k])[:, 1]
    doc_max = np.zeros(len(documents))
    np.maximum.at(doc_max, doc[doc >= 0], out_of_fold[doc >= 0])
    benign_max = doc_max[: len(benign)]
    tool_max = doc_max[len(benign) : len(benign) + len(tools)]
    hard_max = doc_max[len(benign) + len(tools) :]
    threshold = float(max(np.quantile(benign_max, 1 - document_fpr),
                          np.quantile(tool_max, 1 - tool_fpr)))
    head = _head(_fit(x, y, hidden, seeds), threshold, layers)
    report = {"positive_lines": len(positives), "benign_documents": len(benign),
              "tool_outputs": len(tools), "threshold": threshold,
              "oof_line_tpr": float((out_of_fold[y == 1] >= threshold).mean()),
              "oof_benign_document_fpr": float((benign_max >= threshold).mean()),
              "oof_tool_output_fpr": float((tool_max >= threshold).mean()),
              "oof_hard_twins_flagged": float((hard_max >= threshold).mean())
              if len(hard) else None}
    return head, report


def main(argv: list[str]) -> None:
    second_look = "--second-look" in argv
    user_input = "--input" in argv
    layers = LAYERS
    if "--layers" in argv:
        at = argv.index("--layers")
        layers = int(argv[at + 1])
        del argv[at : at + 2]
    hidden = HIDDEN
    if "--hidden" in argv:
        at = argv.index("--hidden")
        hidden = int(argv[at + 1])
        del argv[at : at + 2]
    seeds = 1 if user_input else SEEDS
    if "--seeds" in argv:
        at = argv.index("--seeds")
        seeds = int(argv[at + 1])
        del argv[at : at + 2]
    argv = [a for a in argv if a not in ("--second-look", "--input")]
    shared, own = Path(argv[0]), Path(argv[1])
    out = Path(argv[2]) if len(argv) > 2 else (
        Path(__file__).resolve().parents[1] / "data" / "guard"
        / ("input_e5.npz" if user_input else "tool_e5.npz" if second_look else "chunk_e5.npz"))
    head, report = train(CachedEmbedder(layer_reader(layers), CACHE), shared, own, second_look,
                         layers, hidden=hidden, user_input=user_input, seeds=seeds)
    head.save(out)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
