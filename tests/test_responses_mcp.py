"""The Responses API's ``mcp`` tool: Ownlight runs the tool loop for a backend that only
knows function tools. The openai SDK talks to a running Ownlight whose model is a scripted
OpenAI-compatible server on 127.0.0.1 (it asks for the call the user's message names,
then answers with what the tool said), in front of a real stdio MCP server
(``tests/support/mcp_upstream``) outside the domain that records what it receives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from aiohttp import web
from openai.types.responses import (
    McpToolCallError,
    ResponseOutputMessage,
)
from openai.types.responses.response_output_item import (
    McpApprovalRequest,
    McpCall,
    McpListTools,
)

from tests.conftest import upstream_toml
from tests.support.gateway import RunningGateway, gateway_from
from tests.support.loopback import LoopbackServer

UPSTREAM = Path(__file__).parent / "support" / "mcp_upstream.py"
EMAIL = "maria.gonzalez@example.com"


class ScriptedModel(LoopbackServer):
    """Chat Completions that call the tool the user names (``call TOOL {json}``, one a
    line) and, once tool results are in, answer ``Tool said: ...`` with them."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(body)
        messages = body["messages"]
        last = messages[-1]
        message: dict[str, Any]
        if last["role"] == "tool":
            results = [m["content"] for m in messages if m["role"] == "tool"]
            text = " | ".join(r if isinstance(r, str) else json.dumps(r) for r in results)
            message, finish = {"role": "assistant", "content": f"Tool said: {text}"}, "stop"
        else:
            content = last["content"]
            text = content if isinstance(content, str) else " ".join(
                p.get("text", "") for p in content)
            offered = {t["function"]["name"] for t in body.get("tools") or []}
            calls = [line.split(" ", 2) for line in text.splitlines()
                     if line.startswith("call ")]
            calls = [c for c in calls if c[1] in offered]
            if calls:
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"call_{i}", "type": "function",
                     "function": {"name": c[1], "arguments": c[2] if len(c) > 2 else "{}"}}
                    for i, c in enumerate(calls)]}
                finish = "tool_calls"
            else:
                message, finish = {"role": "assistant", "content": "No tool to call."}, "stop"
        if body.get("stream"):
            return await self._stream(request, body["model"], message, finish)
        return web.json_response({
            "id": "chatcmpl-scripted", "object": "chat.completion",
            "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}})


    async def _stream(self, request: web.Request, model: str, message: dict[str, Any],
                      finish: str) -> web.StreamResponse:
        """The same answer as chunks: text three characters at a time, calls whole."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(delta: dict[str, Any], reason: str | None = None) -> None:
            chunk = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        await send({"role": "assistant", "content": ""})
        text = message.get("content") or ""
        for i in range(0, len(text), 3):
            await send({"content": text[i:i + 3]})
        for i, call in enumerate(message.get("tool_calls") or []):
            await send({"tool_calls": [{"index": i, **call}]})
        await send({}, finish)
        await response.write(b"data: [DONE]\n\n")
        return response


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "received.jsonl"


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, record: Path,
            model: ScriptedModel) -> Iterator[RunningGateway]:
    toml = f"""
[local]
enabled = false
[mcp]
max_tool_rounds = 3
[mcp.servers.crm]
command = ["{sys.executable}", "{UPSTREAM}", "{record}"]
inside_domain = false
timeout = 4.0
max_output_bytes = 100000
[[mcp.access]]
who = "*"
tools = ["crm__*"]
[[mcp.access]]
who = "group:staff"
tools = ["crm__admin_reset"]
effect = "deny"
""" + upstream_toml("scripted", model.url, "scripted", retries=0)
    with gateway_from(tmp_path_factory.mktemp("gw"), toml) as gw:
        hub = gw.runtime.mcp
        assert hub is not None
        deadline = time.monotonic() + 30
        while hub.upstreams["crm"].client is None:  # the stdio server is starting
            assert time.monotonic() < deadline, "the stdio MCP server did not come up"
            time.sleep(0.05)
        admin = gw.create_key("root", ("admin",))
        approved = httpx.post(gw.url + "/v1/admin/mcp/servers/crm/approve",
                              headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        assert approved.status_code == 200, approved.text
        yield gw


def sdk(gateway: RunningGateway, name: str) -> openai.OpenAI:
    return gateway.client(gateway.create_key(name, ("staff",)), timeout=60)


def received(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()
            if "tool" in json.loads(line)]


def crm(**extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "crm", "require_approval": "never", **extra}


def ledger(gateway: RunningGateway, principal: str, count: int) -> list[dict[str, Any]]:
    env = {**os.environ, "OWNLIGHT_DATA_DIR": str(gateway.config.data_dir)}
    deadline = time.monotonic() + 20
    while True:
        rows = json.loads(subprocess.run(
            [sys.executable, "-m", "ownlight.cli", "audit", "list", "--limit", "1000",
             "--json"], env=env, capture_output=True, text=True, timeout=120,
            check=True).stdout)
        mine = [r for r in rows if r.get("principal") == principal
                and r.get("kind") == "request"]
        if len(mine) >= count or time.monotonic() > deadline:
            return mine
        time.sleep(0.2)


def test_the_model_calls_an_mcp_tool_and_answers_with_its_result(gateway, record,
                                                                   model) -> None:
    """Listed tools, the call (pseudonymized on its way out, restored on its way back),
    then the model's answer: the documented items, parsed by the SDK's own types."""
    before = len(received(record))
    arguments = json.dumps({"name": "ACME", "note": f"mail {EMAIL}"})
    response = sdk(gateway, "loop-alice").responses.create(
        model="scripted", input=f"call crm__lookup {arguments}",
        tools=[crm(allowed_tools=["lookup", "fetch_page"])])  # type: ignore[list-item]
    listed, call, answer = response.output
    assert isinstance(listed, McpListTools) and listed.server_label == "crm"
    assert sorted(t.name for t in listed.tools) == ["fetch_page", "lookup"]
    assert isinstance(call, McpCall) and call.name == "lookup" and call.error is None
    assert json.loads(call.arguments) == {"name": "ACME", "note": f"mail {EMAIL}"}
    assert call.output == f"Record for ACME: mail {EMAIL}"  # restored for the caller
    assert isinstance(answer, ResponseOutputMessage)
    assert response.output_text.startswith("Tool said: Record for ACME")
    made = received(record)[before:]
    assert [m["tool"] for m in made] == ["lookup"]
    assert EMAIL not in json.dumps(made)  # the outside server saw a placeholder
    # the model saw the listed tools as functions, and never the raw value either
    assert {t["function"]["name"] for t in model.received[-1]["tools"]} == {
        "crm__lookup", "crm__fetch_page"}
    assert EMAIL not in json.dumps(model.received[-2:])
    rows = ledger(gateway, "loop-alice", 3)
    tool_rows = [r for r in rows if r.get("model") == "crm__lookup"]
    assert len(tool_rows) == 1 and tool_rows[0]["request_id"] == response.id
    assert tool_rows[0]["status"] == 200 and tool_rows[0]["pseudonymized"] == {"EMAIL_ADDRESS": 1}
    assert len([r for r in rows if r.get("model") == "scripted"]) == 2  # two model rounds
    again = sdk(gateway, "loop-alice")  # stored, as answered, for its owner
    assert again.responses.retrieve(response.id).output == response.output
    # a client keeping the conversation itself sends the items back: the model reads the
    # call and its result as its own function call, and nothing is called again
    history = [i.model_dump(exclude_none=True) for i in response.output]
    again.responses.create(model="scripted", tools=[crm()],  # type: ignore[list-item]
                           input=[*history, {"role": "user", "content": "Thanks."}])
    replayed = model.received[-1]["messages"]
    assert [m["role"] for m in replayed] == ["assistant", "tool", "assistant", "user"]
    assert replayed[1]["content"].startswith("Record for ACME")
    assert [m["tool"] for m in received(record)[before:]] == ["lookup"]


def test_a_failed_call_is_an_mcp_call_with_an_error_and_the_loop_goes_on(gateway) -> None:
    response = sdk(gateway, "loop-bob").responses.create(
        model="scripted", input="call crm__big {}", tools=[crm()])  # type: ignore[list-item]
    _, call, answer = response.output
    assert isinstance(call, McpCall) and call.name == "big" and call.output is None
    assert call.error is not None and call.status == "failed"
    error: Any = call.error
    assert isinstance(error, McpToolCallError.__args__[0].__args__[1])  # type: ignore[attr-defined]
    assert "Tool said: Error:" in response.output_text
    assert isinstance(answer, ResponseOutputMessage)


@pytest.mark.parametrize(("tool", "param", "words"), [
    (crm(server_label="billing"), "tools[0].server_label", "configured MCP server"),
    (crm(server_url="https://mcp.example.com/mcp"), "tools[0].server_url",
     "admin configured"),
    (crm(headers={"Authorization": "Bearer x"}), "tools[0].headers", "credentials"),
    (crm(require_approval="sometimes"), "tools[0].require_approval", "require_approval"),
])
def test_a_server_ownlight_does_not_know_is_refused(gateway, record, tool, param,
                                                    words) -> None:
    before = len(received(record))
    who = f"loop-carol-{param.rsplit('.', 1)[-1]}"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway, who).responses.create(model="scripted", input="call crm__lookup {}",
                                           tools=[tool])
    assert caught.value.status_code == 400
    body: Any = caught.value.body
    assert body["param"] == param and words in body["message"]
    assert len(received(record)) == before  # nothing was called
    refused = ledger(gateway, who, 1)  # and the refusal is on record
    assert [(r["status"], r["operation"]) for r in refused] == [(400, "responses.mcp")]


def test_the_stream_has_the_documented_mcp_events(gateway, record) -> None:
    before = len(received(record))
    arguments = json.dumps({"name": "Globex"})
    stream = sdk(gateway, "loop-dave").responses.create(
        model="scripted", input=f"call crm__lookup {arguments}", tools=[crm()],  # type: ignore[list-item]
        stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for expected in ["response.mcp_list_tools.in_progress", "response.mcp_list_tools.completed",
                     "response.mcp_call.in_progress", "response.mcp_call_arguments.delta",
                     "response.mcp_call_arguments.done", "response.mcp_call.completed",
                     "response.output_text.delta"]:
        assert expected in kinds
    assert kinds.index("response.mcp_call.completed") < kinds.index("response.output_text.delta")
    assert kinds.count("response.output_text.delta") > 3  # passed on as the model writes
    assert {e.output_index for e in events if e.type == "response.output_text.delta"} == {2}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [type(i) for i in done] == [McpListTools, McpCall, ResponseOutputMessage]
    final: Any = events[-1]
    assert final.response.output_text.startswith("Tool said: Record for Globex")
    assert [m["tool"] for m in received(record)[before:]] == ["lookup"]


def test_a_call_that_needs_approval_waits_for_the_client(gateway, record) -> None:
    """``require_approval`` (OpenAI's default ``always``): the response stops at an
    ``mcp_approval_request``; nothing is called until the client approves it."""
    client = sdk(gateway, "loop-erin")
    before = len(received(record))
    arguments = json.dumps({"name": "Initech"})
    tool = {"type": "mcp", "server_label": "crm"}
    first = client.responses.create(model="scripted", input=f"call crm__lookup {arguments}",
                                    tools=[tool])  # type: ignore[list-item]
    asked = first.output[-1]
    assert isinstance(asked, McpApprovalRequest) and asked.name == "lookup"
    assert len(received(record)) == before  # not called yet
    second = client.responses.create(
        model="scripted", previous_response_id=first.id, tools=[tool],  # type: ignore[list-item]
        input=[{"type": "mcp_approval_response", "approval_request_id": asked.id,
                "approve": True}])
    call = next(i for i in second.output if isinstance(i, McpCall))
    assert call.approval_request_id == asked.id and call.output == "Record for Initech: "
    assert second.output_text.startswith("Tool said: Record for Initech")
    assert [m["tool"] for m in received(record)[before:]] == ["lookup"]
    declined = client.responses.create(model="scripted", input=f"call crm__lookup {arguments}",
                                       tools=[tool])  # type: ignore[list-item]
    no = client.responses.create(
        model="scripted", previous_response_id=declined.id, tools=[tool],  # type: ignore[list-item]
        input=[{"type": "mcp_approval_response",
                "approval_request_id": declined.output[-1].id, "approve": False}])
    assert not any(isinstance(i, McpCall) for i in no.output)
    assert "declined" in no.output_text
    assert [m["tool"] for m in received(record)[before:]] == ["lookup"]  # still one


def test_a_forced_mcp_tool_is_forced_once(gateway, record, model) -> None:
    """``tool_choice: {"type": "mcp", ...}`` forces the first round's call only."""
    response = sdk(gateway, "loop-frank").responses.create(
        model="scripted", input='call crm__lookup {"name": "Umbrella"}', tools=[crm()],  # type: ignore[list-item]
        tool_choice={"type": "mcp", "server_label": "crm", "name": "lookup"})
    assert [i.type for i in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    first, second = model.received[-2:]
    assert first["tool_choice"] == {"type": "function", "function": {"name": "crm__lookup"}}
    assert second.get("tool_choice") in (None, "auto")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway, "loop-frank").responses.create(
            model="scripted", input="hello", tools=[crm()],  # type: ignore[list-item]
            tool_choice={"type": "mcp", "server_label": "crm", "name": "admin_reset"})
    assert caught.value.body["param"] == "tool_choice.name"  # type: ignore[index]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, record: Path) -> Iterator[RunningGateway]:
    toml = f"""
[knowledge]
enabled = false
[mcp]
max_tool_rounds = 2
[mcp.servers.crm]
command = ["{sys.executable}", "{UPSTREAM}", "{record}"]
timeout = 4.0
[[mcp.access]]
who = "*"
tools = ["crm__lookup"]
"""
    with gateway_from(tmp_path_factory.mktemp("gw-local"), toml) as gw:
        hub = gw.runtime.mcp
        assert hub is not None
        deadline = time.monotonic() + 30
        while hub.upstreams["crm"].client is None:
            assert time.monotonic() < deadline, "the stdio MCP server did not come up"
            time.sleep(0.05)
        admin = gw.create_key("root", ("admin",))
        approved = httpx.post(gw.url + "/v1/admin/mcp/servers/crm/approve",
                              headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        assert approved.status_code == 200, approved.text
        yield gw


@pytest.mark.slow
def test_the_embedded_model_completes_an_mcp_call(local, record) -> None:
    """The default local alias calls the tool with arguments its schema allows (the
    grammar constrains them, as for any function tool), and Ownlight makes the call."""
    before = len(received(record))
    response = sdk(local, "loop-local").responses.create(
        model="local", input="Look up the customer record for ACME.", max_output_tokens=60,
        temperature=0, tools=[crm()],  # type: ignore[list-item]
        tool_choice={"type": "mcp", "server_label": "crm", "name": "lookup"})
    listed = response.output[0]
    assert isinstance(listed, McpListTools) and [t.name for t in listed.tools] == ["lookup"]
    call = response.output[1]
    assert isinstance(call, McpCall) and call.name == "lookup" and call.error is None
    arguments = json.loads(call.arguments)
    jsonschema.validate(arguments, listed.tools[0].input_schema)  # type: ignore[arg-type]
    assert call.output == f"Record for {arguments['name']}: {arguments.get('note', '')}"
    made = received(record)[before:]
    assert made and made[0] == {"tool": "lookup", "arguments": {
        "name": arguments["name"], "note": arguments.get("note", "")}}
    assert response.status in ("completed", "incomplete")


@pytest.mark.slow
def test_the_embedded_model_streams_an_mcp_call(local, record) -> None:
    before = len(received(record))
    events = list(sdk(local, "loop-local-stream").responses.create(
        model="local", input="Look up the customer record for Globex.", max_output_tokens=60,
        temperature=0, tools=[crm()], stream=True,  # type: ignore[list-item]
        tool_choice={"type": "mcp", "server_label": "crm", "name": "lookup"}))
    kinds = [e.type for e in events]
    assert "response.mcp_call.completed" in kinds
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [m["tool"] for m in received(record)[before:]][:1] == ["lookup"]
