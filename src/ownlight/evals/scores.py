"""Stored eval scores, the pairwise comparison of two versions, and the promotion gate.

The pairwise comparison is item by item on the same suite: a candidate *wins* an item
the current version fails, *loses* one the current version passes, and ties the rest.
The gate lets a candidate through when its score is at most ``lifecycle.eval_margin``
below the current version's; otherwise it refuses, with the two scores, the categories
that fell, and the items lost.

Runs are kept where the registry is (``store.base.RegistryDatabase``): with ``[store]
url``, a run recorded on one machine is listed, and gates a promotion, on every other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ownlight.evals.runner import EvalRun, ItemResult
from ownlight.evals.suite import Suite
from ownlight.models.registry import ModelVersion
from ownlight.store.base import RegistryDatabase


def store_run(store: RegistryDatabase, name: str, version: int, run: EvalRun) -> int:
    with store.transaction() as db:
        cursor = db.execute(
            "INSERT INTO eval_runs (suite, suite_sha256, name, version, at, passed, total, "
            "score, results) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (run.suite, run.suite_sha256, name, version,
             datetime.now(UTC).isoformat(timespec="seconds"), run.passed, len(run.results),
             run.score, json.dumps([r.__dict__ for r in run.results], ensure_ascii=False)))
        return int(cursor.fetchone()[0])


def latest_run(store: RegistryDatabase, name: str, version: int,
               suite_sha256: str | None = None) -> EvalRun | None:
    """The newest stored run of a version (on one suite, when its sha256 is given)."""
    sql = ("SELECT suite, suite_sha256, results FROM eval_runs WHERE name = ? AND version = ?"
           + (" AND suite_sha256 = ?" if suite_sha256 else "") + " ORDER BY id DESC LIMIT 1")
    params: tuple[object, ...] = (name, version, suite_sha256) if suite_sha256 \
        else (name, version)
    rows = store.query(sql, params)
    if not rows:
        return None
    suite, sha, results = rows[0]
    return EvalRun(str(suite), str(sha), f"{name}@{version}",
                   [ItemResult(**r) for r in json.loads(str(results))])


def runs(store: RegistryDatabase, name: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT id, suite, name, version, at, passed, total, score FROM eval_runs"
    rows = store.query(sql + (" WHERE name = ?" if name else "") + " ORDER BY id",
                       (name,) if name else ())
    keys = ("id", "suite", "name", "version", "at", "passed", "total", "score")
    return [dict(zip(keys, r, strict=True)) for r in rows]


@dataclass
class Comparison:
    candidate: EvalRun
    current: EvalRun
    wins: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    ties: int = 0

    @property
    def delta(self) -> float:
        return self.candidate.score - self.current.score

    def fallen_categories(self) -> dict[str, str]:
        now, before = self.candidate.by("category"), self.current.by("category")
        return {c: f"{before[c][0]}/{before[c][1]} -> {p}/{t}"
                for c, (p, t) in now.items() if c in before and p < before[c][0]}

    def as_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate.model, "current": self.current.model,
                "candidate_score": round(self.candidate.score, 4),
                "current_score": round(self.current.score, 4),
                "delta": round(self.delta, 4), "wins": self.wins, "losses": self.losses,
                "ties": self.ties, "fallen_categories": self.fallen_categories()}


def compare(candidate: EvalRun, current: EvalRun) -> Comparison:
    before = {r.id: r.passed for r in current.results}
    comparison = Comparison(candidate, current)
    for r in candidate.results:
        if r.id not in before or r.passed == before[r.id]:
            comparison.ties += 1
        elif r.passed:
            comparison.wins.append(r.id)
        else:
            comparison.losses.append(r.id)
    return comparison


def gate(comparison: Comparison, margin: float) -> str | None:
    """Why the candidate may not be promoted (None: it may)."""
    if comparison.delta >= -margin - 1e-9:
        return None
    c = comparison
    fallen = "; ".join(f"{k} {v}" for k, v in c.fallen_categories().items()) or "none"
    return (f"{c.candidate.model} scores {c.candidate.score:.1%} on suite "
            f"{c.candidate.suite}, {-c.delta:.1%} below {c.current.model} "
            f"({c.current.score:.1%}); the margin allows {margin:.1%} (lifecycle.eval_margin). "
            f"Categories that fell: {fallen}. Items lost ({len(c.losses)}): "
            f"{', '.join(c.losses[:10])}{' ...' if len(c.losses) > 10 else ''}; "
            f"items won: {len(c.wins)}.")


def gate_refusal(store: RegistryDatabase, suite: Suite, candidate: ModelVersion,
                 current: int | None, margin: float) -> tuple[str | None, dict[str, Any]]:
    """The gate on stored scores: why not (None: go ahead), and the evidence either way."""
    if current is None:
        return None, {"note": "nothing serves yet: no version to compare with"}
    name = candidate.name
    mine = latest_run(store, name, candidate.version, suite.sha256)
    theirs = latest_run(store, name, current, suite.sha256)
    missing = [ref for ref, run in ((candidate.ref, mine), (f"{name}@{current}", theirs))
               if run is None]
    if missing or mine is None or theirs is None:
        return (f"no stored score on suite {suite.name} for {', '.join(missing)}; run "
                f"`ownlight eval run {suite.name} --model {candidate.ref}` first"), {}
    comparison = compare(mine, theirs)
    evidence = comparison.as_dict() | {"suite": suite.name, "margin": margin}
    return gate(comparison, margin), evidence
