"""The privacy shield sees every slot of a chat request, not only message text.

Driven with the openai SDK against the gateway served in-process (the fast tier) and a
recording fake cloud upstream:
tool-call arguments, tool results, tool definitions, participant names, ``user``,
``stop``, ``metadata``, image URLs and fields Ownlight does not model must never carry
a raw value out; red-line values anywhere are refused with nothing sent; and values
come back real in text, tool calls and JSON outputs, streamed or not.
"""

from __future__ import annotations

import json

import openai
import pytest

from ownlight.privacy.stage import PrivacyShield
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream

EMAIL = "maria.gonzalez@example.com"
PERSON = "Maria Gonzalez"
PHONE = "+1 415 555 0132"
SSN = "536-22-1234"
CARD = "4111 1111 1111 1111"
TOOLS = [{"type": "function", "function": {
    "name": "send_mail", "description": f"Send mail; copies go to audit@{EMAIL.split('@')[1]}",
    "parameters": {"type": "object", "properties": {
        "text": {"type": "string"},
        "to": {"type": "string", "enum": [EMAIL, "ops@example.org"]}}}}}]


pytestmark = pytest.mark.anyio


async def start(app_gateway_factory, cloud: FakeUpstream, model: str = "fake-tools"):
    return await app_gateway_factory(upstream_toml("cloud", cloud.url, model, retries=0))


def sent(cloud: FakeUpstream) -> str:
    return json.dumps(cloud.received, ensure_ascii=False)


def history(value: str) -> list[dict[str, object]]:
    """A conversation whose earlier tool call and tool result carry ``value``."""
    arguments = json.dumps({"to": value, "text": f"call {PHONE}"})
    return [
        {"role": "user", "content": "Mail the contract."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "send_mail", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": f"sent to {value}"},
        {"role": "user", "content": "Thanks. Now mail it again."},
    ]


async def test_every_slot_leaves_as_placeholders(app_gateway_factory, cloud) -> None:
    client = (await start(app_gateway_factory, cloud)).client()
    messages = history(EMAIL)
    messages.insert(0, {"role": "system", "content": f"You assist {PERSON}."})
    messages[-1] = {"role": "user", "name": "maria_gonzalez", "content": [
        {"type": "text", "text": f"Also call {PHONE}."},
        {"type": "image_url", "image_url": {"url": f"https://img.example.com/?owner={EMAIL}"}}]}
    await client.chat.completions.create(
        model="cloud", messages=messages, tools=TOOLS, user=EMAIL, stop=[EMAIL],
        metadata={"owner": PERSON}, extra_body={"vendor_note": {"contact": EMAIL}})
    body = sent(cloud)
    for value in (EMAIL, PERSON, PHONE):
        assert value not in body, value
    assert "<EMAIL_ADDRESS_1>" in body and "<PHONE_NUMBER_1>" in body
    forwarded = cloud.received[-1]
    assert json.loads(forwarded["messages"][2]["tool_calls"][0]["function"]["arguments"])[
        "to"] == "<EMAIL_ADDRESS_1>"  # arguments stay valid JSON, same placeholder
    assert forwarded["vendor_note"] == {"contact": "<EMAIL_ADDRESS_1>"}
    assert forwarded["tools"][0]["function"]["parameters"]["properties"]["to"]["enum"][0] \
        == "<EMAIL_ADDRESS_1>"


@pytest.mark.parametrize("value", [SSN, CARD])
async def test_red_line_values_in_tool_calls_are_refused_with_nothing_sent(
        app_gateway_factory, cloud, value: str) -> None:
    client = (await start(app_gateway_factory, cloud)).client()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="cloud", messages=history(value), tools=TOOLS)
    assert caught.value.body["code"] == "policy_local_only"  # type: ignore[index]
    assert cloud.received == []


async def test_red_line_in_a_tool_result_or_metadata_is_refused(app_gateway_factory,
                                                                cloud) -> None:
    client = (await start(app_gateway_factory, cloud)).client()
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="cloud", messages=[
            {"role": "user", "content": "hi"}], metadata={"ssn": SSN})
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="cloud", messages=[
            {"role": "user", "content": "look up the card"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                  "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": f"card on file: {CARD}"}])
    assert cloud.received == []


async def test_tool_calls_come_back_with_real_values(app_gateway_factory, cloud) -> None:
    client = (await start(app_gateway_factory, cloud)).client()
    prompt = f"Write to {EMAIL} about {PERSON}."
    reply = await client.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": prompt}], tools=TOOLS)
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "send_mail"
    arguments = json.loads(call.function.arguments)
    assert arguments["text"] == prompt
    assert arguments["tool"] == TOOLS[0]["function"]["description"]  # type: ignore[index]
    assert EMAIL not in sent(cloud) and PERSON not in sent(cloud)


