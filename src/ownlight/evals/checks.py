"""The checks an eval item applies to a model's answer: each says pass or fail, and why.

    exact        the answer, trimmed, is the value ({"value": "Paris", "case": false})
    contains     the answer contains a value ({"value": ...}, {"all": [...]}, {"any": [...]})
    regex        a pattern matches somewhere ({"pattern": "^\\d{4}-\\d{2}-\\d{2}$"})
    json_schema  the first JSON value in the answer validates ({"schema": {...}})
    numeric      the last number in the answer equals a value ({"value": 42, "tolerance": 0})

Answers are NFKC-normalised first, so full-width digits and letters (common in Chinese
and Japanese text) compare as their ASCII forms.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema

Verdict = tuple[bool, str]
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
_TRIM = " \t\n\r.。!！?？\"'`"


def _fold(text: str, case: bool) -> str:
    text = unicodedata.normalize("NFKC", text)
    return text if case else text.casefold()


def exact(spec: Mapping[str, Any], answer: str) -> Verdict:
    case = bool(spec.get("case", False))
    want = _fold(str(spec["value"]), case).strip(_TRIM)
    got = _fold(answer, case).strip(_TRIM)
    return got == want, f"expected exactly {spec['value']!r}"


def contains(spec: Mapping[str, Any], answer: str) -> Verdict:
    case = bool(spec.get("case", False))
    text = _fold(answer, case)
    if "all" in spec:
        missing = [v for v in spec["all"] if _fold(str(v), case) not in text]
        return not missing, f"missing {missing!r}"
    values = spec["any"] if "any" in spec else [spec["value"]]
    found = any(_fold(str(v), case) in text for v in values)
    return found, f"none of {list(values)!r} found"


def regex(spec: Mapping[str, Any], answer: str) -> Verdict:
    flags = re.IGNORECASE if "i" in str(spec.get("flags", "")) else 0
    flags |= re.MULTILINE if "m" in str(spec.get("flags", "")) else 0
    text = unicodedata.normalize("NFKC", answer).strip()
    return re.search(spec["pattern"], text, flags) is not None, \
        f"no match for /{spec['pattern']}/"


def json_schema(spec: Mapping[str, Any], answer: str) -> Verdict:
    value = first_json(answer)
    if value is None:
        return False, "no JSON value in the answer"
    try:
        jsonschema.validate(value, spec["schema"])
    except jsonschema.ValidationError as exc:
        return False, f"JSON does not match the schema: {exc.message}"
    return True, ""


def numeric(spec: Mapping[str, Any], answer: str) -> Verdict:
    # the last number: "17 + 25 = 42" and "the answer is 42" both end with the result
    text = unicodedata.normalize("NFKC", answer)
    matches = _NUMBER.findall(text)
    if not matches:
        return False, "no number in the answer"
    raw = found = matches[-1]
    # "1,234" is a thousands separator; "3,5" a decimal comma
    raw = raw.replace(",", "") if re.search(r",\d{3}(?!\d)", raw) else raw.replace(",", ".")
    try:
        got = float(raw)
    except ValueError:
        return False, f"{found!r} is not a number"
    want, tolerance = float(spec["value"]), float(spec.get("tolerance", 0))
    return abs(got - want) <= tolerance, f"expected {spec['value']}, got {found}"


def first_json(answer: str) -> Any:
    """The first JSON object or array in a text (code fences and prose around it allowed)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[{\[]", answer):
        try:
            value, _ = decoder.raw_decode(answer, match.start())
        except json.JSONDecodeError:
            continue
        return value
    return None


CHECKS: dict[str, Callable[[Mapping[str, Any], str], Verdict]] = {
    "exact": exact, "contains": contains, "regex": regex, "json_schema": json_schema,
    "numeric": numeric,
}


def run_check(spec: Mapping[str, Any], answer: str) -> Verdict:
    passed, why = CHECKS[spec["type"]](spec, answer)
    return passed, "" if passed else why


def check_spec_problem(spec: Any) -> str | None:
    """What is wrong with a check as written in a suite (None: it is usable)."""
    if not isinstance(spec, dict) or spec.get("type") not in CHECKS:
        return f"check must be an object with type one of {', '.join(CHECKS)}"
    needs = {"exact": ("value",), "regex": ("pattern",), "json_schema": ("schema",),
             "numeric": ("value",)}.get(spec["type"], ())
    missing = [k for k in needs if k not in spec]
    if spec["type"] == "contains" and not ({"value", "all", "any"} & set(spec)):
        missing = ["value, all or any"]
    return f"{spec['type']} check needs {', '.join(missing)}" if missing else None
