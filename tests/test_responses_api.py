"""The OpenAI Responses API, driven with the openai SDK and openai-agents.

The Codex CLI and the Agents SDK speak only this protocol. These tests hold it to the
same guarantees as Chat Completions: the same pipeline, the privacy shield on every item
(stored conversations replayed to a cloud target included), and stored responses that
only their owner can read.
"""

from __future__ import annotations

import asyncio
import json

import jsonschema
import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)

from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import gateway_from

EMAIL = "maria.gonzalez@example.com"
PERSON = "Maria Gonzalez"
SSN = "536-22-1234"
MAIL_TOOL = {"type": "function", "name": "send_mail", "description": "Send an e-mail",
             "parameters": {"type": "object", "properties": {
                 "text": {"type": "string", "maxLength": 60}}, "required": ["text"]}}


async def start(app_gateway_factory, cloud: FakeUpstream):
    """The gateway in-process (the fast tier): these tests use HTTP only as a transport."""
    toml = upstream_toml("cloud", cloud.url, "fake-echo", retries=0)
    toml += upstream_toml("tools", cloud.url, "fake-tools", retries=0)
    return await app_gateway_factory(toml)


def sent(cloud: FakeUpstream) -> str:
    return json.dumps(cloud.received, ensure_ascii=False)


@pytest.mark.anyio
async def test_create_restores_values_and_sends_placeholders(app_gateway_factory,
                                                             cloud) -> None:
    client = (await start(app_gateway_factory, cloud)).client()
    text = f"I am {PERSON}, write to {EMAIL}."
    response = await client.responses.create(model="cloud", input=text,
                                             instructions="Be brief.", metadata={"ticket": "42"})
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == f"You said: {text}"
    assert response.usage is not None and response.usage.total_tokens == 11
    assert response.metadata == {"ticket": "42"} and response.instructions == "Be brief."
    forwarded = cloud.received[-1]["messages"]
    assert forwarded[0] == {"role": "system", "content": "Be brief."}
    assert EMAIL not in sent(cloud) and PERSON not in sent(cloud)


@pytest.mark.anyio
async def test_stream_follows_the_documented_event_sequence(app_gateway_factory, cloud) -> None:
    client = (await start(app_gateway_factory, cloud)).client()
    text = f"Stream this for {EMAIL}"
    events = [e async for e in await client.responses.create(model="cloud", input=text,
                                                              stream=True)]
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == f"You said: {text}"
    assert not any("<EMAIL" in e.delta for e in events if e.type.endswith("text.delta"))
    assert events[-1].response.output_text == deltas  # type: ignore[attr-defined]
    assert EMAIL not in sent(cloud)


@pytest.mark.anyio
async def test_function_calls_and_their_outputs_round_trip(app_gateway_factory, cloud) -> None:
    client = (await start(app_gateway_factory, cloud)).client()
    first = await client.responses.create(model="tools", input=f"Mail {EMAIL}",
                                          tools=[MAIL_TOOL])
    call = first.output[0]
    assert call.type == "function_call" and call.name == "send_mail"
    assert json.loads(call.arguments)["text"] == f"Mail {EMAIL}"
    second = await client.responses.create(model="cloud", previous_response_id=first.id,
                                           input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": f"sent to {EMAIL}"},
        {"role": "user", "content": "Thanks"}])
    assert second.output_text == "You said: Thanks"
    replayed = cloud.received[-1]["messages"]
    assert [m["role"] for m in replayed] == ["user", "assistant", "tool", "user"]
    assert replayed[1]["tool_calls"][0]["id"] == call.call_id
    assert replayed[2] == {"role": "tool", "tool_call_id": call.call_id,
                           "content": "sent to <EMAIL_ADDRESS_1>"}
    assert EMAIL not in sent(cloud)


@pytest.mark.anyio
async def test_streamed_function_call_arguments(app_gateway_factory, cloud) -> None:
    client = (await start(app_gateway_factory, cloud)).client()
    events = [e async for e in await client.responses.create(
        model="tools", input=f"Mail {EMAIL}", tools=[MAIL_TOOL], stream=True)]
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments)["text"] == f"Mail {EMAIL}"  # type: ignore[attr-defined]
    assert EMAIL not in sent(cloud)


@pytest.mark.anyio
async def test_stored_responses_continue_and_belong_to_their_owner(app_gateway_factory,
                                                                   cloud) -> None:
    gateway = await start(app_gateway_factory, cloud)
    client = gateway.client()
    first = await client.responses.create(model="cloud", input=f"My e-mail is {EMAIL}")
    second = await client.responses.create(model="cloud", input="What did I say?",
                                           previous_response_id=first.id)
    replayed = cloud.received[-1]["messages"]
    assert [m["role"] for m in replayed] == ["user", "assistant", "user"]
    assert "<EMAIL_ADDRESS_1>" in replayed[0]["content"]  # pseudonymized again
    assert (await client.responses.retrieve(second.id)).output_text \
        == "You said: What did I say?"
    items = (await client.responses.input_items.list(second.id)).data
    assert [i.type for i in items] == ["message", "message", "message"]
    assert EMAIL in items[0].content[0].text  # type: ignore[union-attr]

    stranger = gateway.client(gateway.create_key("mallory"))
    for action in (lambda: stranger.responses.retrieve(first.id),
                   lambda: stranger.responses.delete(first.id),
                   lambda: stranger.responses.create(model="cloud", input="hi",
                                                     previous_response_id=first.id)):
        with pytest.raises(openai.NotFoundError):
            await action()
    await client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve("resp_never_was")


