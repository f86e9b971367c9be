"""Training the untrusted-content model: is this line a prompt where no prompt belongs?

Positives are prompts: the injected lines of the dev attacks (found by comparing each
attacked e-mail with the clean e-mails: what is new is the attack) and every prompt a user
might type (the direct rows of the dev sets, attacks and ordinary requests alike, since
either one inside a document is an instruction smuggled to the assistant). Negatives are
the lines of real documents: the clean dev e-mails, Wikipedia passages in four languages
(``retrieval/dev_corpus.jsonl``) and Ownlight's benign documents set. Each line is read as
its hashed n-grams, its structural signals and its words' meaning (``lexicon``: the mean of
e5's vectors for its words, which holds across the four languages where n-grams do not).

The threshold is chosen on whole documents, by grouped cross-validation: an attack's text
never sits in training and evaluation at once, so the estimate is for attacks not seen
before; it keeps the document false-positive rate at about 5% (``HARD_TWIN``: of documents
other than the hardest look-alikes).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ownlight.guard.features import BUCKETS, SIGNALS, normalise
from ownlight.guard.lexicon import packaged
from ownlight.guard.model import GuardModel
from ownlight.guard.segments import SENTENCE_SEGMENT
from ownlight.guard.segments import segments as _segments
from ownlight.guard.training import SOURCE_WEIGHTS, matrix
from ownlight.guard.word_cnn import WordCNN, combined


def segments(text: str) -> list[str]:
    """The units the untrusted-content model reads (``segment_windows``)."""
    return _segments(text, SENTENCE_SEGMENT)


ATTACK_WEIGHT = 3.0  # injected lines are few beside prompts and document lines
LOOKALIKE_WEIGHT = 3.0  # a look-alike line for people, where attacks stand (3 beat 1 and 10 on dev)
# The lines of the hardest twins, where the attack stands. A document line's weight (1) kept
# the poisoned MCP description caught when only the addressee set had such twins; with the
# genres writers' twins beside them, 3 (a look-alike's weight) flags 18.5% of them on the dev
# cross-validation instead of 29.6%, at the same AUC and tool-output rate, and the
# poisoned description stays caught (docs/performance.md, "genres writers").
ABOUT_AI_WEIGHT = 3.0
FOLDS = 5

# Clean twins that talk *about* assistants and prompts (``eval/injection_addressee_dev.jsonl``):
# negatives the model learns from (their own lines at ``ABOUT_AI_WEIGHT``), left out of the
# pool the threshold is chosen on. How many of them the pool holds is only how many
# were written; a threshold at 5% of a pool they crowd rises with each set of them and lets
# through attacks it caught before (the poisoned MCP description of
# ``tests/support/mcp_upstream.py`` among them).
HARD_TWIN = "about-ai"

C = 4.0
# The score read by both (logistic and word network) saturates: on dev its 1% tool-output cut sat
# above 0.95, so a 0.95 ceiling would have flagged more tool outputs than the bound allows.
THRESHOLD_CEILING = 0.999


def _squeeze(text: str) -> str:
    return re.sub(r"[\s,]+", "", normalise(text)[0])


#: squeezed characters under which a differing piece is a fragment of its neighbour
FRAGMENT = 8


class _Twins:
    """Where a document's twin is found among the other label's documents: which of its
    lines its twin does not have (by substring, as an injection in the middle of a line
    cuts it into other sentences).

    A row that names its pair (the writers' and the addressee sets) is compared with its own
    twin; the others with all those that name none (BIPIA's e-mails come in several copies
    with different injections). Compared with every document, one that has no twin lost its
    short lines to other sets' e-mails ("いつもお世話になっております。"), and the few left
    over (a subject line) passed for its injection.
    """

    def __init__(self, rows: Sequence[dict[str, Any]], label: int) -> None:
        self.paired: dict[tuple[str, str], str] = {}
        unpaired: list[str] = []
        for row in rows:
            if row.get("kind") == "indirect" and int(row["label"]) == label:
                if row.get("pair"):
                    self.paired[_pair(row)] = _squeeze(row["text"])
                else:
                    unpaired.append(_squeeze(row["text"]))
        self.unpaired = "\n".join(unpaired)

    def differing(self, row: dict[str, Any]) -> list[str]:
        """The lines of ``row`` its twin does not have (all of them when it has none)."""
        twin = self.paired.get(_pair(row), "") if row.get("pair") else self.unpaired
        new = [s for s in segments(row["text"]) if _squeeze(s) not in twin]
        # a sentence cut after "example." leaves "com." behind; a closing tag is a tag
        return [s for s in new if len(_squeeze(s)) >= FRAGMENT] or new


def _pair(row: dict[str, Any]) -> tuple[str, str]:
    return str(row.get("source")), str(row.get("pair"))


def attack_lines(rows: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], list[str], str]]:
    """(row, its injected lines, attack id) for each attacked document.

    An attacked e-mail with a clean twin: the lines its twin does not have. A document
    without one (Ownlight's own set, written one by one): the line the user-input model
    scores highest, which is the one addressed to the assistant.
    """
    twins = _Twins(rows, label=0)
    # its n-gram reading only: the word network reads whole prompts, and on dev it picked a
    # Japanese product line over the instruction beside it
    user_input_model = replace(GuardModel.load(), word_cnn=None)
    out: list[tuple[dict[str, Any], list[str], str]] = []
    for row in rows:
        if row.get("kind") != "indirect" or int(row["label"]) != 1:
            continue
        lines = segments(row["text"])
        new = twins.differing(row)
        if not 0 < len(new) <= 3:  # more means the document itself is new: no clean twin
            new = [max(lines, key=lambda s: user_input_model.scan(s).score)]
        out.append((row, new, f"{row.get('category')}|{new[0][:60]}"))
    return out


def lookalike_lines(rows: Sequence[dict[str, Any]], hard: bool = False) -> frozenset[str]:
    """The lines of clean twins that their attacked twin does not have: an instruction meant
    for people ("please ignore last week's table"), standing where the attack stands; with
    ``hard``, those of the hardest twins (``HARD_TWIN``) instead, which talk about assistants
    or quote attacks to people and get their own weight (``ABOUT_AI_WEIGHT``)."""
    twins = _Twins(rows, label=1)
    out: set[str] = set()
    for row in rows:
        if row.get("kind") != "indirect" or int(row["label"]) != 0 \
                or (row.get("twin") == HARD_TWIN) != hard:
            continue
        new = twins.differing(row)
        if 0 < len(new) <= 3:
            out.update(new)
    return frozenset(out)


def _language(row: dict[str, Any]) -> str:
    """The language of one of Ownlight's own multilingual rows ("" for the shared sets)."""
    return str(row.get("lang") or "") if str(row.get("source", "")).startswith("ownlight") \
        else ""


def _features(texts: list[str]) -> Any:
    """n-grams, signals and the lexicon's reading of each line's words."""
    return matrix(texts, packaged())


def _fit(texts: list[str], labels: list[int], weights: list[float]) -> Any:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, class_weight="balanced", solver="liblinear", max_iter=2000)
    model.fit(_features(texts), np.array(labels), sample_weight=np.array(weights))
    return model


def _fit_on(positives: list[str], positive_weights: list[float],
            benign_lines: list[list[str]], line_weights: dict[str, float] | None = None,
            word_cnn: bool = False) -> tuple[Any, WordCNN | None]:
    """A model for prompt lines (weighted) against the lines of benign documents (weighted
    by ``line_weights``, 1 if not there), and (``word_cnn``) a word network trained on the
    same lines and weights."""
    negatives = [line for lines in benign_lines for line in lines]
    negative_weights = [(line_weights or {}).get(line, 1.0) for line in negatives]
    texts, labels = positives + negatives, [1] * len(positives) + [0] * len(negatives)
    weights = positive_weights + negative_weights
    network = None
    if word_cnn:
        from ownlight.guard.word_cnn_training import fit

        network = fit(texts, labels, weights)
    return _fit(texts, labels, weights), network


def _doc_score(model: tuple[Any, WordCNN | None], lines: list[str]) -> float:
    """The document's most suspicious line, read as ``GuardModel.scored_units`` reads it."""
    logistic, network = model
    features = _features(lines)
    logits = logistic.decision_function(features)
    if network is not None:
        signal_columns = slice(BUCKETS, BUCKETS + len(SIGNALS))
        signal_part = features[:, signal_columns] @ logistic.coef_[0][signal_columns]
        logits, _ = combined(logits, logits - signal_part, network.logits(lines), network.share)
    return float(1.0 / (1.0 + np.exp(-min(max(float(logits.max()), -40.0), 40.0))))


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    ranks = np.concatenate([pos, neg]).argsort().argsort() + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / max(len(pos) * len(neg), 1))


