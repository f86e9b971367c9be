# ruff: noqa: F811 - the fixtures imported below are requested by name
"""MCP tools for Chat Completions through Ownlight's ``mcp`` extension field: the openai
SDK (``extra_body``) against a running Ownlight whose model is the scripted
OpenAI-compatible server of ``test_responses_mcp``, in front of the same real stdio MCP
server outside the domain, recording what it receives."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

from tests.test_responses_mcp import (  # noqa: F401 - fixtures shared with the Responses loop
    EMAIL,
    gateway,
    ledger,
    local,
    model,
    received,
    record,
    sdk,
)


def crm(**extra: Any) -> dict[str, Any]:
    return {"server_label": "crm", "require_approval": "never", **extra}


def test_the_model_calls_an_mcp_tool_through_chat_completions(gateway, record, model) -> None:
    before = len(received(record))
    arguments = json.dumps({"name": "ACME", "note": f"mail {EMAIL}"})
    completion = sdk(gateway, "chat-alice").chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": f"call crm__lookup {arguments}"}],
        extra_body={"mcp": [crm(allowed_tools=["lookup"])]})
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content.startswith("Tool said: Record for ACME")
    assert completion.choices[0].finish_reason == "stop"
    calls = (completion.model_extra or {})["mcp_calls"]
    assert [(c["server_label"], c["name"], c["status"]) for c in calls] == [
        ("crm", "lookup", "completed")]
    assert calls[0]["output"] == f"Record for ACME: mail {EMAIL}"  # restored for the caller
    made = received(record)[before:]
    assert [m["tool"] for m in made] == ["lookup"]
    assert EMAIL not in json.dumps(made)  # the outside server saw a placeholder
    first, second = model.received[-2:]
    assert {t["function"]["name"] for t in first["tools"]} == {"crm__lookup"}
    assert "mcp" not in first  # the extension field never reaches a backend
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool"]
    assert completion.usage is not None and completion.usage.total_tokens == 22  # 2 rounds
    rows = ledger(gateway, "chat-alice", 3)
    tool_rows = [r for r in rows if r.get("model") == "crm__lookup"]
    assert len(tool_rows) == 1 and tool_rows[0]["request_id"] == completion.id
    assert tool_rows[0]["pseudonymized"] == {"EMAIL_ADDRESS": 1}


def test_the_chat_stream_carries_the_calls_then_the_answer(gateway, record) -> None:
    before = len(received(record))
    stream = sdk(gateway, "chat-dave").chat.completions.create(
        model="scripted", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": 'call crm__lookup {"name": "Globex"}'}],
        extra_body={"mcp": [crm()]})
    chunks = list(stream)
    assert chunks[0].model_extra and chunks[0].model_extra["mcp_calls"][0]["name"] == "lookup"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Tool said: Record for Globex")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 22
    assert len({c.id for c in chunks}) == 1
    assert [m["tool"] for m in received(record)[before:]] == ["lookup"]


@pytest.mark.parametrize(("server", "param", "words"), [
    ({"server_label": "crm"}, "mcp[0].require_approval", "Responses API"),
    (crm(server_label="billing"), "mcp[0].server_label", "configured MCP server"),
    (crm(server_url="https://mcp.example.com/mcp"), "mcp[0].server_url", "admin configured"),
    (crm(authorization="Bearer x"), "mcp[0].authorization", "credentials"),
    ("crm", "mcp", "list of objects"),
])
def test_what_chat_completions_cannot_honour_is_refused(gateway, record, server, param,
                                                        words) -> None:
    before = len(received(record))
    who = f"chat-carol-{param.replace('[', '').replace(']', '').replace('.', '-')}"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway, who).chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "call crm__lookup {}"}],
            extra_body={"mcp": server if isinstance(server, str) else [server]})
    body: Any = caught.value.body
    assert caught.value.status_code == 400 and body["param"] == param
    assert words in body["message"]
    assert len(received(record)) == before  # nothing was called
    refused = ledger(gateway, who, 1)
    assert [(r["status"], r["operation"]) for r in refused] == [(400, "chat.mcp")]


def test_a_denied_tool_is_not_offered_to_the_model(gateway, record, model) -> None:
    """The access rules hold here too: staff may not use crm__admin_reset, so the model
    is never offered it and a call of it by name goes nowhere."""
    before = len(received(record))
    completion = sdk(gateway, "chat-erin").chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "call crm__admin_reset {}"}],
        extra_body={"mcp": [crm()]})
    assert "crm__admin_reset" not in {t["function"]["name"] for t in model.received[-1]["tools"]}
    assert completion.choices[0].message.content == "No tool to call."
    assert (completion.model_extra or {})["mcp_calls"] == []
    assert len(received(record)) == before


@pytest.mark.slow
def test_the_embedded_model_completes_an_mcp_call_through_chat(local, record) -> None:
    before = len(received(record))
    completion = sdk(local, "chat-local").chat.completions.create(
        model="local", max_tokens=60, temperature=0,
        messages=[{"role": "user", "content": "Look up the customer record for ACME."}],
        tool_choice={"type": "mcp", "server_label": "crm", "name": "lookup"},  # type: ignore[arg-type]
        extra_body={"mcp": [crm()]})
    call = (completion.model_extra or {})["mcp_calls"][0]
    assert call["name"] == "lookup" and call["status"] == "completed"
    arguments = json.loads(call["arguments"])
    schema = local.runtime.mcp.input_schema("crm__lookup")
    jsonschema.validate(arguments, schema)  # the grammar held the model to the schema
    made = received(record)[before:]
    assert made and made[0]["arguments"]["name"] == arguments["name"]
