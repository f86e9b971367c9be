"""Keys held in memory on every instance, told of each change by PostgreSQL.

Three real gateways share one real PostgreSQL store; each keeps the active keys in memory
(``store.key_cache``). A key revoked from the command line, or on one instance, is refused
by every instance within a second; a key made on one is heard by the others and checked in
their memory; a cache that cannot hear the database stops being trusted and the check
fails closed.
"""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from ownlight.auth import hash_key
from ownlight.cli import main
from ownlight.store.key_cache import STALE_AFTER, CachedKeys
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import RunningGateway
from tests.support.servers import Postgres, running


def cli(tmp_path: Path, url: str, *args: str) -> str:
    env = {"OWNLIGHT_DATA_DIR": str(tmp_path / "operator"), "OWNLIGHT_STORE_URL": url}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def cache_of(gateway: RunningGateway) -> CachedKeys:
    assert gateway.runtime.stores is not None
    keys = gateway.runtime.stores.keys
    assert isinstance(keys, CachedKeys)
    return keys


def ask(client: openai.OpenAI) -> str | None:
    reply = client.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": "hello"}])
    return reply.choices[0].message.content


def refused_within(gateways: list[RunningGateway], key: str, since: float) -> list[float]:
    """Ask every instance until each refuses the key; the seconds each took after ``since``."""
    took: list[float] = []
    for gateway in gateways:
        client = gateway.client(key)
        while True:
            try:
                ask(client)
            except openai.AuthenticationError:
                took.append(time.monotonic() - since)
                break
            assert time.monotonic() - since < 5, f"{gateway.url} still takes the key"
            time.sleep(0.01)
    return took


def test_a_revoked_key_is_refused_by_every_instance_within_a_second(
        gateway_factory, fake_upstream: FakeUpstream, postgres_url: str,
        tmp_path: Path) -> None:
    toml = upstream_toml("cloud", fake_upstream.url, "fake-echo", retries=0)
    toml += f'[store]\nurl = "{postgres_url}"\n'
    gateways = [gateway_factory(toml) for _ in range(3)]
    key = gateways[0].create_key("alice")
    carol = gateways[1].create_key("carol")
    for gateway in gateways:  # every instance takes both, from memory
        assert ask(gateway.client(key)) == ask(gateway.client(carol)) == "You said: hello"
        assert hash_key(key) in cache_of(gateway)._keys

    assert "revoked 1 key(s)" in cli(tmp_path, postgres_url, "keys", "revoke", "alice")
    took = refused_within(gateways, key, time.monotonic())
    print(f"\nrevoked from the CLI: refused after {[f'{t * 1000:.0f} ms' for t in took]}")
    assert max(took) < 1.0

    started = time.monotonic()
    assert gateways[2].runtime.keys.revoke("carol") == 1  # revoked on one instance
    took = refused_within(gateways, carol, started)
    print(f"revoked on one instance: refused after {[f'{t * 1000:.0f} ms' for t in took]}")
    assert max(took) < 1.0


def test_a_new_key_is_heard_by_every_instance(gateway_factory, fake_upstream: FakeUpstream,
                                              postgres_url: str, tmp_path: Path) -> None:
    toml = upstream_toml("cloud", fake_upstream.url, "fake-echo", retries=0)
    toml += f'[store]\nurl = "{postgres_url}"\n'
    first, second = gateway_factory(toml), gateway_factory(toml)
    key = first.create_key("dana", tenant="acme")
    assert ask(second.client(key)) == "You said: hello"  # at once: a miss reads the store
    made = cli(tmp_path, postgres_url, "keys", "create", "--name", "erin").split()
    cli_key = next(word for word in made if word.startswith("ol-"))
    deadline = time.monotonic() + 1.0
    for gateway in (first, second):
        cache = cache_of(gateway)
        while not {hash_key(key), hash_key(cli_key)} <= set(cache._keys):
            assert time.monotonic() < deadline, "the new keys were not heard"
            time.sleep(0.01)
        assert cache._keys[hash_key(key)].tenant == "acme"
        assert cache.live


def test_a_cache_that_cannot_hear_is_not_trusted(gateway_factory, fake_upstream: FakeUpstream
                                                 ) -> None:
    """PostgreSQL stopped: the cache is dropped within a second and the key check fails
    closed with 503 (no key is trusted); once the server is back, the cache loads again."""
    with running(Postgres()) as server:
        url = server.database()
        toml = upstream_toml("cloud", fake_upstream.url, "fake-echo", retries=0)
        gateway = gateway_factory(toml + f'[store]\nurl = "{url}"\n')
        client = gateway.client(gateway.create_key("alice"))
        assert ask(client) == "You said: hello"
        cache = cache_of(gateway)
        server.halt()
        halted = time.monotonic()
        while cache.live:
            assert time.monotonic() - halted < STALE_AFTER + 0.1
            time.sleep(0.01)
        with pytest.raises(openai.InternalServerError) as failed:
            ask(client)
        assert failed.value.response.json()["error"]["code"] == "store_unavailable"
        server.resume()
        deadline = time.monotonic() + 20
        while not cache.live:
            assert time.monotonic() < deadline, "the cache did not come back"
            time.sleep(0.1)
        while True:
            try:
                assert ask(client) == "You said: hello"
                break
            except openai.InternalServerError:
                assert time.monotonic() < deadline, "the store did not come back"
                time.sleep(0.2)