def chosen_threshold(benign: np.ndarray, tool: np.ndarray, hard_twin: np.ndarray,
                     target_fpr: float, tool_output_fpr: float) -> float:
    """The cross-validated threshold: at most ``target_fpr`` of benign documents other than
    tool outputs and the hardest twins flagged, and at most ``tool_output_fpr`` of tool
    outputs."""
    threshold = float(np.quantile(benign[~tool & ~hard_twin], 1 - target_fpr))
    if tool.any():
        threshold = max(threshold, float(np.quantile(benign[tool], 1 - tool_output_fpr)))
    return threshold


def save_cv(path: Path, pos: np.ndarray, sources: Sequence[str], languages: Sequence[str],
            neg: np.ndarray, tool: np.ndarray, about_ai: np.ndarray,
            clean_twin: np.ndarray) -> None:
    """The out-of-fold scores the threshold is chosen on: attacked documents with their
    source and language, benign documents with what kind they are (a tool output, a twin
    about AI, a clean twin or dev e-mail; none of these: another benign document)."""
    np.savez_compressed(path, pos=pos, pos_source=np.array(sources, dtype=str),
                        pos_language=np.array(languages, dtype=str), neg=neg, neg_tool=tool,
                        neg_about_ai=about_ai, neg_clean_twin=clean_twin)


