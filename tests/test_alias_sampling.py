"""An embedded alias's own sampling default, for clients that send none (the agent CLIs)."""

from __future__ import annotations

import httpx
import pytest

from ownlight.backends import KINDS
from tests.test_agent_window import ScriptedLlama


@pytest.mark.parametrize("sent, used", [(None, 0.2), (0.9, 0.9)])
def test_the_alias_temperature_applies_only_when_the_request_names_none(
        gateway_factory, monkeypatch, sent: float | None, used: float) -> None:
    monkeypatch.setitem(KINDS, ScriptedLlama.kind, "tests.test_agent_window:ScriptedLlama")
    gateway = gateway_factory('[models.agent]\nbackend = "scripted-llama"\ntemperature = 0.2\n'
                              '[knowledge]\nenabled = false\n')
    body = {"model": "agent", "messages": [{"role": "user", "content": "Hi"}],
            **({"temperature": sent} if sent is not None else {})}
    answer = httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30,
                        headers={"authorization": f"Bearer {gateway.create_key()}"})
    assert answer.status_code == 200, answer.text
    backend = gateway.runtime.pipeline.router.backends["agent"]
    assert [job.sampling.temperature for job in backend.jobs] == [used]
