"""The model registry and eval runs shared by two instances on one real PostgreSQL.

Each instance is a real server with its own data dir (its own machine, as far as model
files go); ``[store] url`` points both at the session's PostgreSQL. Versions are tiny GGUF
files whose fake-local backend answers with the text each carries, so a test can tell
which version answered on which instance. Promotions run in-process (only this process
knows the fake-local kind, and a promotion loads the version first).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from ownlight.backends import KINDS
from ownlight.cli import main
from ownlight.config import Config, load_config
from tests.support.gateway import RunningGateway
from tests.support.servers import Postgres, running
from tests.support.tiny_gguf import FAKE_CLASS, FAKE_KIND, write_tiny_gguf

MANAGED = f'[models.assistant]\nbackend = "{FAKE_KIND}"\npath = "registry:assistant"\n'


@pytest.fixture(autouse=True)
def fake_local_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, FAKE_KIND, FAKE_CLASS)


def run(config: Config, *args: str) -> Result:
    """A command on the machine of ``config`` (its data dir, whatever the environment's)."""
    return CliRunner().invoke(main, ["--config", str(config.source), *args],
                              env={"OWNLIGHT_DATA_DIR": str(config.data_dir)})


def cli(config: Config, *args: str) -> str:
    result = run(config, *args)
    assert result.exit_code == 0, result.output
    return result.output


def imported(config: Config, src: Path) -> str:
    return cli(config, "models", "import", str(src), "--name", "assistant").split()[-1]


def chat(gateway, key: str) -> tuple[int, str]:
    """(status, the answer or the error's message) of one chat request."""
    reply = httpx.post(gateway.url + "/v1/chat/completions", timeout=30,
                       headers={"authorization": f"Bearer {key}"},
                       json={"model": "assistant",
                             "messages": [{"role": "user", "content": "hi"}]})
    if reply.status_code != 200:
        return reply.status_code, reply.json()["error"]["message"]
    return 200, reply.json()["choices"][0]["message"]["content"]


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``condition`` held (fails after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def two(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Two running instances, each with its own data dir, on one PostgreSQL."""
    gateways = []
    for machine in ("a", "b"):
        path = tmp_path / f"{machine}.toml"
        path.write_text("[local]\nenabled = false\n" + MANAGED
                        + f'[store]\nurl = "{postgres_url}"\n')
        monkeypatch.setenv("OWNLIGHT_DATA_DIR", str(tmp_path / machine))  # the env's wins
        gateways.append(RunningGateway(load_config(path)))
    try:
        for gateway in gateways:
            gateway.start()
        files = {label: write_tiny_gguf(tmp_path / f"{label}.gguf", answer=label)
                 for label in ("one", "two")}
        yield gateways[0], gateways[1], files
    finally:
        for gateway in gateways:
            gateway.stop()


def test_promote_and_rollback_on_one_machine_are_followed_by_both(two) -> None:
    first, second, files = two
    a, b = first.config, second.config
    assert imported(a, files["one"]) == "assistant@1"
    assert imported(a, files["two"]) == "assistant@2"
    # The second machine's import of the same files records nothing new: it places them.
    assert imported(b, files["one"]) == "assistant@1"
    assert imported(b, files["two"]) == "assistant@2"
    listed = json.loads(cli(b, "models", "list", "--json"))
    assert [v["ref"] for v in listed["versions"]] == ["assistant@1", "assistant@2"]

    cli(a, "models", "promote", "assistant@1")
    key = first.create_key()
    for gateway in (first, second):
        assert wait_for(lambda g=gateway: chat(g, key) == (200, "one")) < 3

    cli(b, "models", "promote", "assistant@2")  # from the other machine
    for gateway in (first, second):
        assert wait_for(lambda g=gateway: chat(g, key) == (200, "two")) < 3
    # The idle follower had the new version loaded already: no first request waits.
    assert second.runtime.backends["assistant"].served_version == "assistant@2"

    cli(a, "models", "rollback", "assistant")
    for gateway in (first, second):
        assert wait_for(lambda g=gateway: chat(g, key) == (200, "one")) < 3
    history = json.loads(cli(b, "models", "history", "assistant", "--json"))
    assert [(h["action"], h["version"]) for h in history] == [
        ("promote", 1), ("promote", 2), ("rollback", 1)]


def test_an_instance_without_the_file_is_not_ready_and_serves_no_other_version(two) -> None:
    first, second, files = two
    a, b = first.config, second.config
    imported(a, files["one"])
    imported(b, files["one"])
    cli(a, "models", "promote", "assistant@1")
    key = first.create_key()
    admin = first.create_key("root", groups=("admin",))
    assert chat(second, key) == (200, "one")

    imported(a, files["two"])  # only the first machine holds @2
    cli(a, "models", "promote", "assistant@2")
    wait_for(lambda: chat(first, key) == (200, "two"))  # @1 answers while @2 loads
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:  # never "one", on any request
        status, message = chat(second, key)
        assert status == 503, message
        assert "does not hold assistant@2's file" in message
    refused = httpx.post(second.url + "/v1/chat/completions", timeout=30,
                         headers={"authorization": f"Bearer {key}"},
                         json={"model": "assistant", "messages": [{"role": "user",
                                                                   "content": "hi"}]})
    assert refused.json()["error"]["code"] == "model_not_ready"
    assert refused.headers["retry-after"] == "5"
    ready = httpx.get(second.url + "/readyz", headers={"authorization": f"Bearer {admin}"})
    assert ready.status_code == 503
    state = ready.json()["models"]["assistant"]
    assert state.startswith("failed: assistant@2 refused") and "import the same file" in state
    assert httpx.get(first.url + "/readyz").status_code == 200

    # The operator places the file; the instance notices within seconds, no restart.
    assert imported(b, files["two"]) == "assistant@2"
    assert wait_for(lambda: chat(second, key) == (200, "two")) < 4
    assert httpx.get(second.url + "/readyz").status_code == 200


SUITE = [{"id": "word", "prompt": "Say one", "category": "format",
          "check": {"type": "contains", "value": "one"}}]


def test_eval_runs_recorded_on_one_machine_are_listed_on_another(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs = []
    for machine in ("a", "b"):
        path = tmp_path / f"{machine}.toml"
        path.write_text("[local]\nenabled = false\n" + MANAGED
                        + f'[store]\nurl = "{postgres_url}"\n')
        monkeypatch.setenv("OWNLIGHT_DATA_DIR", str(tmp_path / machine))
        configs.append(load_config(path))
    a, b = configs
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps(SUITE[0]) + "\n")
    imported(a, write_tiny_gguf(tmp_path / "one.gguf", answer="one"))
    imported(a, write_tiny_gguf(tmp_path / "two.gguf", answer="two"))
    cli(a, "models", "promote", "assistant@1")
    cli(a, "eval", "run", str(suite), "--model", "assistant@2")
    stored = json.loads(cli(b, "eval", "list", "--json"))
    assert [(r["version"], r["score"]) for r in stored] == [(2, 0.0), (1, 1.0)]
    # The score recorded on machine a gates a promotion asked on machine b.
    refused = run(b, "models", "promote", "assistant@2", "--gate", "--suite", str(suite))
    assert refused.exit_code != 0 and "scores 0.0%" in refused.output


def test_db_copy_moves_the_registry_and_eval_runs(postgres_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A single machine's registry moves onto PostgreSQL as it is: versions, what each name
    serves, the switch history and eval runs; the same data dir then serves from it."""
    monkeypatch.setenv("OWNLIGHT_DATA_DIR", str(tmp_path / "data"))
    alone, shared = tmp_path / "alone.toml", tmp_path / "shared.toml"
    alone.write_text("[local]\nenabled = false\n" + MANAGED)
    shared.write_text(alone.read_text() + f'[store]\nurl = "{postgres_url}"\n')
    before = load_config(alone)
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps(SUITE[0]) + "\n")
    for label in ("one", "two"):
        imported(before, write_tiny_gguf(tmp_path / f"{label}.gguf", answer=label))
    cli(before, "models", "promote", "assistant@1")
    cli(before, "models", "promote", "assistant@2")
    cli(before, "models", "rollback", "assistant")
    cli(before, "eval", "run", str(suite), "--model", "assistant@2")
    views = [("models", "list", "--json"), ("models", "history", "assistant", "--json"),
             ("eval", "list", "--json")]
    seen = [json.loads(cli(before, *view)) for view in views]

    copied = cli(before, "db", "copy", "--to", postgres_url)
    assert "2 model version(s), 3 switch(es) and 2 eval run(s)" in copied
    after = load_config(shared)
    assert [json.loads(cli(after, *view)) for view in views] == seen
    cli(after, "models", "promote", "assistant@2")  # ids and the generation go on
    history = json.loads(cli(after, "models", "history", "assistant", "--json"))
    assert [h["action"] for h in history] == ["promote", "promote", "rollback", "promote"]


def test_a_lost_store_leaves_readyz_answering(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL stopped under an instance serving a registry name: ``/readyz`` says the
    store is unreachable (no traceback from the registry's counter), the idle follower
    keeps going, and readiness comes back with the store."""
    with running(Postgres()) as server:
        path = tmp_path / "a.toml"
        path.write_text("[local]\nenabled = false\n" + MANAGED
                        + f'[store]\nurl = "{server.database()}"\n')
        monkeypatch.setenv("OWNLIGHT_DATA_DIR", str(tmp_path / "a"))
        gateway = RunningGateway(load_config(path))
        try:
            gateway.start()
            imported(gateway.config, write_tiny_gguf(tmp_path / "one.gguf", answer="one"))
            cli(gateway.config, "models", "promote", "assistant@1")
            key = gateway.create_key()
            assert chat(gateway, key) == (200, "one")
            server.halt()
            time.sleep(1.5)  # the follower meets the lost store at least once
            ready = httpx.get(gateway.url + "/readyz", timeout=2)
            assert ready.status_code == 503 and ready.json()["store"] == "unreachable"
            server.resume()
            wait_for(lambda: httpx.get(gateway.url + "/readyz").status_code == 200, 20)
            assert chat(gateway, key) == (200, "one")
        finally:
            gateway.stop()


def test_imports_on_several_machines_at_once_take_turns(postgres_url: str,
                                                        tmp_path: Path) -> None:
    """Six imports of different files of one name, from six connections at once: six
    versions numbered 1 to 6, none refused for a number another took."""
    from concurrent.futures import ThreadPoolExecutor

    from ownlight.models.registry import Registry
    from ownlight.store.postgres import PostgresDatabase
    from ownlight.store.registry_rows import PostgresRegistryRows

    databases = [PostgresDatabase(postgres_url, max_connections=1) for _ in range(6)]
    try:
        def bring(i: int) -> int:
            src = write_tiny_gguf(tmp_path / f"f{i}.gguf", answer=f"answer {i}")
            registry = Registry(PostgresRegistryRows(databases[i]), tmp_path / f"m{i}", True)
            return registry.import_file(src, "assistant")[0].version

        with ThreadPoolExecutor(6) as pool:
            versions = sorted(pool.map(bring, range(6)))
    finally:
        for database in databases:
            database.close()
    assert versions == [1, 2, 3, 4, 5, 6]


def test_switches_from_several_machines_at_once_never_undo_each_other(
        postgres_url: str, tmp_path: Path) -> None:
    """Four operators promote different versions at once, each having seen nothing serve:
    one promotion is recorded, the others are refused as changed meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    from ownlight.models.registry import Registry, RegistryError
    from ownlight.store.postgres import PostgresDatabase
    from ownlight.store.registry_rows import PostgresRegistryRows

    databases = [PostgresDatabase(postgres_url, max_connections=1) for _ in range(4)]
    registries = [Registry(PostgresRegistryRows(db), tmp_path, True) for db in databases]
    try:
        for i in range(4):
            registries[0].import_file(write_tiny_gguf(tmp_path / f"f{i}.gguf",
                                                      answer=f"answer {i}"), "assistant")

        def promote(i: int) -> bool:
            try:
                registries[i].switch("assistant", "promote", i + 1, "cli", expect=None)
            except RegistryError as exc:
                assert "changed meanwhile" in str(exc)
                return False
            return True

        with ThreadPoolExecutor(4) as pool:
            done = list(pool.map(promote, range(4)))
        assert done.count(True) == 1
        assert len(registries[1].history("assistant")) == 1
        assert registries[2].generation() == 1
    finally:
        for database in databases:
            database.close()
