"""Acceptance tests: real third-party clients against a running Ownlight gateway.

Ownlight claims to speak the OpenAI Chat Completions API well enough that existing
tooling works unchanged. Our own tests drive it with the official ``openai`` SDK and
hand-written bodies, which share our assumptions; these drive it with libraries
nobody here wrote -- langchain-openai, the OpenAI Agents SDK and simonw's ``llm`` --
exactly as their documentation says to point them at an OpenAI-compatible server.

Two kinds of gateway are used:

* a fake outside-domain upstream (``fake-tools``, ``fake-json``, ``fake-echo``): the
  privacy shield must pseudonymize the e-mail address and person name before the body
  leaves (checked on every recorded body), and the client must still get the real
  values back in tool-call arguments, structured output and streamed text;
* the embedded Gemma 3 270M (``slow``): tool_choice and json_schema are enforced by
  grammar-constrained decoding, so whatever the small model says must validate.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import jsonschema
import llm
import pytest
from agents import (
    Agent,
    MaxTurnsExceeded,
    Model,
    ModelSettings,
    OpenAIChatCompletionsModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from langchain_core.messages import AIMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI
from pydantic import BaseModel, Field, SecretStr

from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import RunningGateway

EMAIL = "jane.doe@example.com"
NAME = "Maria Garcia"
PROMPT = f"Write to {EMAIL} for {NAME} about the overdue invoice."
RAW_VALUES = (EMAIL, NAME)

GatewayFactory = Callable[..., RunningGateway]


# --- shared helpers -------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _no_agent_tracing() -> None:
    """The Agents SDK would otherwise try to upload traces to api.openai.com."""
    set_tracing_disabled(True)


@pytest.fixture
def cloud(gateway_factory: GatewayFactory, fake_upstream: FakeUpstream) -> RunningGateway:
    """A gateway whose aliases all lead to the fake upstream, outside the domain."""
    toml = "".join(upstream_toml(alias, fake_upstream.url, model, retries=0)
                   for alias, model in (("tools", "fake-tools"), ("json", "fake-json"),
                                        ("echo", "fake-echo")))
    return gateway_factory(toml)


@pytest.fixture
def local(gateway_factory: GatewayFactory) -> RunningGateway:
    """A gateway serving only the embedded model."""
    return gateway_factory("", local=True)


def assert_nothing_raw_left(upstream: FakeUpstream) -> None:
    """The upstream was called, and no body it received holds a real value."""
    assert upstream.received, "the upstream was never called"
    for body in upstream.received:
        sent = json.dumps(body, ensure_ascii=False)
        for value in RAW_VALUES:
            assert value not in sent, f"{value!r} reached the upstream: {sent}"
    last_user = [m for m in upstream.received[-1]["messages"] if m["role"] == "user"][-1]
    assert "<EMAIL_ADDRESS_1>" in json.dumps(last_user["content"])


def chat_model(gateway: RunningGateway, model: str, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(base_url=gateway.url + "/v1", api_key=SecretStr(gateway.create_key()),
                      model=model, max_retries=0, timeout=120, **kwargs)


def tool_schema(tool: Any) -> dict[str, Any]:
    """The JSON schema langchain sends for ``tool``'s arguments."""
    return dict(convert_to_openai_tool(tool)["function"]["parameters"])


# --- langchain-openai -----------------------------------------------------------------


class SendNote(BaseModel):
    """Send a short note to a contact."""

    text: str = Field(description="the note to send")
    tool: str = Field(description="which tool this is")


class Echo(BaseModel):
    echo: str


ECHO_SCHEMA: dict[str, Any] = {
    "title": "echo_reply", "description": "The message, repeated.", "type": "object",
    "properties": {"echo": {"type": "string"}}, "required": ["echo"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "streamed"])
def test_langchain_named_tool_call_restores_real_values(
        cloud: RunningGateway, fake_upstream: FakeUpstream, streaming: bool) -> None:
    llm_ = chat_model(cloud, "tools", streaming=streaming)
    bound = llm_.bind_tools([SendNote], tool_choice="SendNote")
    message = bound.invoke(PROMPT)
    assert isinstance(message, AIMessage)
    assert [call["name"] for call in message.tool_calls] == ["SendNote"]
    args = message.tool_calls[0]["args"]
    jsonschema.validate(args, tool_schema(SendNote))
    assert args == {"text": PROMPT, "tool": "Send a short note to a contact."}
    sent = fake_upstream.received[-1]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "SendNote"}}
    assert bool(sent.get("stream")) is streaming
    assert_nothing_raw_left(fake_upstream)