async def test_streamed_tool_call_arguments_are_restored(app_gateway_factory, cloud) -> None:
    client = (await start(app_gateway_factory, cloud)).client()
    prompt = f'Write to {EMAIL} about "{PERSON}".'  # quotes must stay escaped in JSON
    stream = await client.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": prompt}], tools=TOOLS,
        stream=True)
    pieces: list[str] = []
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                pieces.append(call.function.arguments or "")  # type: ignore[union-attr]
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert json.loads("".join(pieces))["text"] == prompt
    assert not any("<EMAIL" in p or "<PERSON" in p for p in pieces)
    assert EMAIL not in sent(cloud)


@pytest.mark.parametrize("stream", [False, True])
async def test_json_outputs_stay_valid_when_restored(app_gateway_factory, cloud,
                                                     stream: bool) -> None:
    client = (await start(app_gateway_factory, cloud, "fake-json")).client()
    prompt = f'Mail {EMAIL}, signed "{PERSON}"\\n'
    kwargs = {"model": "cloud", "messages": [{"role": "user", "content": prompt}],
              "response_format": {"type": "json_object"}}
    if stream:
        text = "".join([c.choices[0].delta.content or "" async for c in
                        await client.chat.completions.create(stream=True, **kwargs)  # type: ignore
                        if c.choices])
    else:
        text = (await client.chat.completions.create(**kwargs)  # type: ignore
                ).choices[0].message.content
    assert json.loads(text or "") == {"echo": prompt}
    assert EMAIL not in sent(cloud)


async def test_a_failing_detector_fails_closed(app_gateway_factory, cloud, monkeypatch) -> None:
    gateway = await start(app_gateway_factory, cloud, "fake-echo")

    def broken(self: PrivacyShield, slots: object) -> None:
        raise RuntimeError("recognizer crashed")

    monkeypatch.setattr(PrivacyShield, "classify_slots", broken)
    with pytest.raises(openai.BadRequestError) as caught:
        await gateway.client().chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "hello"}])
    assert caught.value.status_code == 400
    assert cloud.received == []
    gateway.runtime.pipeline.ledger.flush()
    refused = gateway.runtime.pipeline.ledger.query("status = 400")
    assert refused and refused[-1]["sensitivity"] == "unscanned"


async def test_n_choices_are_honoured_and_restored(app_gateway_factory, cloud) -> None:
    client = (await start(app_gateway_factory, cloud, "fake-echo")).client()
    reply = await client.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": f"Hi {PERSON}"}], n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.message.content == f"You said: Hi {PERSON}" for c in reply.choices)
    assert cloud.received[-1]["n"] == 3


async def test_a_long_list_of_numbers_is_text_not_a_blob(app_gateway_factory, cloud) -> None:
    """Only unbroken base64-like runs are skipped; newline-separated cards are scanned."""
    client = (await start(app_gateway_factory, cloud)).client()
    cards = json.dumps({"cards": f"{CARD}\n" * 60})
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="cloud", tools=TOOLS, messages=[
            {"role": "user", "content": "Check these"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
                "name": "send_mail", "arguments": cards}}]},
            {"role": "tool", "tool_call_id": "c", "content": "ok"}])
    assert cloud.received == []


def test_unknown_response_items_do_not_hide_the_question() -> None:
    from ownlight.protocol.responses import parse_call
    from ownlight.protocol.slots import last_user_text

    call = parse_call({"model": "m", "input": [
        {"role": "user", "content": "What is our refund policy?"},
        {"type": "item_reference", "id": "x"}]})
    assert last_user_text(call.request) == "What is our refund policy?"


def test_a_legacy_function_name_is_a_slot() -> None:
    from ownlight.protocol.model import Operation
    from ownlight.protocol.openai import parse_request
    from ownlight.protocol.slots import SlotKind, text_slots

    request = parse_request(Operation.CHAT, {"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "function", "name": "lookup_maria_gonzalez", "content": "x"}]})
    names = [s.text for s in text_slots(request) if s.kind is SlotKind.TOOL_NAME]
    assert names == ["lookup_maria_gonzalez"]


async def test_sensitive_field_names_never_leave(app_gateway_factory, cloud) -> None:
    client = (await start(app_gateway_factory, cloud, "fake-echo")).client()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="cloud", metadata={EMAIL: "owner"},
                                       messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "sensitive_field_name"  # type: ignore[index]
    assert cloud.received == []
