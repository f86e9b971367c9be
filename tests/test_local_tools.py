"""Tools, structured outputs, logprobs and n on the embedded model, through the openai SDK.

The bundled model is tiny; what these tests hold it to is what grammar-constrained
decoding guarantees whatever the model's skill: a required or named tool call always
names an offered tool with arguments that validate, and a json_schema answer always
validates against its schema.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

from tests.support.gateway import gateway_from

pytestmark = pytest.mark.slow

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}}}
MAIL = {"type": "function", "function": {
    "name": "send_mail", "description": "Send an e-mail",
    "parameters": {"type": "object", "properties": {
        "to": {"type": "string", "maxLength": 40}, "subject": {"type": "string", "maxLength": 40}},
        "required": ["to", "subject"]}}}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, MAIL)}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    with gateway_from(tmp_path_factory.mktemp("local-tools"),
                      "[knowledge]\nenabled = false\n") as gateway:
        yield gateway


def assert_valid_call(call, names: set[str]) -> dict:
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in names
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, SCHEMAS[call.function.name])
    return arguments


def test_a_named_tool_is_always_called_with_valid_arguments(local) -> None:
    client = local.client()
    for seed in range(3):
        reply = client.chat.completions.create(
            model="local", messages=ASK, tools=[WEATHER, MAIL], seed=seed, max_tokens=80,
            tool_choice={"type": "function", "function": {"name": "send_mail"}})
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        assert_valid_call(choice.message.tool_calls[0], {"send_mail"})


# Unseeded, sampled calls get a budget that covers what the schemas' grammar allows (two
# strings of at most 40 characters, one token each at worst): now and then the small model
# spells a string out a character at a time, and a call cut by max_tokens cannot validate.
CALL_BUDGET = 160


def test_required_calls_one_of_the_offered_tools(local) -> None:
    reply = local.client().chat.completions.create(
        model="local", messages=ASK, tools=[WEATHER, MAIL], tool_choice="required",
        max_tokens=CALL_BUDGET)
    assert reply.choices[0].finish_reason == "tool_calls"
    assert_valid_call(reply.choices[0].message.tool_calls[0], {"get_weather", "send_mail"})


def test_auto_answers_in_words_or_with_a_valid_call(local) -> None:
    for seed in range(3):
        reply = local.client().chat.completions.create(
            model="local", messages=ASK, tools=[WEATHER], tool_choice="auto", seed=seed,
            max_tokens=60)
        message = reply.choices[0].message
        if message.tool_calls:
            assert reply.choices[0].finish_reason == "tool_calls"
            assert_valid_call(message.tool_calls[0], {"get_weather"})
        else:
            assert message.content and "<tool_call>" not in message.content


def test_none_means_no_tool_call(local) -> None:
    reply = local.client().chat.completions.create(
        model="local", messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=20)
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_streamed_tool_calls_assemble_into_valid_arguments(local) -> None:
    for choice in ({"type": "function", "function": {"name": "get_weather"}}, "required"):
        stream = local.client().chat.completions.create(
            model="local", messages=ASK, tools=[WEATHER, MAIL], tool_choice=choice,
            max_tokens=CALL_BUDGET, stream=True)
        ids, names, arguments, finish = [], [], [], None
        for chunk in stream:
            for c in chunk.choices:
                for call in c.delta.tool_calls or []:
                    ids += [call.id] if call.id else []
                    names += [call.function.name] if call.function.name else []
                    arguments.append(call.function.arguments or "")
                finish = c.finish_reason or finish
        assert finish == "tool_calls" and len(ids) == 1 and len(names) == 1
        jsonschema.validate(json.loads("".join(arguments)), SCHEMAS[names[0]])


def test_json_schema_answers_always_validate(local) -> None:
    schema = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 30}, "age": {"type": "integer"},
        "languages": {"type": "array", "items": {"type": "string", "maxLength": 20},
                      "maxItems": 3}},
        "required": ["name", "age", "languages"], "additionalProperties": False}
    client = local.client()
    for seed in range(3):
        reply = client.chat.completions.create(
            model="local", messages=[{"role": "user", "content": "Describe a programmer."}],
            seed=seed, max_tokens=120,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "person", "schema": schema, "strict": True}})
        jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


def test_json_object_answers_are_json(local) -> None:
    # Greedy, with a frequency penalty: the generic JSON grammar bounds no string, so an
    # answer can run past any budget (an answer cut by max_tokens is "length", not JSON).
    # A sampled one did; so did a greedy one once llama.cpp's numbers changed (without AMX
    # kernels the bundled model repeated "It is a yellow color." inside a string until cut).
    reply = local.client().chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "A JSON object with one fruit, please."}],
        response_format={"type": "json_object"}, max_tokens=60, temperature=0,
        frequency_penalty=1.0)
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


def test_logprobs_and_n_choices(local) -> None:
    reply = local.client().chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Say hello."}], n=2, seed=3,
        logprobs=True, top_logprobs=2, max_tokens=8)
    assert [c.index for c in reply.choices] == [0, 1]
    for choice in reply.choices:
        tokens = choice.logprobs.content
        assert tokens and all(t.logprob <= 0 for t in tokens)
        assert all(len(t.top_logprobs) == 2 for t in tokens)
        assert "".join(t.token for t in tokens).strip() == (choice.message.content or "").strip()
    assert reply.usage.completion_tokens >= 2


def test_bad_schemas_and_unknown_tools_are_400(local) -> None:
    key = local.create_key()
    for body, param in (
        ({"tools": [WEATHER], "tool_choice": {"type": "function",
                                              "function": {"name": "nope"}}}, "tool_choice"),
        ({"response_format": {"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "objekt"}}}}, "response_format.json_schema.schema"),
        ({"tool_choice": "required"}, "tool_choice"),
    ):
        response = httpx.post(local.url + "/v1/chat/completions",
                              headers={"Authorization": f"Bearer {key}"},
                              json={"model": "local", "messages": ASK, **body})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


def test_one_model_by_id(local) -> None:
    client = local.client()
    assert client.models.retrieve("local").id == "local"
    with pytest.raises(Exception) as caught:
        client.models.retrieve("no-such-model")
    assert getattr(caught.value, "status_code", None) == 404