@pytest.mark.parametrize("schema", [Echo, ECHO_SCHEMA], ids=["pydantic", "json-schema"])
def test_langchain_structured_output_restores_real_values(
        cloud: RunningGateway, fake_upstream: FakeUpstream, schema: Any) -> None:
    structured = chat_model(cloud, "json").with_structured_output(schema, method="json_schema")
    result = structured.invoke(PROMPT)
    if schema is Echo:
        assert isinstance(result, Echo) and result.echo == PROMPT
    else:
        assert result == {"echo": PROMPT}
    assert fake_upstream.received[-1]["response_format"]["type"] == "json_schema"
    assert_nothing_raw_left(fake_upstream)


class LookupCity(BaseModel):
    """Look up facts about a city."""

    city: str = Field(description="the city's name", max_length=40)
    unit: Literal["celsius", "fahrenheit"] = Field(description="temperature unit")
    days: int = Field(description="how many days of forecast", ge=1, le=7)


class CityFacts(BaseModel):
    name: str = Field(max_length=40)
    country: str = Field(max_length=40)
    population: int


@pytest.mark.slow
def test_langchain_named_tool_call_on_the_embedded_model(local: RunningGateway) -> None:
    bound = chat_model(local, "local", temperature=0, max_tokens=120).bind_tools(
        [LookupCity, SendNote], tool_choice="LookupCity")
    message = bound.invoke("What will the weather be like in Paris this week?")
    assert isinstance(message, AIMessage)
    assert [call["name"] for call in message.tool_calls] == ["LookupCity"]
    assert not message.invalid_tool_calls
    jsonschema.validate(message.tool_calls[0]["args"], tool_schema(LookupCity))


@pytest.mark.slow
@pytest.mark.parametrize("schema", [CityFacts, CityFacts.model_json_schema()],
                         ids=["pydantic", "json-schema"])
def test_langchain_structured_output_on_the_embedded_model(local: RunningGateway,
                                                           schema: Any) -> None:
    structured = chat_model(local, "local", temperature=0, max_tokens=120) \
        .with_structured_output(schema, method="json_schema")
    result = structured.invoke("Describe the city of Paris.")
    value = result.model_dump() if isinstance(result, BaseModel) else result
    assert isinstance(value, dict)
    jsonschema.validate(value, CityFacts.model_json_schema())


# --- OpenAI Agents SDK ----------------------------------------------------------------


def run_agent(gateway: RunningGateway, model: str, make: Callable[[Model], Agent[Any]],
              streamed: bool = False, max_turns: int = 2) -> Any:
    """Run ``make(model)`` on ``PROMPT``-like input in a fresh loop; its final output.

    The AsyncOpenAI client is created and closed inside that loop, as the SDK expects.
    """

    async def go() -> Any:
        async with AsyncOpenAI(base_url=gateway.url + "/v1", api_key=gateway.create_key(),
                               max_retries=0) as client:
            agent = make(OpenAIChatCompletionsModel(model=model, openai_client=client))
            if not streamed:
                return (await Runner.run(agent, agent_input(agent), max_turns=max_turns)
                        ).final_output
            result = Runner.run_streamed(agent, agent_input(agent), max_turns=max_turns)
            async for _ in result.stream_events():
                pass
            return result.final_output

    return asyncio.run(go())


def agent_input(agent: Agent[Any]) -> str:
    return "What is the weather in Paris?" if agent.name == "weather" else PROMPT


def note_agent(calls: list[dict[str, str]], **kwargs: Any) -> Callable[[Model], Agent[Any]]:
    @function_tool
    def send_note(text: str, tool: str) -> str:
        """Send a short note to a contact.

        Args:
            text: the note to send.
            tool: which tool this is.
        """
        calls.append({"text": text, "tool": tool})
        return f"note sent: {text}"

    return lambda model: Agent(name="notes", instructions="Use send_note for every request.",
                               tools=[send_note], model=model, **kwargs)


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_agent_tool_gets_the_real_values(cloud: RunningGateway, fake_upstream: FakeUpstream,
                                         streamed: bool) -> None:
    calls: list[dict[str, str]] = []
    final_output = run_agent(cloud, "tools",
                             note_agent(calls, tool_use_behavior="stop_on_first_tool"),
                             streamed=streamed)
    assert calls == [{"text": PROMPT, "tool": "Send a short note to a contact."}]
    assert final_output == f"note sent: {PROMPT}"
    assert bool(fake_upstream.received[-1].get("stream")) is streamed
    assert_nothing_raw_left(fake_upstream)


