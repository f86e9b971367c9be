"""Complexity router: scores, persistence, and the ``router`` CLI on dev data (never test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ownlight.routing.complexity import ComplexityRouter
from ownlight.routing.router_cli import router_group
from ownlight.routing.training import cpt, load_rows, random_share_for_quality, train

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "routing" / "dev.jsonl"
needs_dev = pytest.mark.skipif(not DEV.exists(), reason="shared/eval/routing/dev.jsonl missing")

PROMPTS = [
    "What is 2 + 2?",
    "Janet has 3 apples and buys 12.5% more each week for 7 weeks at $1.25 each. How much?",
    "Which of the following is NOT a prime?\nA. 2\nB. 3\nC. 9\nD. 5\nAnswer:",
    "",
    "x" * 20_000,
]


@pytest.fixture(scope="module")
def router() -> ComplexityRouter:
    return ComplexityRouter.load()


def test_scores_are_probabilities_and_deterministic(router: ComplexityRouter) -> None:
    first = router.score_many(PROMPTS)
    assert all(0.0 <= s <= 1.0 for s in first)
    assert first == router.score_many(PROMPTS) == ComplexityRouter.load().score_many(PROMPTS)
    assert first[0] == router.score(PROMPTS[0])


def test_save_load_round_trip(router: ComplexityRouter, tmp_path: Path) -> None:
    path = tmp_path / "r.npz"
    router.save(path)
    assert ComplexityRouter.load(path).score_many(PROMPTS) == pytest.approx(
        router.score_many(PROMPTS), abs=1e-6
    )


def test_metrics_on_known_rankings() -> None:
    weak = [False, False, True, True]
    strong = [True, True, True, True]
    assert cpt([0.9, 0.8, 0.1, 0.2], weak, strong, 0.5) == pytest.approx(0.25)
    assert cpt([0.1, 0.2, 0.9, 0.8], weak, strong, 0.5) == pytest.approx(0.75)
    # All tied: ties are split evenly, which is random routing in expectation.
    assert cpt([0.5] * 4, weak, strong, 0.5) == pytest.approx(0.5)
    assert random_share_for_quality(weak, strong, 0.95) == pytest.approx(0.9)


@needs_dev
def test_eval_cli_on_dev_beats_random() -> None:
    result = CliRunner().invoke(router_group, ["eval", "--data", str(DEV), "--json"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.output)
    # The packaged router was trained on dev, so these are in-sample figures: a sanity
    # bound, not the quality claim (that is bench/router.py on the test split).
    for task in ("mmlu", "gsm8k", "overall"):
        assert results[task]["router"]["cpt50"] < 0.35
        assert results[task]["router"]["cpt80"] < results[task]["random"]["cpt80"]
        assert results[task]["random"]["cpt50"] == 0.5


@needs_dev
def test_train_cli_writes_loadable_router(tmp_path: Path) -> None:
    rows = load_rows(DEV)
    data = tmp_path / "slice.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[::20]))
    out = tmp_path / "small.npz"
    result = CliRunner().invoke(
        router_group, ["train", "--data", str(data), "--out", str(out), "--holdout", "0.25"]
    )
    assert result.exit_code == 0, result.output
    assert "held-out quality" in result.output and "CPT(50%)" in result.output
    small = ComplexityRouter.load(out)
    assert all(0.0 <= s <= 1.0 for s in small.score_many(PROMPTS))


def test_train_refuses_one_class() -> None:
    rows = [{"prompt": "hi", "weak_correct": True, "strong_correct": True}] * 3
    with pytest.raises(ValueError):
        train(rows)


def test_score_cli_json_lines_round_trip(router: ComplexityRouter) -> None:
    lines = [json.dumps({"id": i, "prompt": p}) for i, p in enumerate(PROMPTS)]
    result = CliRunner().invoke(router_group, ["score"], input="\n".join(lines) + "\n\n")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.output.splitlines()]
    assert [o["id"] for o in out] == list(range(len(PROMPTS)))
    for o, prompt in zip(out, PROMPTS, strict=True):
        assert o["score"] == pytest.approx(router.score(prompt), abs=1e-6)


def test_score_cli_rejects_bad_line() -> None:
    result = CliRunner().invoke(router_group, ["score"], input='{"id": 1}\n')
    assert result.exit_code != 0
    assert "line 1" in result.output
