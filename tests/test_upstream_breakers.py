"""No caller can trip a target's circuit breaker for everyone else.

An upstream's 4xx to one request is that request's problem: it goes back to the client
as a 4xx in its protocol's shape and no breaker counts it. An endpoint the upstream does
not serve (a chat-only server asked for ``/v1/completions``) is learnt for that endpoint
alone. Connection errors, 5xx and 429 still open the circuit.
"""

from __future__ import annotations

import openai
import pytest

from tests.conftest import upstream_toml
from tests.support.agent_upstream import AgentUpstream


@pytest.fixture
def chat_only():
    """A real upstream that serves chat and nothing else (404 elsewhere)."""
    with AgentUpstream() as upstream:
        yield upstream


def test_404s_on_one_endpoint_leave_chat_open_for_everyone(gateway_factory, chat_only) -> None:
    gateway = gateway_factory(upstream_toml("cloud", chat_only.url + "/v1", "gpt-cloud",
                                            inside_domain=True, retries=0))
    mallory = gateway.client(gateway.create_key("mallory"))
    for _ in range(6):
        with pytest.raises(openai.NotFoundError) as caught:
            mallory.completions.create(model="cloud", prompt="The sea is")
        assert caught.value.code == "endpoint_not_served"
    completions = [p for _, p, _, _ in chat_only.received if p.endswith("/completions")
                   and "chat" not in p]
    assert len(completions) == 1  # learnt: the rest were answered without asking again
    alice = gateway.client(gateway.create_key("alice"))
    answer = alice.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": "Hello"}])
    assert answer.choices[0].message.content == "Ready."
    assert gateway.runtime.pipeline.health.circuits["cloud"].state == "closed"


def test_an_upstream_400_is_the_callers_error_not_the_targets(gateway_factory, fake_upstream,
                                                             ) -> None:
    gateway = gateway_factory(upstream_toml("cloud", fake_upstream.url, "fake-400",
                                            inside_domain=True, retries=0))
    client = gateway.client()
    for _ in range(5):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="cloud",
                                           messages=[{"role": "user", "content": "x"}])
    gateway.runtime.pipeline.ledger.flush()
    codes = {r["error_code"] for r in gateway.runtime.pipeline.ledger.query("status = 400")}
    assert "circuit_open" not in codes


def test_upstream_5xx_still_opens_the_circuit(gateway_factory, fake_upstream) -> None:
    gateway = gateway_factory(upstream_toml("cloud", fake_upstream.url, "fake-500",
                                            inside_domain=True, retries=0))
    client = gateway.client()
    codes = []
    for _ in range(5):
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="cloud",
                                           messages=[{"role": "user", "content": "x"}])
        codes.append(caught.value.code)
    assert codes[-1] == "circuit_open"