def test_agent_tool_results_are_shielded_on_the_next_turn(
        cloud: RunningGateway, fake_upstream: FakeUpstream) -> None:
    """The tool's output (holding the real e-mail) goes back up pseudonymized too."""
    calls: list[dict[str, str]] = []
    # fake-tools calls the tool on every turn: the second answer ends the run.
    with pytest.raises(MaxTurnsExceeded):
        run_agent(cloud, "tools", note_agent(calls), max_turns=2)
    assert [call["text"] for call in calls] == [PROMPT]
    assert len(fake_upstream.received) == 2
    history = fake_upstream.received[1]["messages"]
    (tool_message,) = [m for m in history if m["role"] == "tool"]
    # pseudonymized; the guard may also quote it as untrusted data (the tool echoes an
    # instruction), which is its business, not this test's
    assert "note sent: Write to <EMAIL_ADDRESS_1> for <PERSON_1> about the overdue invoice." \
        in tool_message["content"]
    assert_nothing_raw_left(fake_upstream)


@pytest.mark.slow
def test_agent_forced_tool_on_the_embedded_model(local: RunningGateway) -> None:
    calls: list[dict[str, Any]] = []

    @function_tool
    def lookup_city(city: str, days: int) -> str:
        """Look up the weather forecast for a city.

        Args:
            city: the city's name.
            days: how many days of forecast.
        """
        calls.append({"city": city, "days": days})
        return f"sunny in {city}"

    final_output = run_agent(local, "local", lambda model: Agent(
        name="weather", instructions="You answer questions about the weather.",
        tools=[lookup_city], model=model,
        model_settings=ModelSettings(tool_choice="lookup_city", temperature=0, max_tokens=120),
        tool_use_behavior="stop_on_first_tool"))
    assert len(calls) == 1
    assert isinstance(calls[0]["city"], str) and isinstance(calls[0]["days"], int)
    assert final_output == f"sunny in {calls[0]['city']}"


# --- simonw's llm ---------------------------------------------------------------------


@pytest.fixture
def llm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "llm-home"
    home.mkdir()
    monkeypatch.setenv("LLM_USER_PATH", str(home))
    yield home


def register_llm_model(home: Path, gateway: RunningGateway, alias: str,
                       stored_key: str | None = None) -> str:
    """Configure ``alias`` as llm documents for OpenAI-compatible servers; its model id."""
    model_id = f"ownlight-{alias}"
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: {model_id}\n"
        f"  model_name: {alias}\n"
        f"  api_base: \"{gateway.url}/v1\"\n"
        f"  api_key_name: ownlight\n")
    if stored_key is not None:  # what `llm keys set ownlight` writes
        (home / "keys.json").write_text(json.dumps({"ownlight": stored_key}))
    return model_id


def test_llm_prompt_restores_real_values(cloud: RunningGateway, fake_upstream: FakeUpstream,
                                         llm_home: Path) -> None:
    model = llm.get_model(register_llm_model(llm_home, cloud, "echo"))
    response = model.prompt(PROMPT, key=cloud.create_key(), stream=False)
    assert response.text() == f"You said: {PROMPT}"
    assert not fake_upstream.received[-1].get("stream")
    assert_nothing_raw_left(fake_upstream)


def test_llm_streamed_prompt_with_a_stored_key(cloud: RunningGateway,
                                               fake_upstream: FakeUpstream,
                                               llm_home: Path) -> None:
    model = llm.get_model(register_llm_model(llm_home, cloud, "echo", cloud.create_key()))
    pieces = list(model.prompt(PROMPT))
    assert len(pieces) > 1
    assert "".join(pieces) == f"You said: {PROMPT}"
    assert fake_upstream.received[-1].get("stream") is True
    assert_nothing_raw_left(fake_upstream)


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_llm_prompt_on_the_embedded_model(local: RunningGateway, llm_home: Path,
                                          stream: bool) -> None:
    model = llm.get_model(register_llm_model(llm_home, local, "local"))
    response = model.prompt("What is the capital of France?", key=local.create_key(),
                            stream=stream, temperature=0, max_tokens=30)
    pieces = list(response)
    assert "".join(pieces).strip()
    assert "Paris" in response.text()
    if stream:
        assert len(pieces) > 1
