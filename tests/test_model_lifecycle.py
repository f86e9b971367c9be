"""Model lifecycle on real interfaces: the CLI, the state database, a running gateway.

Model versions here are tiny GGUF files the tests write with the ``gguf`` package; the
``fake-local`` backend answers with the text each file carries, so the tests can tell
which version answered. tests/test_model_lifecycle_real.py does the same with Gemma.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from ownlight.backends import KINDS
from ownlight.cli import main
from ownlight.models.describe import BASE_OVERHEAD, MB, describe
from ownlight.models.registry import Registry
from ownlight.store.sqlite import StateStore
from tests.support.tiny_gguf import FAKE_CLASS, FAKE_KIND, write_tiny_gguf

MANAGED = f'[models.assistant]\nbackend = "{FAKE_KIND}"\npath = "registry:assistant"\n'


@pytest.fixture(autouse=True)
def fake_local_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, FAKE_KIND, FAKE_CLASS)


def ownlight(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ownlight.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))


def cli(config: Path, *args: str) -> tuple[int, str]:
    """In-process, where the command must load a fake-local model (an eval run)."""
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def promoted(config: Path, ref: str, *args: str) -> bool:
    """Promote in-process: the promotion loads the version first, and only this process
    knows the fake-local kind (it tells the child that loads it)."""
    code, output = cli(config, "models", "promote", ref, *args)
    assert code == 0 or "Error:" in output, output
    return code == 0


def write_config(tmp_path: Path, toml: str = "") -> Path:
    path = tmp_path / "ownlight.toml"
    path.write_text("[local]\nenabled = false\n" + toml)  # data: $OWNLIGHT_DATA_DIR
    return path


def imported(config: Path, tmp_path: Path, label: str, **tiny: object) -> str:
    src = write_tiny_gguf(tmp_path / f"{label}.gguf", **tiny)  # type: ignore[arg-type]
    done = ownlight(config, "models", "import", str(src), "--name", "assistant")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def audit_records(config: Path, kind: str) -> list[dict]:
    listed = ownlight(config, "audit", "list", "--kind", kind, "--limit", "100000", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def ask(gateway, key: str, stream: bool = False) -> tuple[str, str]:
    """(the route header, the answer) of one chat request."""
    body = {"model": "assistant", "messages": [{"role": "user", "content": "hi"}],
            "stream": stream}
    headers = {"authorization": f"Bearer {key}"}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body,
                      headers=headers, timeout=30) as reply:
        reply.read()
        assert reply.status_code == 200, reply.text
        route = reply.headers["x-ownlight-route"]
        if not stream:
            return route, reply.json()["choices"][0]["message"]["content"]
        text = ""
        for line in reply.text.splitlines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    text += choice["delta"].get("content") or ""
        return route, text.strip()


# -- import and describe ------------------------------------------------------------------


def test_import_describe_and_list(tmp_path: Path, hermetic_env: Path) -> None:
    config = write_config(tmp_path)
    src = write_tiny_gguf(tmp_path / "tiny.gguf", name="Tiny One", license="Apache 2.0")
    assert ownlight(config, "models", "import", str(src), "--name", "assistant").stdout \
        .strip() == "assistant@1"
    again = ownlight(config, "models", "import", str(src), "--name", "assistant")
    assert again.stdout.strip() == "assistant@1" and "already" in again.stderr
    shown = json.loads(ownlight(config, "models", "show", "assistant@1", "--json").stdout)
    assert shown["architecture"] == "llama" and shown["name"] == "Tiny One"
    assert shown["parameters"].endswith("(4096)") and shown["quantization"] == "ALL_F32"
    assert shown["context_length"] == 2048 and shown["vocab_size"] == 5
    assert shown["tokenizer"] == "llama" and "messages" in shown["chat_template"]
    assert shown["license"] == "apache-2.0" and shown["allowed for commercial"] == "yes"
    assert shown["memory at n_ctx=4096"] == "73.0 MB"
    stored = Path(shown["file"])
    assert stored.is_relative_to(hermetic_env) and stored.stat().st_ino == src.stat().st_ino
    copied = write_tiny_gguf(tmp_path / "two.gguf", answer="two")
    assert ownlight(config, "models", "import", str(copied), "--name", "assistant",
                    "--copy").stdout.strip() == "assistant@2"
    listed = json.loads(ownlight(config, "models", "list", "--json").stdout)
    assert [v["ref"] for v in listed["versions"]] == ["assistant@1", "assistant@2"]
    assert not any(v["serving"] for v in listed["versions"])
    assert [r["action"] for r in audit_records(config, "admin")] == ["model.import"] * 2


def test_memory_estimate_and_refusals_of_bad_files(tmp_path: Path) -> None:
    src = write_tiny_gguf(tmp_path / "tiny.gguf", weights=64 * 1024)
    facts = describe(src)
    assert facts.weights_bytes == 256 * 1024
    assert facts.memory_needed(1000) == 256 * 1024 + 256 * 1000 + BASE_OVERHEAD
    config = write_config(tmp_path)
    (tmp_path / "junk.gguf").write_bytes(b"not a model at all")
    refused = ownlight(config, "models", "import", str(tmp_path / "junk.gguf"), "--name", "x")
    assert refused.returncode != 0 and "not a GGUF file" in refused.stderr
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(src.read_bytes()[:200])
    refused = ownlight(config, "models", "import", str(cut), "--name", "x")
    assert refused.returncode != 0 and "truncated" in refused.stderr


# -- licences -----------------------------------------------------------------------------


def test_licence_policy_blocks_a_promotion(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    ref = imported(config, tmp_path, "nc", license="cc-by-nc-4.0")
    refused = ownlight(config, "models", "promote", ref)
    assert refused.returncode != 0
    assert "does not allow commercial use" in refused.stderr
    unknown = imported(config, tmp_path, "unknown", license=None, answer="other")
    refused = ownlight(config, "models", "promote", unknown)
    assert refused.returncode != 0 and "not one Ownlight knows" in refused.stderr
    table = json.loads(ownlight(config, "models", "licenses", "--json").stdout)
    assert {"gemma", "llama3.1", "qwen", "apache-2.0", "mit"} <= {r["id"] for r in
                                                                  table["licenses"]}
    assert [(m["model"], m["allowed"]) for m in table["models"]] == [
        ("assistant@1", False), ("assistant@2", False)]
    internal = write_config(tmp_path, MANAGED + "[lifecycle]\ndeployment_use = \"internal\"\n")
    assert promoted(internal, ref)


# -- promote and roll back under load -----------------------------------------------------


def test_promote_and_rollback_under_load_fail_no_request(tmp_path: Path,
                                                        gateway_factory) -> None:
    gateway = gateway_factory(MANAGED)
    config = gateway.config.source
    one = imported(config, tmp_path, "one", answer="one", delay_ms=40)
    two = imported(config, tmp_path, "two", answer="two", delay_ms=40)
    key = gateway.create_key()
    with pytest.raises(AssertionError, match="no version is promoted"):
        ask(gateway, key)
    assert promoted(config, one)
    assert ask(gateway, key) == ("assistant/assistant@1", "one")

    seen: list[tuple[str, str]] = []
    failures: list[str] = []
    stop = threading.Event()

    def client(stream: bool) -> None:
        while not stop.is_set():
            try:
                seen.append(ask(gateway, key, stream))
            except Exception as exc:  # every failure is counted, none may happen
                failures.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i % 2 == 1,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        assert promoted(config, two)
        _wait_for(lambda: seen and seen[-1][1] == "two")
        time.sleep(0.3)
        rolled = ownlight(config, "models", "rollback", "assistant")
        assert rolled.returncode == 0 and rolled.stdout.strip() == "assistant@1"
        _wait_for(lambda: seen[-1][1] == "one")
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert len(seen) > 50
    # every answer came from the version its route header names
    assert all(route == f"assistant/assistant@{ {'one': 1, 'two': 2}[text]}"
               for route, text in seen)
    answers = [text for _, text in seen]
    assert "two" in answers and answers[-1] == "one"
    history = json.loads(ownlight(config, "models", "history", "assistant", "--json").stdout)
    assert [(h["action"], h["version"]) for h in history] == [
        ("promote", 1), ("promote", 2), ("rollback", 1)]
    actions = [(r["action"], r["subject"]) for r in audit_records(config, "admin")]
    assert ("model.promote", "assistant@2") in actions
    assert ("model.rollback", "assistant@1") in actions
    assert ("model.switch", "assistant@2") in actions
    requests = audit_records(config, "request")
    assert {r["route"] for r in requests if r["status"] == 200} == {
        "assistant/assistant@1", "assistant/assistant@2"}
    models = httpx.get(gateway.url + "/v1/models",
                       headers={"authorization": f"Bearer {key}"}).json()["data"]
    assert next(m for m in models if m["id"] == "assistant")["version"] == "assistant@1"


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_corrupted_version_is_refused_while_the_old_one_serves(tmp_path: Path,
                                                              gateway_factory) -> None:
    gateway = gateway_factory(MANAGED)
    config = gateway.config.source
    one = imported(config, tmp_path, "one", answer="one")
    assert promoted(config, one)
    key = gateway.create_key()
    assert ask(gateway, key)[1] == "one"
    data = gateway.config.data_dir
    registry = Registry(StateStore(data / "state.db"), data)

    two = imported(config, tmp_path, "two", answer="two")
    path = registry.get("assistant", 2).path
    path.write_bytes(path.read_bytes()[:-100])  # truncated on disk
    refused = ownlight(config, "models", "promote", two)
    assert refused.returncode != 0
    assert "assistant@2" in refused.stderr and "truncated" in refused.stderr
    assert ask(gateway, key) == ("assistant/assistant@1", "one")

    three = imported(config, tmp_path, "three", answer="three")
    assert promoted(config, three)
    path = registry.get("assistant", 3).path
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # one bit flipped after the promotion, before the server loads it
    path.write_bytes(bytes(data))
    for _ in range(3):
        assert ask(gateway, key) == ("assistant/assistant@1", "one")
    _wait_for(lambda: any(r["action"] == "model.load_refused"
                          for r in audit_records(config, "admin")))
    refusal = next(r for r in audit_records(config, "admin")
                   if r["action"] == "model.load_refused")
    assert refusal["subject"] == "assistant@3"
    assert "sha256" in refusal["details"]["reason"]
    assert refusal["details"]["serving"] == "assistant@1"
    rolled = ownlight(config, "models", "rollback", "assistant")
    assert rolled.returncode == 0 and ask(gateway, key)[1] == "one"


# -- the eval gate ------------------------------------------------------------------------

GOOD = 'Paris {"ok": 1} 2024-01-01 is day 42'
SUITE = [
    {"id": "capital", "prompt": "Capital of France?", "category": "facts",
     "check": {"type": "contains", "value": "Paris"}},
    {"id": "sum", "prompt": "40 + 2?", "category": "arithmetic",
     "check": {"type": "numeric", "value": 42}},
    {"id": "shape", "prompt": "JSON please", "category": "format",
     "check": {"type": "json_schema", "schema": {"type": "object", "required": ["ok"]}}},
    {"id": "pattern", "prompt": "A date", "category": "format",
     "check": {"type": "regex", "pattern": "\\d{4}-\\d{2}-\\d{2}"}},
    {"id": "word", "prompt": "Say yes", "lang": "en", "category": "format",
     "check": {"type": "exact", "value": GOOD}},
]


def test_eval_gate_passes_and_refuses(tmp_path: Path) -> None:
    config = write_config(tmp_path, MANAGED)
    suite = tmp_path / "mine.jsonl"
    suite.write_text("\n".join(json.dumps(item) for item in SUITE) + "\n")
    good = imported(config, tmp_path, "good", answer=GOOD)
    worse = imported(config, tmp_path, "worse", answer="Paris, I think")
    same = imported(config, tmp_path, "same", answer=GOOD + ".")
    assert promoted(config, good)

    code, out = cli(config, "eval", "run", str(suite), "--model", worse, "--json")
    assert code == 0, out
    view = json.loads(out)
    assert view["run"]["score"] == 0.2 and view["comparison"]["current_score"] == 1.0
    assert view["comparison"]["losses"] == ["sum", "shape", "pattern", "word"]
    assert view["gate"]["refusal"]

    refused = ownlight(config, "models", "promote", worse, "--gate", "--suite", str(suite))
    assert refused.returncode != 0
    assert "scores 20.0%" in refused.stderr and "80.0% below assistant@1 (100.0%)" in \
        refused.stderr
    assert "Items lost (4): sum, shape, pattern, word" in refused.stderr

    not_run = ownlight(config, "models", "promote", same, "--gate", "--suite", str(suite))
    assert not_run.returncode != 0 and "eval run" in not_run.stderr
    code, out = cli(config, "eval", "run", str(suite), "--model", same)
    assert code == 0, out
    assert promoted(config, same, "--gate", "--suite", str(suite))
    stored = json.loads(ownlight(config, "eval", "list", "--json").stdout)
    assert [(r["version"], r["score"]) for r in stored] == [(2, 0.2), (1, 1.0), (3, 1.0)]
    record = [r for r in audit_records(config, "admin") if r["action"] == "model.promote"][-1]
    assert record["details"]["gate"]["candidate_score"] == 1.0


def test_default_suite_ships_in_four_languages() -> None:
    from ownlight.evals.suite import load_suite

    suite = load_suite("default")
    assert len(suite.items) >= 30
    assert {i.lang for i in suite.items} == {"en", "zh", "ja", "ru"}
    assert {i.category for i in suite.items} == {"arithmetic", "extraction", "format",
                                                "refusal"}


# -- several models under one memory budget -----------------------------------------------


def test_least_recently_used_model_is_unloaded(tmp_path: Path, gateway_factory) -> None:
    names = ("alpha", "beta", "gamma")
    toml = "".join(f'[models.{n}]\nbackend = "{FAKE_KIND}"\npath = "registry:{n}"\n'
                   for n in names)
    # each tiny model needs about 73 MB (mostly llama.cpp's fixed overhead): two fit
    gateway = gateway_factory(toml + "[lifecycle]\nmemory_budget_mb = 160\n")
    config = gateway.config.source
    for n in names:
        src = write_tiny_gguf(tmp_path / f"{n}.gguf", answer=n)
        assert ownlight(config, "models", "import", str(src), "--name", n).returncode == 0
        assert promoted(config, f"{n}@1")
    key = gateway.create_key()
    pool = gateway.runtime.lifecycle.pool

    def chat(alias: str) -> str:
        reply = httpx.post(gateway.url + "/v1/chat/completions", timeout=10,
                           headers={"authorization": f"Bearer {key}"},
                           json={"model": alias, "messages": [{"role": "user", "content": "?"}]})
        assert reply.status_code == 200, reply.text
        return reply.json()["choices"][0]["message"]["content"]

    assert [chat("alpha"), chat("beta")] == ["alpha", "beta"]
    assert pool.loaded() == ["alpha@1", "beta@1"]
    assert chat("gamma") == "gamma"
    assert pool.loaded() == ["beta@1", "gamma@1"] and pool.unloaded == ["alpha@1"]
    chat("beta")
    assert chat("alpha") == "alpha"  # loaded again; gamma was the least recently used
    assert pool.unloaded == ["alpha@1", "gamma@1"]
    assert pool.used() <= 160 * MB


def test_a_model_in_use_is_never_unloaded(tmp_path: Path) -> None:
    from ownlight.backends.pool import ModelPool
    from ownlight.config import load_config
    from ownlight.errors import UpstreamUnavailable
    from tests.support.tiny_gguf import FakeLocalBackend

    entry = load_config(write_config(tmp_path, MANAGED)).models["assistant"]

    async def scenario() -> None:
        pool = ModelPool(budget=100 * MB)

        async def load() -> FakeLocalBackend:
            return FakeLocalBackend(entry, None)

        held = await pool.lease("a@1", 60 * MB, load)
        with pytest.raises(UpstreamUnavailable, match="Not enough memory to load b@1"):
            await pool.lease("b@1", 60 * MB, load)
        held.release()
        await pool.lease("b@1", 60 * MB, load)
        assert pool.loaded() == ["b@1"] and pool.unloaded == ["a@1"]
        assert held.backend.closed  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_promoted_name_is_served_without_a_models_table(tmp_path: Path) -> None:
    from ownlight.backends.managed import Lifecycle, ManagedBackend
    from ownlight.config import load_config
    from ownlight.runtime import build_backends, state_path

    config_path = write_config(tmp_path, MANAGED)  # promoted as the fake-local kind
    imported(config_path, tmp_path, "one", answer="one")
    assert promoted(config_path, "assistant@1")
    served = tmp_path / "served.toml"
    served.write_text("[local]\nenabled = true\n")
    config = load_config(served)
    lifecycle = Lifecycle.from_config(config, StateStore(state_path(config)))
    backends = build_backends(config.models, config, lifecycle)
    assert isinstance(backends["assistant"], ManagedBackend)
    assert backends["assistant"].entry.backend == "llama"
    assert "local" in backends  # the configured aliases are still there


def test_readyz_says_why_a_refused_model_cannot_serve(tmp_path: Path) -> None:
    from ownlight.config import load_config
    from tests.support.gateway import RunningGateway

    config = write_config(tmp_path, MANAGED)
    one = imported(config, tmp_path, "one", answer="one")
    assert promoted(config, one)
    data_dir = Path(os.environ["OWNLIGHT_DATA_DIR"])
    path = Registry(StateStore(data_dir / "state.db"), data_dir).get("assistant", 1).path
    path.write_bytes(path.read_bytes()[:-100])  # truncated before the server starts
    gateway = RunningGateway(load_config(config))
    try:
        with pytest.raises(RuntimeError, match="not ready"):  # it never becomes ready
            gateway.start(ready_timeout=3)
        admin = gateway.create_key("root", groups=("admin",))
        ready = httpx.get(gateway.url + "/readyz", headers={"Authorization": f"Bearer {admin}"})
    finally:
        gateway.stop()
    assert ready.status_code == 503
    status = ready.json()["models"]["assistant"]
    assert status.startswith("failed: assistant@1 refused") and "truncated" in status
