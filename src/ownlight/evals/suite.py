"""Eval suites: JSON Lines files of prompts, each with the check its answer must pass.

One item a line (docs/models.md shows how to write one)::

    {"id": "arith-en-1", "lang": "en", "category": "arithmetic",
     "prompt": "What is 17 + 25? Answer with the number only.",
     "check": {"type": "numeric", "value": 42}}

Optional fields: ``system`` (a system message) and ``max_tokens`` (default 64). The
suite ``default`` ships with Ownlight; any other name is a path. A suite's sha256 is
stored with its scores, so scores are only ever compared on the same items.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ownlight.errors import ConfigError
from ownlight.evals.checks import check_spec_problem

DEFAULT_MAX_TOKENS = 64


@dataclass(frozen=True)
class EvalItem:
    id: str
    prompt: str
    check: dict[str, Any]
    category: str = "general"
    lang: str = "en"
    system: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS


@dataclass(frozen=True)
class Suite:
    name: str
    sha256: str
    items: list[EvalItem] = field(default_factory=list)


def load_suite(name: str) -> Suite:
    """``default`` (shipped with Ownlight) or a path to a .jsonl file."""
    if name == "default":
        text = (resources.files("ownlight") / "data" / "evals" / "default.jsonl").read_text(
            encoding="utf-8")
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"eval suite {name!r} is neither 'default' nor a file")
        text = path.read_text(encoding="utf-8")
        name = path.stem
    return Suite(name, hashlib.sha256(text.encode()).hexdigest(), _items(text, name))


def _items(text: str, name: str) -> list[EvalItem]:
    items: list[EvalItem] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"suite {name}, line {number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("prompt"), str):
            raise ConfigError(f"{where}: an item needs a prompt")
        problem = check_spec_problem(raw.get("check"))
        if problem:
            raise ConfigError(f"{where}: {problem}")
        item_id = str(raw.get("id") or f"{name}-{number}")
        if item_id in seen:
            raise ConfigError(f"{where}: id {item_id!r} is used twice")
        seen.add(item_id)
        items.append(EvalItem(
            item_id, raw["prompt"], raw["check"], str(raw.get("category", "general")),
            str(raw.get("lang", "en")), raw.get("system"),
            int(raw.get("max_tokens", DEFAULT_MAX_TOKENS))))
    if not items:
        raise ConfigError(f"suite {name} has no items")
    return items