def train_untrusted(rows: Sequence[dict[str, Any]], documents: Sequence[str],
                    target_fpr: float = 0.05, tool_outputs: Sequence[str] = (),
                    tool_output_fpr: float = 0.01, lookalike_weight: float = LOOKALIKE_WEIGHT,
                    about_ai_weight: float = ABOUT_AI_WEIGHT,
                    word_cnn: bool = False,
                    cv_out: Path | None = None) -> tuple[GuardModel, dict[str, Any]]:
    """``rows``: the guard's dev rows (direct ones are prompts, indirect ones documents).

    ``tool_outputs`` are benign documents too, with their own target: an agent reads dozens
    of them per task, so the threshold also keeps at most ``tool_output_fpr`` of them
    flagged (cross-validated like the rest). ``word_cnn``: average each line's logit with a
    word network's (``word_cnn``; needs torch), in every fold as in the final model.
    ``cv_out``: where to keep the out-of-fold document scores (``save_cv``), so that
    another rule for the threshold can be studied on them without training again (an hour
    on the full recipe).
    """
    attacked = attack_lines(rows)
    line_weights = {**{line: about_ai_weight for line in lookalike_lines(rows, hard=True)},
                    **{line: lookalike_weight for line in lookalike_lines(rows)}}
    clean_rows = [r for r in rows if r.get("kind") == "indirect" and int(r["label"]) == 0]
    emails = [r["text"] for r in clean_rows]
    direct = [r for r in rows if r.get("kind", "direct") == "direct"]
    prompt_texts = [r["text"][:600] for r in direct]
    prompt_weights = [SOURCE_WEIGHTS.get(str(r.get("source")), 1.0) for r in direct]

    groups = sorted({g for _, _, g in attacked})
    random.Random(0).shuffle(groups)
    fold_of = {g: i % FOLDS for i, g in enumerate(groups)}
    benign_docs = emails + list(documents) + list(tool_outputs)
    is_tool = np.arange(len(benign_docs)) >= len(benign_docs) - len(tool_outputs)
    benign_lines = [segments(doc) for doc in benign_docs]
    doc_ids = list(range(len(benign_lines)))
    random.Random(1).shuffle(doc_ids)
    doc_fold = {d: i % FOLDS for i, d in enumerate(doc_ids)}

    pos_scores: list[float] = []
    pos_sources: list[str] = []
    pos_languages: list[str] = []
    neg_scores: list[float] = []
    neg_docs: list[int] = []
    for fold in range(FOLDS):
        lines = [s for _, new, g in attacked if fold_of[g] != fold for s in new]
        readers = _fit_on(lines + prompt_texts, [ATTACK_WEIGHT] * len(lines) + prompt_weights,
                          [ls for d, ls in enumerate(benign_lines) if doc_fold[d] != fold],
                          line_weights, word_cnn)
        held = [row for row, _, g in attacked if fold_of[g] == fold]
        pos_scores += [_doc_score(readers, segments(r["text"])) for r in held]
        pos_sources += [str(r.get("source")) for r in held]
        pos_languages += [_language(r) for r in held]
        held_docs = [d for d in range(len(benign_lines)) if doc_fold[d] == fold]
        neg_scores += [_doc_score(readers, benign_lines[d]) for d in held_docs]
        neg_docs += held_docs

    pos, neg = np.array(pos_scores), np.array(neg_scores)
    tool = is_tool[np.array(neg_docs, dtype=int)]
    about_ai = np.array([d < len(clean_rows) and clean_rows[d].get("twin") == HARD_TWIN
                         for d in neg_docs], dtype=bool)
    threshold = chosen_threshold(neg, tool, about_ai, target_fpr, tool_output_fpr)
    if cv_out is not None:
        save_cv(cv_out, pos, pos_sources, pos_languages, neg, tool, about_ai,
                np.array(neg_docs) < len(emails))
    lines = [s for _, new, _ in attacked for s in new]
    final, network = _fit_on(lines + prompt_texts,
                             [ATTACK_WEIGHT] * len(lines) + prompt_weights,
                             benign_lines, line_weights, word_cnn)
    coef = final.coef_[0]
    signals_end = BUCKETS + len(SIGNALS)
    model = GuardModel(coef[:BUCKETS].astype(np.float32),
                       coef[BUCKETS:signals_end].astype(np.float32),
                       float(final.intercept_[0]), min(max(threshold, 0.05), THRESHOLD_CEILING),
                       unit="segment",
                       lexicon_weights=coef[signals_end:].astype(np.float32)
                       if len(coef) > signals_end else None, word_cnn=network)
    by_source = {src: round(_auc(pos[[p == src for p in pos_sources]], neg), 4)
                 for src in sorted(set(pos_sources))}
    # Ownlight's own pairs per language: attacks caught at 5% of that language's clean twins
    twin_language = np.array([_language(clean_rows[d]) if d < len(clean_rows) else ""
                              for d in neg_docs])
    by_language = {}
    for language in ("zh", "ja", "ru", "en"):
        attacks = pos[np.array(pos_languages) == language]
        twins = neg[twin_language == language]
        if len(attacks) and len(twins):
            cut = float(np.quantile(twins, 0.95))
            by_language[language] = round(float((attacks > cut).mean()), 4)
    return model, {
        "attack_lines": len(lines), "prompts": len(prompt_texts),
        "benign_documents": len(benign_lines), "word_cnn": network is not None,
        "segments": len(lines) + len(prompt_texts) + sum(map(len, benign_lines)),
        "cv_document_auc": round(_auc(pos, neg), 4), "cv_auc_by_source": by_source,
        "cv_tpr_at_5pct_of_own_twins_by_language": by_language,
        "cv_tpr_at_threshold": round(float((pos >= threshold).mean()), 4),
        "cv_tool_outputs_flagged": round(float((neg[tool] >= threshold).mean()), 4)
        if tool.any() else None,
        # the clean dev e-mails and clean twins (documents with a look-alike line for people)
        "cv_clean_twins_flagged": round(float(
            (neg[np.array(neg_docs) < len(emails)] >= threshold).mean()), 4),
        "cv_about_ai_twins_flagged": round(float((neg[about_ai] >= threshold).mean()), 4)
        if about_ai.any() else None,
        "threshold": round(model.threshold, 4), "cv_threshold": round(threshold, 4),
    }
