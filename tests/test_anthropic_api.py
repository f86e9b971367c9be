"""Ownlight speaks the Anthropic Messages API on both sides, driven by the real SDKs.

Claude Code and the ``anthropic`` SDK reach ``/v1/messages`` in front of any backend,
and an OpenAI client reaches an Anthropic upstream through the ``anthropic`` backend.
Whichever way the protocols are crossed, the privacy shield must hold: placeholders in
every body that leaves (text, system, tool calls, tool results, tool schemas), real
values back in answers and streams, restricted values refused with nothing sent. Errors
keep each protocol's shape and status, and the upstream gets a Messages body the real
API would accept (the fake in ``tests/support/fake_anthropic.py`` checks it as it does).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pytest

from tests.conftest import upstream_toml
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import RunningGateway, gateway_from
from tests.support.inprocess import InProcessGateway

EMAIL = "maria.gonzalez@example.com"
PERSON = "Maria Gonzalez"
SSN = "536-22-1234"
CARD = "4111 1111 1111 1111"
UPSTREAM_KEY = "sk-ant-inline-secret"
MAIL_SCHEMA = {"type": "object", "properties": {
    "to": {"type": "string", "maxLength": 40}, "text": {"type": "string", "maxLength": 60}},
    "required": ["to", "text"]}
MAIL = {"name": "send_mail", "description": "Send an e-mail", "input_schema": MAIL_SCHEMA}
WEATHER_SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 40},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"]}
WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "input_schema": WEATHER_SCHEMA}
SCHEMAS = {"send_mail": MAIL_SCHEMA, "get_weather": WEATHER_SCHEMA}

SdkFactory = Callable[..., anthropic.Anthropic]


@pytest.fixture(autouse=True)
def no_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads ANTHROPIC_* settings; a developer's must not steer these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("ANTHROPIC_"):
            monkeypatch.delenv(name)


@pytest.fixture
def sdk() -> Iterator[SdkFactory]:
    """``anthropic.Anthropic`` clients for a gateway (or any base URL), closed at the end."""
    made: list[anthropic.Anthropic] = []

    def make(target: RunningGateway | str, key: str | None = None,
             **kwargs: Any) -> anthropic.Anthropic:
        if isinstance(target, RunningGateway):
            url = target.url
            if key is None and "auth_token" not in kwargs and "default_headers" not in kwargs:
                key = target.create_key()
        else:
            url = target
        client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def fake_claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as upstream:
        yield upstream


def sent(received: list[dict[str, Any]]) -> str:
    return json.dumps(received, ensure_ascii=False)


def assert_nothing_raw(received: list[dict[str, Any]], *values: str) -> None:
    body = sent(received)
    assert received, "nothing reached the upstream"
    for value in values or (EMAIL, PERSON):
        assert value not in body, value


# == the anthropic SDK against the fake Anthropic upstream itself ==========================


def test_the_fake_anthropic_upstream_talks_to_the_real_sdk(fake_claude, sdk) -> None:
    client = sdk(fake_claude.url, key="sk-test")
    reply = client.messages.create(model="fake-echo", max_tokens=20,
                                   messages=[{"role": "user", "content": "hi there"}])
    assert reply.content[0].type == "text" and reply.content[0].text == "You said: hi there"
    assert reply.stop_reason == "end_turn"
    events = list(client.messages.create(model="fake-echo", max_tokens=20, stream=True,
                                         messages=[{"role": "user", "content": "hello"}]))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert deltas[0] == "You" and "".join(deltas) == "You said: hello"
    with client.messages.stream(model="fake-tools", max_tokens=20, tools=[MAIL],
                                messages=[{"role": "user", "content": 'say "x"'}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"text": 'say "x"'}
    assert fake_claude.headers[0]["anthropic-version"]
    for model, error in (("fake-500", anthropic.InternalServerError),
                         ("fake-529", anthropic.APIStatusError)):
        with pytest.raises(error) as caught:
            client.messages.create(model=model, max_tokens=5,
                                   messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == (500 if model == "fake-500" else 529)
        assert caught.value.body["type"] == "error"  # type: ignore[index]
    refused = httpx.post(fake_claude.url + "/v1/messages", json={"model": "fake-echo"})
    assert refused.status_code == 400  # no anthropic-version, no max_tokens: the real API refuses


# == /v1/messages in front of an OpenAI-compatible cloud upstream ==========================


# These use HTTP only as a transport: the fast tier serves the app in-process and the
# SDK is ``anthropic.AsyncAnthropic`` over ``httpx.ASGITransport``.


@pytest.fixture
async def cloud_gateway(app_gateway_factory, cloud: FakeUpstream) -> InProcessGateway:
    return await app_gateway_factory(
        upstream_toml("cloud", cloud.url, "fake-echo", retries=0)
        + upstream_toml("cloud-tools", cloud.url, "fake-tools", retries=0))


@pytest.mark.anyio
async def test_create_restores_text_and_sends_placeholders(cloud_gateway, cloud) -> None:
    prompt = f"Write to {EMAIL} about {PERSON}."
    reply = await cloud_gateway.anthropic().messages.create(
        model="cloud", max_tokens=64, system=f"You assist {PERSON}.",
        metadata={"user_id": EMAIL}, messages=[{"role": "user", "content": prompt}])
    assert reply.type == "message" and reply.role == "assistant"
    assert reply.id.startswith("msg_")
    assert [b.type for b in reply.content] == ["text"]
    assert reply.content[0].text == f"You said: {prompt}"  # type: ignore[union-attr]
    assert reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens == 7 and reply.usage.output_tokens == 4
    assert_nothing_raw(cloud.received)
    body = sent(cloud.received)
    assert "<EMAIL_ADDRESS_1>" in body and "<PERSON_1>" in body
    forwarded = cloud.received[-1]
    assert forwarded["max_tokens"] == 64 or forwarded.get("max_completion_tokens") == 64
    assert forwarded["messages"][0]["role"] == "system"


@pytest.mark.anyio
async def test_a_stream_is_anthropics_event_sequence_with_real_values(
        cloud_gateway, cloud) -> None:
    client = cloud_gateway.anthropic()
    prompt = f'Mail "{PERSON}" at {EMAIL}.'
    events = [e async for e in await client.messages.create(
        model="cloud", max_tokens=64, stream=True,
        messages=[{"role": "user", "content": prompt}])]
    kinds = [e.type for e in events if e.type != "ping"]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    pieces = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert len(pieces) > 3  # streamed, not one blob
    assert "".join(pieces) == f"You said: {prompt}"
    assert not any("<EMAIL" in p or "<PERSON" in p for p in pieces)
    stop = next(e for e in events if e.type == "message_delta")
    assert stop.delta.stop_reason == "end_turn"

    async with client.messages.stream(model="cloud", max_tokens=64,
                                      messages=[{"role": "user", "content": prompt}]) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == f"You said: {prompt}"
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert_nothing_raw(cloud.received)
    assert all(b.get("stream") is True for b in cloud.received)


def tool_history(value: str, prompt: str) -> list[dict[str, Any]]:
    """A Messages conversation whose earlier tool_use and tool_result carry ``value``."""
    return [
        {"role": "user", "content": "Mail the contract."},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Sending it."},
            {"type": "tool_use", "id": "toolu_01", "name": "send_mail",
             "input": {"to": value, "text": "the contract"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01",
             "content": [{"type": "text", "text": f"delivered to {value}"}]},
            {"type": "text", "text": prompt}]},
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_use_and_tool_result_round_trip(cloud_gateway, cloud, stream: bool) -> None:
    client = cloud_gateway.anthropic()
    prompt = f'Thanks. Now mail "{PERSON}" at {EMAIL} again.'
    kwargs: dict[str, Any] = {"model": "cloud-tools", "max_tokens": 200, "tools": [MAIL],
                              "messages": tool_history(EMAIL, prompt)}
    if stream:
        async with client.messages.stream(**kwargs) as events:
            reply = await events.get_final_message()
    else:
        reply = await client.messages.create(**kwargs)
    assert reply.stop_reason == "tool_use"
    calls = [b for b in reply.content if b.type == "tool_use"]
    assert len(calls) == 1 and calls[0].name == "send_mail" and calls[0].id
    assert calls[0].input == {"text": prompt, "tool": "Send an e-mail"}  # real values back

    assert_nothing_raw(cloud.received)
    forwarded = cloud.received[-1]
    assistant = next(m for m in forwarded["messages"] if m.get("tool_calls"))
    call = assistant["tool_calls"][0]
    assert call["id"] == "toolu_01" and call["function"]["name"] == "send_mail"
    assert json.loads(call["function"]["arguments"]) == {"to": "<EMAIL_ADDRESS_1>",
                                                         "text": "the contract"}
    result = next(m for m in forwarded["messages"] if m["role"] == "tool")
    assert result["tool_call_id"] == "toolu_01"
    assert "delivered to <EMAIL_ADDRESS_1>" in json.dumps(result["content"])
    assert forwarded["tools"][0]["function"]["parameters"] == MAIL_SCHEMA


@pytest.mark.anyio
@pytest.mark.parametrize("value", [SSN, CARD])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_red_line_value_in_a_tool_result_is_refused_with_nothing_sent(
        cloud_gateway, cloud, value: str, stream: bool) -> None:
    client = cloud_gateway.anthropic()
    with pytest.raises(anthropic.BadRequestError) as caught:
        reply = await client.messages.create(model="cloud-tools", max_tokens=50, tools=[MAIL],
                                             messages=tool_history(value, "Again, please."),
                                             stream=stream)
        [e async for e in reply] if stream else None  # type: ignore[union-attr]
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert value not in json.dumps(body)
    assert cloud.received == []


@pytest.mark.anyio
async def test_count_tokens_estimates_without_sending_anything(cloud_gateway, cloud) -> None:
    client = cloud_gateway.anthropic()
    short = await client.messages.count_tokens(
        model="cloud", messages=[{"role": "user", "content": f"Hi {PERSON}"}])
    long = await client.messages.count_tokens(
        model="cloud", system="Be brief.", tools=[MAIL],
        messages=[{"role": "user", "content": f"Hi {PERSON}, " + "tell me more. " * 50}])
    assert isinstance(short.input_tokens, int) and short.input_tokens > 0
    assert long.input_tokens > short.input_tokens + 100
    assert cloud.received == []  # counting is no reason for text to leave


@pytest.mark.anyio
async def test_count_tokens_errors_take_anthropics_shape(cloud_gateway) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await cloud_gateway.anthropic().messages.count_tokens(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError):
        await cloud_gateway.anthropic("sk-wrong").messages.count_tokens(
            model="cloud", messages=[{"role": "user", "content": "hi"}])


@pytest.mark.anyio
async def test_an_unknown_model_is_a_not_found_error(cloud_gateway, cloud) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await cloud_gateway.anthropic().messages.create(
            model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == {"type", "error"}
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert cloud.received == []


@pytest.mark.anyio
async def test_a_bad_key_is_an_authentication_error(cloud_gateway, cloud) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await cloud_gateway.anthropic("sk-not-a-key").messages.create(
            model="cloud", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert caught.value.body == {"type": "error", "error": {  # type: ignore[comparison-overlap]
        "type": "authentication_error", "message": caught.value.body["error"]["message"]}}  # type: ignore[index]
    missing = await cloud_gateway.http().post("/v1/messages", json={
        "model": "cloud", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert cloud.received == []


@pytest.mark.anyio
async def test_a_missing_max_tokens_is_an_invalid_request_error(cloud_gateway, cloud) -> None:
    response = await cloud_gateway.http().post(
        "/v1/messages", headers={"x-api-key": cloud_gateway.create_key(),
                                 "anthropic-version": "2023-06-01"},
        json={"model": "cloud", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    assert cloud.received == []


@pytest.mark.anyio
async def test_x_api_key_and_bearer_auth_both_work(cloud_gateway, cloud) -> None:
    key = cloud_gateway.create_key()
    ask = {"model": "cloud", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
        response = await cloud_gateway.http().post(
            "/v1/messages", json=ask, headers={"anthropic-version": "2023-06-01", **headers})
        assert response.status_code == 200, (headers, response.text)
        assert response.json()["content"][0]["text"] == "You said: hi"
    by_header = cloud_gateway.anthropic(default_headers={"X-Api-Key": key})
    by_token = cloud_gateway.anthropic(auth_token=key)
    for client in (by_header, by_token):
        reply = await client.messages.create(**ask)
        assert reply.content[0].text == "You said: hi"  # type: ignore[union-attr]
    assert len(cloud.received) == 4


@pytest.mark.anyio
async def test_anthropic_version_and_beta_headers_are_accepted(cloud_gateway) -> None:
    client = cloud_gateway.anthropic()
    ask = {"model": "cloud", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    reply = await client.messages.create(**ask, extra_headers={
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "prompt-caching-2024-07-31,fine-grained-tool-streaming-2025-05-14"})
    assert reply.content[0].text == "You said: hi"  # type: ignore[union-attr]
    # The beta client (as Claude Code uses it) posts to /v1/messages?beta=true.
    beta = await client.beta.messages.create(**ask, betas=["interleaved-thinking-2025-05-14"])
    assert beta.content[0].text == "You said: hi"  # type: ignore[union-attr]


# == /v1/messages on the embedded model ===================================================


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with gateway_from(tmp_path_factory.mktemp("anthropic-local"),
                      "[knowledge]\nenabled = false\n") as gateway:
        yield gateway


ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.mark.slow
def test_local_create_returns_text(local, sdk) -> None:
    reply = sdk(local).messages.create(
        model="local", max_tokens=24,
        messages=[{"role": "user", "content": "Say hello in one short sentence."}])
    assert [b.type for b in reply.content] == ["text"]
    assert reply.content[0].text.strip()  # type: ignore[union-attr]
    assert reply.stop_reason in ("end_turn", "max_tokens")
    assert reply.usage.input_tokens > 0 and 0 < reply.usage.output_tokens <= 24


@pytest.mark.slow
def test_local_stream_yields_text(local, sdk) -> None:
    with sdk(local).messages.stream(
            model="local", max_tokens=24,
            messages=[{"role": "user", "content": "Say hello in one short sentence."}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 2 and "".join(pieces).strip()
    assert final.content[0].text == "".join(pieces)  # type: ignore[union-attr]
    assert final.stop_reason in ("end_turn", "max_tokens")


@pytest.mark.slow
@pytest.mark.parametrize("choice", [{"type": "tool", "name": "send_mail"}, {"type": "any"}])
@pytest.mark.parametrize("stream", [False, True])
def test_local_forced_tool_input_validates(local, sdk, choice: dict[str, Any],
                                           stream: bool) -> None:
    client = sdk(local)
    # The budget covers what the grammar allows (strings of at most 40 and 60 characters,
    # one token each at worst): at temperature 1 the small model now and then spells a
    # string out a character at a time (about 1 answer in 100, with or without prefix
    # reuse, 300 answers each), and a call cut by max_tokens cannot validate.
    kwargs: dict[str, Any] = {"model": "local", "max_tokens": 200, "messages": ASK,
                              "tools": [WEATHER, MAIL], "tool_choice": choice}
    for _ in range(6):  # sampled, unseeded: several answers, every one must validate
        if stream:
            with client.messages.stream(**kwargs) as events:
                reply = events.get_final_message()
        else:
            reply = client.messages.create(**kwargs)
        assert reply.stop_reason == "tool_use"
        calls = [b for b in reply.content if b.type == "tool_use"]
        assert len(calls) == 1 and calls[0].id
        assert calls[0].name in ({"send_mail"} if choice["type"] == "tool" else set(SCHEMAS))
        jsonschema.validate(calls[0].input, SCHEMAS[calls[0].name])


@pytest.mark.slow
@pytest.mark.parametrize("tools", [[], [WEATHER]])
def test_local_count_tokens_is_exact(local, sdk, tools: list[dict[str, Any]]) -> None:
    client = sdk(local)
    ask: dict[str, Any] = {"model": "local", "system": "You are terse.", "messages": ASK}
    if tools:
        ask["tools"] = tools
    counted = client.messages.count_tokens(**ask).input_tokens
    used = client.messages.create(max_tokens=1, **ask).usage.input_tokens
    assert counted > 0 and counted == used
    longer = client.messages.count_tokens(
        **{**ask, "messages": [{"role": "user", "content": "Paris? " * 40}]}).input_tokens
    assert longer > counted


# == an OpenAI client through an Anthropic upstream =======================================


def anthropic_toml(alias: str, url: str, model: str) -> str:
    return (f'[models.{alias}]\nbackend = "anthropic"\nbase_url = "{url}"\n'
            f'model = "{model}"\napi_key = "{UPSTREAM_KEY}"\nretries = 0\n')


@pytest.fixture
def claude_gateway(gateway_factory, fake_claude: FakeAnthropic) -> RunningGateway:
    return gateway_factory("".join(
        anthropic_toml(alias, fake_claude.url, model) for alias, model in (
            ("claude", "fake-echo"), ("claude-tools", "fake-tools"),
            ("claude-500", "fake-500"), ("claude-529", "fake-529"))))


def assert_proper_messages_bodies(fake: FakeAnthropic, client_key: str) -> None:
    """What the real API requires, the key and version headers, and no raw values."""
    assert fake.received
    for body, headers in zip(fake.received, fake.headers, strict=True):
        assert FakeAnthropic.invalid(body, headers) is None
        assert isinstance(body["max_tokens"], int) and body["max_tokens"] > 0
        roles = [m["role"] for m in body["messages"]]
        assert roles[0] == "user"
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), roles
        assert headers["x-api-key"] == UPSTREAM_KEY
        assert headers["anthropic-version"] == "2023-06-01"
        assert client_key not in json.dumps(headers)  # the client's Ownlight key stays home
    assert_nothing_raw(fake.received)


def test_openai_chat_through_an_anthropic_upstream(claude_gateway, fake_claude) -> None:
    key = claude_gateway.create_key()
    client = claude_gateway.client(key)
    prompt = f"Write to {EMAIL} about {PERSON}."
    reply = client.chat.completions.create(model="claude", max_tokens=50, messages=[
        {"role": "system", "content": f"You assist {PERSON}."},
        {"role": "user", "content": prompt}])
    assert reply.choices[0].message.content == f"You said: {prompt}"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == 12
    assert reply.usage.completion_tokens == 5
    body = fake_claude.received[-1]
    assert body["model"] == "fake-echo" and body["max_tokens"] == 50
    assert body["system"] == "You assist <PERSON_1>."
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Write to <EMAIL_ADDRESS_1> about <PERSON_1>."}]}]
    assert not body.get("stream")
    no_limit = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}])
    assert no_limit.choices[0].message.content == "You said: hi"
    assert_proper_messages_bodies(fake_claude, key)


def test_openai_stream_through_an_anthropic_upstream(claude_gateway, fake_claude) -> None:
    key = claude_gateway.create_key()
    prompt = f'Mail "{PERSON}" at {EMAIL}.'
    stream = claude_gateway.client(key).chat.completions.create(
        model="claude", messages=[{"role": "user", "content": prompt}], stream=True,
        stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert "".join(pieces) == f"You said: {prompt}"
    assert len([p for p in pieces if p]) > 3
    assert not any("<EMAIL" in p or "<PERSON" in p for p in pieces)
    assert finish == "stop"
    assert usage is not None and usage.prompt_tokens == 12 and usage.completion_tokens == 5
    assert fake_claude.received[-1]["stream"] is True
    assert_proper_messages_bodies(fake_claude, key)


OPENAI_MAIL = {"type": "function", "function": {
    "name": "send_mail", "description": f"Send an e-mail; copies go to {EMAIL}",
    "parameters": {"type": "object", "properties": {
        "text": {"type": "string"}, "to": {"type": "string", "enum": [EMAIL, "ops@example.org"]}},
        "required": ["text"]}}}


@pytest.mark.parametrize("stream", [False, True])
def test_openai_tools_through_an_anthropic_upstream(claude_gateway, fake_claude,
                                                    stream: bool) -> None:
    key = claude_gateway.create_key()
    client = claude_gateway.client(key)
    prompt = f'Write to {EMAIL} about "{PERSON}".'
    kwargs: dict[str, Any] = {"model": "claude-tools", "tools": [OPENAI_MAIL],
                              "tool_choice": "required",
                              "messages": [{"role": "user", "content": prompt}]}
    if stream:
        ids, names, arguments, finish = [], [], [], None
        for chunk in client.chat.completions.create(stream=True, **kwargs):
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    ids += [call.id] if call.id else []
                    names += [call.function.name] if call.function and call.function.name \
                        else []
                    arguments.append(call.function.arguments or "" if call.function else "")
                finish = choice.finish_reason or finish
        assert len(ids) == 1 and names == ["send_mail"] and finish == "tool_calls"
        assert not any("<EMAIL" in a or "<PERSON" in a for a in arguments)
        assert json.loads("".join(arguments)) == {"text": prompt}
    else:
        reply = client.chat.completions.create(**kwargs)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        call = choice.message.tool_calls[0]  # type: ignore[index]
        assert call.type == "function" and call.id and call.function.name == "send_mail"
        assert json.loads(call.function.arguments) == {"text": prompt}
    body = fake_claude.received[-1]
    assert body["tool_choice"] == {"type": "any"}
    assert body["tools"] == [{
        "name": "send_mail", "description": "Send an e-mail; copies go to <EMAIL_ADDRESS_1>",
        "input_schema": {"type": "object", "properties": {
            "text": {"type": "string"},
            "to": {"type": "string", "enum": ["<EMAIL_ADDRESS_1>", "<EMAIL_ADDRESS_2>"]}},
            "required": ["text"]}}]
    assert_proper_messages_bodies(fake_claude, key)


def test_openai_tool_history_becomes_tool_use_and_tool_result_blocks(
        claude_gateway, fake_claude) -> None:
    key = claude_gateway.create_key()
    arguments = json.dumps({"to": EMAIL, "text": "the contract"})
    reply = claude_gateway.client(key).chat.completions.create(
        model="claude", tools=[OPENAI_MAIL], messages=[
            {"role": "user", "content": "Mail the contract."},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "send_mail", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": f"delivered to {EMAIL}"},
            {"role": "user", "content": f"Thanks, {PERSON}."}])
    assert reply.choices[0].message.content == f"You said: Thanks, {PERSON}."
    body = fake_claude.received[-1]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    use = next(b for b in body["messages"][1]["content"] if b["type"] == "tool_use")
    assert use == {"type": "tool_use", "id": "call_1", "name": "send_mail",
                   "input": {"to": "<EMAIL_ADDRESS_1>", "text": "the contract"}}
    result = next(b for b in body["messages"][2]["content"] if b["type"] == "tool_result")
    assert result["tool_use_id"] == "call_1"
    assert "delivered to <EMAIL_ADDRESS_1>" in json.dumps(result["content"])
    assert body["messages"][2]["content"][0]["type"] == "tool_result"  # results come first
    assert_proper_messages_bodies(fake_claude, key)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_responses_through_an_anthropic_upstream(claude_gateway, fake_claude,
                                                        stream: bool) -> None:
    key = claude_gateway.create_key()
    client = claude_gateway.client(key)
    prompt = f"Write to {EMAIL} about {PERSON}."
    kwargs: dict[str, Any] = {"model": "claude", "instructions": f"You assist {PERSON}.",
                              "input": prompt, "max_output_tokens": 60}
    if stream:
        deltas, text = [], None
        for event in client.responses.create(stream=True, **kwargs):
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.completed":
                text = event.response.output_text
        assert "".join(deltas) == f"You said: {prompt}" and text == "".join(deltas)
    else:
        response = client.responses.create(**kwargs)
        assert response.status == "completed"
        assert response.output_text == f"You said: {prompt}"
    body = fake_claude.received[-1]
    assert body["system"] == "You assist <PERSON_1>." and body["max_tokens"] == 60
    assert body["messages"][-1]["role"] == "user"
    assert "Write to <EMAIL_ADDRESS_1> about <PERSON_1>." in json.dumps(body["messages"][-1])
    assert_proper_messages_bodies(fake_claude, key)


@pytest.mark.parametrize("alias,status", [("claude-500", 502), ("claude-529", 503)])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_failures_are_5xx_for_an_openai_client(claude_gateway, fake_claude, alias: str,
                                                        status: int, stream: bool) -> None:
    client = claude_gateway.client()
    with pytest.raises(openai.APIStatusError) as caught:
        reply = client.chat.completions.create(
            model=alias, messages=[{"role": "user", "content": "hi"}], stream=stream)
        list(reply) if stream else None  # type: ignore[call-overload]
    assert caught.value.status_code == status
    assert caught.value.body["type"] == "upstream_error"  # type: ignore[index]
    assert len(fake_claude.received) == 1  # retries = 0: asked once, and it did arrive

