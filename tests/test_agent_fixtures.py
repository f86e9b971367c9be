"""What the pinned agent releases really send, parsed, rendered and passed through.

The bodies in tests/data/agents/ were recorded from ``codex exec`` and ``claude -p``
(tests/test_agent_clients.py runs the CLIs themselves). These fast tests hold Ownlight to
them: every field is in docs/clients.md, every body parses, an Anthropic upstream gets
Claude Code's request as it was sent (system blocks, ``cache_control``, betas), and
another protocol's upstream gets it without the fields it cannot take, named in
``x-ownlight-dropped``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from ownlight.protocol import anthropic as messages_wire
from ownlight.protocol import responses as responses_wire
from ownlight.protocol.model import Operation, ToolCall
from tests.support.agent_upstream import AgentUpstream
from tests.support.client_fields import messages_fields, recorded, responses_fields

DOCS = Path(__file__).resolve().parent.parent / "docs" / "clients.md"
CODEX = recorded("codex")
CLAUDE = recorded("claude")


def documented(section: str) -> set[str]:
    """The backticked names in the first column of one table of docs/clients.md."""
    text = DOCS.read_text()
    start = text.index(section)
    end = text.find("\n## ", start + 1)
    rows = [line for line in text[start:end if end > 0 else None].splitlines()
            if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`[^`]+`", row.split("|")[1])}


def test_every_field_the_agents_send_has_a_row_in_the_tables() -> None:
    codex = set().union(*(responses_fields(r["body"]) for r in CODEX))
    claude = set().union(*(messages_fields(r) for r in CLAUDE))
    assert codex - documented("## OpenAI Responses API") == set()
    assert claude - documented("## Anthropic Messages API") == set()
    assert "`tools[type=namespace]`" in codex and "`messages[role=system]`" in claude


@pytest.mark.parametrize("record", CODEX, ids=lambda r: str(len(r["body"]["input"])))
def test_codex_bodies_parse_with_namespaces_custom_and_hosted_tools(record: Any) -> None:
    call = responses_wire.parse_call(record["body"])
    request = call.request
    names = {t.name for t in request.tools}
    assert "exec_command" in names
    hosted = {t["type"] for t in request.hosted_tools}
    assert "web_search" in hosted
    if any(t.get("type") == "namespace" for t in record["body"]["tools"]):
        assert "multi_agent_v1__spawn_agent" in names
        item = call.output_item("c1", "multi_agent_v1__spawn_agent", "{}", "fc_1")
        assert item["name"] == "spawn_agent" and item["namespace"] == "multi_agent_v1"
    if "apply_patch" in names:
        item = call.output_item("c2", "apply_patch", '{"input": "*** Begin Patch\\n"}', "x")
        assert item["type"] == "custom_tool_call" and item["input"] == "*** Begin Patch\n"
    assert request.turns[0].role == "developer"


def test_namespaced_and_custom_calls_read_back_from_input_items() -> None:
    turns = responses_wire.items_to_turns([
        {"type": "function_call", "call_id": "a", "name": "spawn_agent",
         "namespace": "multi_agent_v1", "arguments": "{}"},
        {"type": "custom_tool_call", "call_id": "b", "name": "apply_patch", "input": "patch"},
        {"type": "custom_tool_call_output", "call_id": "b", "output": "done"},
    ])
    calls = [p for p in turns[0].parts if isinstance(p, ToolCall)]
    assert [c.name for c in calls] == ["multi_agent_v1__spawn_agent", "apply_patch"]
    assert calls[1].arguments == '{"input":"patch"}'
    assert turns[1].role == "tool"


@pytest.mark.parametrize("record", CLAUDE, ids=lambda r: str(len(r["body"]["messages"])))
def test_claude_code_reaches_an_anthropic_upstream_as_it_was_sent(record: Any) -> None:
    body = record["body"]
    request = messages_wire.parse_request(Operation.CHAT, body)
    request.betas = record["headers"]["anthropic-beta"].split(",")
    out = messages_wire.render_request(request)
    assert out["system"] == body["system"]  # blocks and cache_control markers intact
    for key in ("thinking", "context_management", "output_config", "metadata", "max_tokens"):
        assert out[key] == body[key]
    assert out["tools"] == body["tools"]
    sent_marks = [b.get("cache_control") for m in body["messages"]
                  if isinstance(m["content"], list) for b in m["content"]]
    out_marks = [b.get("cache_control") for m in out["messages"] for b in m["content"]]
    assert [m for m in sent_marks if m] == [m for m in out_marks if m]
    assert {m["role"] for m in out["messages"]} <= {"user", "assistant"}
    reminder = [b["text"] for m in out["messages"] for b in m["content"]
                if b.get("type") == "text" and b["text"].startswith("<system-reminder>")]
    assert reminder, "the mid-conversation system message travels as a system reminder"


def test_claude_code_to_an_openai_upstream_sends_no_user_and_drops_its_own_fields() -> None:
    from ownlight.protocol import carry
    from ownlight.protocol import openai as chat_wire

    request = messages_wire.parse_request(Operation.CHAT, CLAUDE[0]["body"])
    request.betas = ["context-management-2025-06-27"]
    body = chat_wire.render_request(request)
    assert "user" not in body and "thinking" not in body and "metadata" not in body
    dropped = carry.dropped(request, "openai")
    assert {"thinking", "context_management", "output_config", "metadata",
            "anthropic-beta", "content[].cache_control"} <= set(dropped)
    assert carry.dropped(request, "anthropic") == []


@pytest.fixture
def inside_upstream() -> Any:
    with AgentUpstream({"Read": {"file_path": "notes.txt"},
                        "multi_agent_v1__spawn_agent": {"message": "hi"}}) as upstream:
        yield upstream


def inside_gateway(gateway_factory: Any, upstream: AgentUpstream) -> Any:
    return gateway_factory(
        f'[models.claude-home]\nbackend = "anthropic"\nbase_url = "{upstream.url}"\n'
        'model = "claude-home"\ninside_domain = true\nretries = 0\n'
        f'[models.chat-home]\nbackend = "openai"\nbase_url = "{upstream.url}/v1"\n'
        'model = "chat-home"\ninside_domain = true\nretries = 0\n')


def test_a_running_gateway_forwards_claude_codes_betas_and_blocks(
        gateway_factory, inside_upstream) -> None:
    gateway = inside_gateway(gateway_factory, inside_upstream)
    record = CLAUDE[0]
    body = {**record["body"], "model": "claude-home"}
    headers = {k: v for k, v in record["headers"].items()
               if k.startswith("anthropic-") or k == "content-type"}
    headers["x-api-key"] = gateway.create_key()
    head = httpx.head(gateway.url + "/")
    assert head.status_code == 200
    with httpx.stream("POST", gateway.url + "/v1/messages?beta=true", json=body,
                      headers=headers, timeout=30) as answer:
        assert answer.status_code == 200, answer.read()
        events = answer.read().decode()
    assert "tool_use" in events and "x-ownlight-dropped" not in answer.headers
    _, _, sent_headers, sent = inside_upstream.received[-1]
    assert sent_headers["anthropic-beta"] == record["headers"]["anthropic-beta"]
    assert sent["system"] == record["body"]["system"]
    assert sent["metadata"] == record["body"]["metadata"]


def test_a_running_gateway_returns_a_namespaced_call_to_codex_as_declared(
        gateway_factory, inside_upstream) -> None:
    gateway = inside_gateway(gateway_factory, inside_upstream)
    inside_upstream.tools = {"multi_agent_v1__spawn_agent": {"message": "hi"}}
    record = next(r for r in CODEX if any(t["type"] == "namespace" for t in r["body"]["tools"]))
    body = {**record["body"], "model": "chat-home", "stream": False}
    answer = httpx.post(gateway.url + "/v1/responses", json=body, timeout=30,
                        headers={"authorization": f"Bearer {gateway.create_key()}"})
    assert answer.status_code == 200, answer.text
    call = answer.json()["output"][0]
    assert call["type"] == "function_call"
    assert (call["name"], call["namespace"]) == ("spawn_agent", "multi_agent_v1")
    dropped = answer.headers["x-ownlight-dropped"]
    assert "prompt_cache_key" in dropped and "tools[type=web_search]" in dropped
    sent = inside_upstream.bodies("/chat/completions")[-1]
    assert "prompt_cache_key" not in sent and "client_metadata" not in sent
    gateway.runtime.pipeline.ledger.flush()
    record = gateway.runtime.pipeline.ledger.query("status = 200")[-1]
    assert "prompt_cache_key" in record["dropped"]


def test_a_bad_responses_body_is_a_400_in_the_ledger(gateway_factory, inside_upstream) -> None:
    gateway = inside_gateway(gateway_factory, inside_upstream)
    answer = httpx.post(gateway.url + "/v1/responses", timeout=30,
                        json={"model": "chat-home", "input": [{"role": "user", "content": 7}]},
                        headers={"authorization": f"Bearer {gateway.create_key()}"})
    assert answer.status_code == 400 and "content" in answer.json()["error"]["message"]
    gateway.runtime.pipeline.ledger.flush()
    refused = gateway.runtime.pipeline.ledger.query("status = 400")
    assert [r["endpoint"] for r in refused] == ["/v1/responses"]


def test_dropped_names_cannot_break_the_header() -> None:
    from ownlight.protocol import carry
    from ownlight.protocol.model import Operation, Request

    request = Request(Operation.CHAT, "m", protocol="anthropic")
    request.extra = {"a\r\nX-Evil: 1": 1, "Ā": 2, "x" * 500: 3}
    request.hosted_tools = [{"type": "Ā"}]
    names = carry.dropped(request, "openai")
    header = ", ".join(names)
    assert header.isascii() and "\r" not in header and "\n" not in header
    assert max(map(len, names)) <= carry.MAX_NAME
