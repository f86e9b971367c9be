"""Refused requests (401, 403) are in the audit ledger, bounded against floods of bad keys."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from ownlight.audit.records import RefusalRecord
from ownlight.audit.refusals import PER_MINUTE, RefusalLog
from ownlight.auth import KeyStore
from ownlight.store.keys import SqliteKeys
from ownlight.store.sqlite import StateStore
from tests.conftest import upstream_toml
from tests.support.gateway import RunningGateway

CHAT = {"model": "cloud", "messages": [{"role": "user", "content": "hi"}]}


def ownlight(gateway: RunningGateway, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI on the gateway's data dir."""
    env = {**os.environ, "OWNLIGHT_DATA_DIR": str(gateway.config.data_dir)}
    return subprocess.run([sys.executable, "-m", "ownlight.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=True)


def prefix(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def refusals(gateway: RunningGateway, *filters: str) -> list[dict[str, Any]]:
    listed = ownlight(gateway, "audit", "list", "--kind", "refusal", "--limit", "1000",
                      "--json", *filters)
    return [r for r in json.loads(listed.stdout)]


def test_refusals_are_recorded_with_the_key_hash_address_route_and_reason(
        gateway_factory: Callable[..., RunningGateway], cloud: Any) -> None:
    gateway = gateway_factory(upstream_toml("cloud", cloud.url))
    url = gateway.url
    wrong = "ol-" + secrets.token_urlsafe(32)
    revoked = gateway.create_key("mallory")
    gateway.runtime.keys.revoke("mallory")
    user = gateway.create_key("bob")
    with httpx.Client(timeout=10) as http:
        assert http.post(url + "/v1/chat/completions", json=CHAT).status_code == 401
        assert http.post(url + "/v1/chat/completions", json=CHAT,
                         headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        assert http.post(url + "/v1/messages", json=CHAT,
                         headers={"x-api-key": revoked}).status_code == 401
        assert http.get(url + "/v1/models",  # a route of the Starlette app, not the hot path
                        headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        assert http.get(url + "/metrics",
                        headers={"Authorization": f"Bearer {user}"}).status_code == 403
        assert http.post(url + "/v1/chat/completions", json=CHAT,  # a valid key: no refusal
                         headers={"Authorization": f"Bearer {user}"}).status_code == 200
    gateway.runtime.pipeline.ledger.flush()

    found = refusals(gateway, "--status", "401")
    assert [(r["reason"], r["key"], r["endpoint"]) for r in found] == [
        ("missing_key", "none", "POST /v1/chat/completions"),
        ("unknown_key", prefix(wrong), "POST /v1/chat/completions"),
        ("revoked_key", prefix(revoked), "POST /v1/messages"),
        ("unknown_key", prefix(wrong), "GET /v1/models"),
    ]
    assert all(r["client"] == "127.0.0.1" and r["status"] == 401 for r in found)
    assert found[2]["principal"] == "mallory"  # whose revoked key knocked
    assert found[0]["error_code"] == "invalid_api_key"  # what the client was told
    (denied,) = refusals(gateway, "--status", "403")
    assert (denied["reason"], denied["principal"], denied["key"], denied["endpoint"]) == (
        "admin_only", "bob", prefix(user), "GET /metrics")

    shown = ownlight(gateway, "audit", "list", "--status", "401").stdout
    assert f"unknown_key key {prefix(wrong)} from 127.0.0.1" in shown
    assert "GET /v1/models" in shown
    everything = ownlight(gateway, "audit", "export").stdout
    assert wrong not in everything and revoked not in everything and user not in everything
    assert "ok:" in ownlight(gateway, "audit", "verify").stdout
    gateway.stop()
    for path in gateway.config.data_dir.rglob("*"):  # nor anywhere Ownlight keeps things
        if path.is_file():
            assert wrong.encode() not in path.read_bytes(), path


def test_a_flood_of_bad_keys_adds_a_bounded_number_of_records(
        gateway_factory: Callable[..., RunningGateway], cloud: Any) -> None:
    gateway = gateway_factory(upstream_toml("cloud", cloud.url))
    total, workers = 10_000, 8
    deadline = time.monotonic() + 120

    def knock(count: int) -> int:
        refused = 0
        with httpx.Client(base_url=gateway.url, timeout=10) as http:  # keep-alive
            for _ in range(count):
                if time.monotonic() > deadline:
                    break
                response = http.post("/v1/chat/completions", json=CHAT, headers={
                    "Authorization": f"Bearer ol-{secrets.token_hex(16)}"})
                refused += response.status_code == 401
        return refused

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        refused = sum(pool.map(knock, [total // workers] * workers))
    took = time.monotonic() - started
    assert refused == total, f"only {refused} requests in {took:.0f} s"
    gateway.stop()  # the open minute's aggregate is written as the ledger closes

    store = StateStore(gateway.config.data_dir / "state.db")
    records = [json.loads(str(r[0])) for r in store.query(
        "SELECT record FROM audit_log WHERE kind = 'refusal' ORDER BY seq")]
    minutes = int(took // 60) + 2  # the minutes the flood touched
    assert len(records) <= minutes * (PER_MINUTE + 1), len(records)
    own = [r for r in records if r["count"] == 1]
    folded = [r for r in records if r["count"] > 1]
    assert len(own) <= minutes * PER_MINUTE and 1 <= len(folded) <= minutes
    assert sum(r["count"] for r in records) == total  # every refusal is counted
    for aggregate in folded:
        assert aggregate["reason"] == "folded" and aggregate["client"] == "127.0.0.1"
        assert aggregate["reasons"] == {"unknown_key": aggregate["count"]}
        assert len(aggregate["keys"]) == 8 and aggregate["minute"]
        assert aggregate["endpoints"] == {"POST /v1/chat/completions": aggregate["count"]}
    shown = ownlight(gateway, "audit", "list", "--status", "401", "--limit", "1000").stdout
    assert f"({folded[0]['count']} refusals in {folded[0]['minute']})" in shown


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def scope(host: str, path: str = "/v1/chat/completions") -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "client": (host, 50000)}


def test_each_address_has_its_own_allowance_and_a_minute_closes_on_time() -> None:
    records: list[RefusalRecord] = []
    clock = Clock(60 * 1000 + 59.5)  # half a second before a minute ends
    log = RefusalLog(records.append, per_minute=3, clock=clock)

    async def flood() -> None:
        for _ in range(10):
            log(401, "unknown_key", "ab" * 32, scope("10.0.0.1"))
        log(401, "missing_key", None, scope("10.0.0.2"))
        assert len(records) == 4  # three of the flood's own, the other address's one
        clock.now += 0.5  # the minute ends with no refusal after it: the timer writes it
        await asyncio.sleep(0.8)

    asyncio.run(flood())
    assert len(records) == 5
    aggregate = records[-1]
    assert (aggregate.client, aggregate.count, aggregate.reasons, aggregate.keys) == (
        "10.0.0.1", 7, {"unknown_key": 7}, ["abababababab"])
    assert aggregate.minute == "1970-01-01T16:40+00:00"

    log(401, "unknown_key", "cd" * 32, scope("10.0.0.1"))  # a new minute: its own again
    assert records[-1].count == 1 and records[-1].key == "cdcdcdcdcdcd"


def test_a_valid_key_never_reaches_the_refusal_log(tmp_path: Path) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a valid key was reported as refused")

    keys = KeyStore(SqliteKeys(StateStore(tmp_path / "state.db")), refusals=fail)
    key, _ = keys.create("alice")
    assert keys.authenticate(key, scope("127.0.0.1")).name == "alice"