@pytest.mark.anyio
async def test_store_false_keeps_nothing(app_gateway_factory, cloud) -> None:
    client = (await start(app_gateway_factory, cloud)).client()
    response = await client.responses.create(model="cloud", input="hi", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)


@pytest.mark.anyio
async def test_red_line_values_are_refused_with_nothing_sent(app_gateway_factory,
                                                             cloud) -> None:
    client = (await start(app_gateway_factory, cloud)).client()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="tools", tools=[MAIL_TOOL], input=[
            {"role": "user", "content": "Send my number"},
            {"type": "function_call", "call_id": "c1", "name": "send_mail",
             "arguments": json.dumps({"text": f"SSN {SSN}"})},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"}])
    assert caught.value.code == "policy_local_only" and "US_SSN" in caught.value.message
    assert cloud.received == []


@pytest.mark.anyio
async def test_bad_requests_are_400_in_openai_shape(app_gateway_factory, cloud) -> None:
    gateway = await start(app_gateway_factory, cloud)
    http = gateway.http()
    key = gateway.create_key()
    for body, param in (({"model": "cloud"}, "input"),
                        ({"model": "cloud", "input": [{"type": "message", "role": "wizard",
                                                       "content": "x"}]}, "input[0].role"),
                        ({"model": "cloud", "input": "x", "max_output_tokens": 0},
                         "max_output_tokens")):
        response = await http.post("/v1/responses", json=body,
                                   headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param
    assert (await http.post("/v1/responses", json={"model": "cloud", "input": "x"},
                            headers={"Authorization": "Bearer wrong"})).status_code == 401


@pytest.mark.anyio
async def test_an_agent_on_the_responses_model_calls_its_tool(app_gateway_factory,
                                                              cloud) -> None:
    set_tracing_disabled(True)
    gateway = await start(app_gateway_factory, cloud)
    seen: list[str] = []

    @function_tool
    def send_mail(text: str) -> str:
        """Send an e-mail."""
        seen.append(text)
        return "sent"

    model = OpenAIResponsesModel(model="tools", openai_client=gateway.client())
    agent = Agent(name="mailer", instructions="Send mail.", tools=[send_mail],
                  model=model, tool_use_behavior="stop_on_first_tool")
    result = await Runner.run(agent, f"Mail {EMAIL} today")
    assert seen == [f"Mail {EMAIL} today"]  # the real value reached the tool
    assert result.final_output == "sent"  # type: ignore[attr-defined]
    assert EMAIL not in sent(cloud)


# -- the embedded model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    with gateway_from(tmp_path_factory.mktemp("responses-local"),
                      "[knowledge]\nenabled = false\n") as gateway:
        yield gateway


@pytest.mark.slow
def test_embedded_model_answers_streams_and_continues(local) -> None:
    client = local.client()
    first = client.responses.create(model="local", input="What is the capital of France?",
                                    max_output_tokens=20, temperature=0)
    assert first.output_text.strip()
    # Greedy: a sampled answer can reach the token limit, and the SDK's
    # get_final_response() raises on the response.incomplete that then ends the stream.
    with client.responses.stream(model="local", input="Name a color.",
                                 max_output_tokens=10, temperature=0) as stream:
        final = stream.get_final_response()
    assert final.status in ("completed", "incomplete") and final.output_text.strip()
    again = client.responses.create(model="local", input="And of Italy?",
                                    previous_response_id=first.id, max_output_tokens=20)
    assert again.previous_response_id == first.id and again.output_text.strip()


@pytest.mark.slow
def test_embedded_model_tools_and_json_schema(local) -> None:
    client = local.client()
    response = client.responses.create(
        model="local", input="Mail the team about lunch.", tools=[MAIL_TOOL],
        tool_choice={"type": "function", "name": "send_mail"}, max_output_tokens=80)
    call = response.output[0]
    assert call.type == "function_call" and call.name == "send_mail"
    jsonschema.validate(json.loads(call.arguments), MAIL_TOOL["parameters"])
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
              "required": ["city"], "additionalProperties": False}
    answer = client.responses.create(
        model="local", input="Name a city.", max_output_tokens=40,
        text={"format": {"type": "json_schema", "name": "city", "schema": schema,
                         "strict": True}})
    jsonschema.validate(json.loads(answer.output_text), schema)


@pytest.mark.slow
def test_embedded_model_agent_with_a_forced_tool(local) -> None:
    set_tracing_disabled(True)
    seen: list[str] = []

    @function_tool
    def lookup_city(name: str) -> str:
        """Look a city up."""
        seen.append(name)
        return "found"

    async def run() -> object:
        async with openai.AsyncOpenAI(base_url=local.url + "/v1", api_key=local.create_key(),
                                      max_retries=0) as client:
            model = OpenAIResponsesModel(model="local", openai_client=client)
            agent = Agent(name="cities", instructions="Look cities up.", tools=[lookup_city],
                          model=model, tool_use_behavior="stop_on_first_tool",
                          model_settings=ModelSettings(tool_choice="lookup_city",
                                                       max_tokens=40))
            return await Runner.run(agent, "Look up Paris.")

    result = asyncio.run(run())
    assert len(seen) == 1 and result.final_output == "found"  # type: ignore[attr-defined]
