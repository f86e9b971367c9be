"""Running a suite against one model version: each item asked once, greedily, and checked.

Items are sent to the version's backend directly as canonical chat requests with
temperature 0, so a run is repeatable and measures the model, not the gateway's
routing or policy around it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ownlight.backends.base import Backend, Operation
from ownlight.errors import OwnlightError
from ownlight.evals.checks import run_check
from ownlight.evals.suite import EvalItem, Suite
from ownlight.protocol import openai as wire
from ownlight.protocol.model import Response


@dataclass(frozen=True)
class ItemResult:
    id: str
    category: str
    lang: str
    passed: bool
    answer: str
    reason: str = ""


@dataclass
class EvalRun:
    suite: str
    suite_sha256: str
    model: str  # NAME@VERSION
    results: list[ItemResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def score(self) -> float:
        return self.passed / len(self.results) if self.results else 0.0

    def by(self, key: str) -> dict[str, tuple[int, int]]:
        """(passed, total) per category or per lang."""
        out: dict[str, tuple[int, int]] = {}
        for r in self.results:
            passed, total = out.get(getattr(r, key), (0, 0))
            out[getattr(r, key)] = (passed + r.passed, total + 1)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "suite_sha256": self.suite_sha256, "model": self.model,
                "score": round(self.score, 4), "passed": self.passed,
                "total": len(self.results), "by_category": self.by("category"),
                "by_lang": self.by("lang"), "results": [asdict(r) for r in self.results]}


async def run_suite(backend: Backend, suite: Suite, model: str,
                    on_item: Callable[[ItemResult], None] | None = None) -> EvalRun:
    run = EvalRun(suite.name, suite.sha256, model)
    for item in suite.items:
        result = await _run_item(backend, item)
        run.results.append(result)
        if on_item is not None:
            on_item(result)
    return run


async def _run_item(backend: Backend, item: EvalItem) -> ItemResult:
    messages = [{"role": "system", "content": item.system}] if item.system else []
    messages.append({"role": "user", "content": item.prompt})
    request = wire.parse_request(Operation.CHAT, {
        "model": backend.entry.alias, "messages": messages, "temperature": 0,
        "max_tokens": item.max_tokens, "seed": 0})
    try:
        response = await backend.execute(request)
    except OwnlightError as exc:
        return ItemResult(item.id, item.category, item.lang, False, "", f"error: {exc.message}")
    assert isinstance(response, Response)
    answer = (response.choices[0].text or "") if response.choices else ""
    passed, reason = run_check(item.check, answer)
    return ItemResult(item.id, item.category, item.lang, passed, answer.strip(), reason)
