"""Budgets and circuits shared through Redis hold across instances, and a lost Redis stops
only spending.

Three real gateways share one real PostgreSQL store and one real Redis; 200 priced requests,
sent at once through the real ``openai`` and ``anthropic`` SDKs and spread over the three,
go against a small tenant budget. With Redis they spend at most the limit plus one request's
most cost; the same burst without Redis (spend checked before, counted after) goes far over,
which is what the shared counters are for. The upstreams are fake servers on 127.0.0.1 that
record what reaches them, so the tests count what really went out.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import anthropic
import httpx
import openai
import psycopg
import pytest

from ownlight.config import load_config
from ownlight.config.reference import effective_view
from ownlight.routing.counters import Limit, Reservation, SharedCounters
from ownlight.routing.health import HealthPolicy, HealthTracker
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import Redis, running

PRICE = 1000.0  # USD per million tokens, in and out
REAL_COST = (7 + 4) * PRICE / 1e6  # the fake upstream reports 7 prompt and 4 answer tokens
MAX_TOKENS = 16
# the most a "hello" may cost: its 5 bytes and 32 tokens of template, and 16 answer tokens
MOST_COST = (5 + 32 + MAX_TOKENS) * PRICE / 1e6
LIMIT = 0.5
BURST = 200


def budget_toml(tenant: str) -> str:
    return (f'[[routing.budgets]]\nscope = "tenant"\nmatch = "{tenant}"\nperiod = "day"\n'
            f"limit_usd = {LIMIT}\n")


def spent(postgres_url: str, tenant: str) -> float:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT usd FROM spend WHERE scope = 'tenant' AND subject = %s"
                           " AND period = %s", (tenant, day)).fetchone()
    return float(row[0]) if row else 0.0


async def burst(urls: list[str], key: str) -> list[str]:
    """BURST requests at once, round-robin over the gateways, alternately through the openai
    and anthropic SDKs; each one's outcome: "ok", or the error code."""
    clients = [(openai.AsyncOpenAI(base_url=u + "/v1", api_key=key, max_retries=0, timeout=60),
                anthropic.AsyncAnthropic(base_url=u, api_key=key, max_retries=0, timeout=60))
               for u in urls]

    async def one(n: int) -> str:
        chat, messages = clients[n % len(clients)]
        try:
            if n % 2:
                await chat.chat.completions.create(
                    model="cloud", max_tokens=MAX_TOKENS,
                    messages=[{"role": "user", "content": "hello"}])
            else:
                await messages.messages.create(
                    model="cloud", max_tokens=MAX_TOKENS,
                    messages=[{"role": "user", "content": "hello"}])
        except openai.APIStatusError as exc:
            return str(exc.body.get("code") if isinstance(exc.body, dict) else exc.status_code)
        except anthropic.APIStatusError as exc:
            return str(exc.status_code)
        return "ok"

    try:
        return await asyncio.gather(*(one(n) for n in range(BURST)))
    finally:
        for chat, messages in clients:
            await chat.close()
            await messages.close()


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "no-redis"])
def test_a_burst_over_three_instances_keeps_to_the_budget(
        shared: bool, gateway_factory, fake_upstream: FakeUpstream, postgres_url: str,
        redis_server: Redis) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:8]}"
    toml = upstream_toml("cloud", fake_upstream.url, "fake-echo", retries=0,
                         price_in=PRICE, price_out=PRICE)
    toml += budget_toml(tenant) + f'[store]\nurl = "{postgres_url}"\n'
    if shared:
        toml += f'[redis]\nurl = "{redis_server.url}"\n'
    gateways = [gateway_factory(toml) for _ in range(3)]
    key = gateways[0].create_key("alice", tenant=tenant)

    outcomes = asyncio.run(burst([g.url for g in gateways], key))

    answered = outcomes.count("ok")
    total = spent(postgres_url, tenant)
    assert len(fake_upstream.received) == answered
    assert total == pytest.approx(answered * REAL_COST)
    print(f"\n{'with' if shared else 'without'} Redis: {answered} of {BURST} answered, "
          f"spent {total:.3f} USD against a limit of {LIMIT} (most per request "
          f"{MOST_COST:.3f})")
    if shared:
        assert total <= LIMIT + MOST_COST
        assert answered >= 1
        refused = [o for o in outcomes if o != "ok"]
        assert set(refused) <= {"budget_exceeded", "429"}
    else:  # the contrast: checked before and counted after, the burst goes far over
        assert total > LIMIT + MOST_COST


def test_a_lost_redis_stops_priced_requests_and_keeps_local_ones(
        gateway_factory, fake_upstream: FakeUpstream, cloud: FakeUpstream,
        postgres_url: str) -> None:
    """Redis stopped under two running instances: a priced request is refused 503
    ``counters_unavailable`` with ``Retry-After`` in the client's protocol shape, nothing
    reaches the paid upstream, a free inside-domain model still answers and a routed alias
    falls back to it; /readyz says so (the instance stays ready for local models); after
    Redis restarts (empty) budgets work again."""
    with running(Redis()) as redis_server:
        tenant = f"acme-{uuid.uuid4().hex[:8]}"
        toml = upstream_toml("cloud", cloud.url, "fake-echo", retries=0,
                             price_in=PRICE, price_out=PRICE)
        toml += upstream_toml("inhouse", fake_upstream.url, "fake-echo", retries=0,
                              inside_domain=True)
        toml += '[routing.aliases.auto]\ntargets = ["cloud", "inhouse"]\nthreshold = -1.0\n'
        toml += budget_toml(tenant) + f'[store]\nurl = "{postgres_url}"\n'
        toml += f'[redis]\nurl = "{redis_server.url}"\n'
        first, second = gateway_factory(toml), gateway_factory(toml)
        key = first.create_key("alice", tenant=tenant)
        clients = [g.client(key) for g in (first, second)]
        talk = [anthropic.Anthropic(base_url=g.url, api_key=key, max_retries=0)
                for g in (first, second)]

        def ask(client: openai.OpenAI, model: str = "cloud") -> str | None:
            reply = client.chat.completions.create(
                model=model, max_tokens=MAX_TOKENS,
                messages=[{"role": "user", "content": "hello"}])
            return reply.choices[0].message.content

        for client in clients:
            assert ask(client) == "You said: hello"
        sent = len(cloud.received)
        redis_server.halt()
        for client, messages in zip(clients, talk, strict=True):
            with pytest.raises(openai.InternalServerError) as failed:
                ask(client)
            assert failed.value.status_code == 503
            assert failed.value.response.headers["retry-after"] == "5"
            assert failed.value.response.json()["error"]["code"] == "counters_unavailable"
            started = time.monotonic()
            with pytest.raises(anthropic.InternalServerError) as refused:
                messages.messages.create(model="cloud", max_tokens=MAX_TOKENS,
                                         messages=[{"role": "user", "content": "hello"}])
            assert time.monotonic() - started < 0.5  # known down: refused at once
            assert refused.value.response.json()["type"] == "error"
            assert ask(client, "inhouse") == "You said: hello"
            routed = client.chat.completions.with_raw_response.create(
                model="auto", max_tokens=MAX_TOKENS,
                messages=[{"role": "user", "content": "hello"}])
            assert "shared counters unreachable" in routed.headers["x-ownlight-route-reason"]
        assert len(cloud.received) == sent  # nothing priced went out
        ready = httpx.get(first.url + "/readyz", timeout=2)  # still serves local models
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "redis": "unreachable"}

        redis_server.start()
        deadline = time.monotonic() + 10
        for client in clients:
            while True:
                try:
                    assert ask(client) == "You said: hello"
                    break
                except openai.InternalServerError:
                    assert time.monotonic() < deadline, "Redis did not come back"
                    time.sleep(0.1)
        assert httpx.get(first.url + "/readyz").json() == {"ready": True}
        # Redis came back empty: its sums were seeded again from PostgreSQL
        assert second.runtime.counters is not None
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        assert second.runtime.counters.spent(f"tenant/{tenant}/{day}") == pytest.approx(
            spent(postgres_url, tenant))


def test_an_upstream_failing_on_one_instance_opens_its_circuit_for_all(
        gateway_factory, fake_upstream: FakeUpstream, redis_server: Redis) -> None:
    """Two failures seen by the first instance open the circuit on the second too: its
    request is refused at once (502 circuit_open) and never reaches the upstream. With Redis
    gone, each instance falls back to its own circuit, which has seen no failure there."""
    alias = f"flaky{uuid.uuid4().hex[:6]}"
    toml = upstream_toml(alias, fake_upstream.url, "broken", retries=0, circuit_failures=2,
                         circuit_cooldown=30.0)
    toml += f'[redis]\nurl = "{redis_server.url}"\n'
    first, second = gateway_factory(toml), gateway_factory(toml)
    fake_upstream.failing.add("broken")
    one, two = first.client(), second.client()

    def ask(client: openai.OpenAI) -> str:
        try:
            client.chat.completions.create(model=alias,
                                           messages=[{"role": "user", "content": "hello"}])
        except openai.APIStatusError as exc:
            return str(exc.body.get("code") if isinstance(exc.body, dict) else exc.status_code)
        return "ok"

    assert [ask(one), ask(one)] == ["upstream_error", "upstream_error"]
    seen = len(fake_upstream.received)
    assert ask(two) == "circuit_open"
    assert len(fake_upstream.received) == seen  # the second instance sent nothing
    assert second.runtime.pipeline.health.circuits[alias].state == "closed"  # locally


def test_a_shared_circuit_falls_back_to_its_own_while_redis_is_away() -> None:
    with running(Redis()) as server:
        counters = SharedCounters(server.url, timeout=0.2)
        try:
            policy = HealthPolicy(failures=2, cooldown=30.0)
            circuit = HealthTracker(counters=counters).circuit("up", policy)
            circuit.failure()
            server.halt()
            circuit.failure()  # Redis is away: counted here only
            assert counters.down and circuit.state == "open"
            assert circuit.allow() is False  # the local circuit decides
            server.start()
            deadline = time.monotonic() + 5
            while counters.down:
                assert time.monotonic() < deadline, "Redis not heard again"
                time.sleep(0.05)
            assert circuit.allow() is True  # Redis decides again (it restarted empty)
        finally:
            counters.close()


def test_the_redis_url_is_a_secret(hermetic_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNLIGHT_REDIS_URL", "redis://:hunter2@redis.internal:6379/0")
    config = load_config()
    assert config.settings.redis.url is not None
    assert config.settings.redis.url.reveal() == "redis://:hunter2@redis.internal:6379/0"
    assert "hunter2" not in str(effective_view(config))


def test_every_reservation_is_settled_and_a_dead_ones_lapses(
        gateway_factory, fake_upstream: FakeUpstream, postgres_url: str,
        redis_server: Redis) -> None:
    """Whole answers, streams and failed calls all release what they reserved; a reservation
    nobody settles (its instance died) holds its money only until it expires."""
    tenant = f"acme-{uuid.uuid4().hex[:8]}"
    toml = upstream_toml("cloud", fake_upstream.url, "fake-echo", retries=0,
                         price_in=PRICE, price_out=PRICE)
    toml += upstream_toml("broken", fake_upstream.url, "broken", retries=0,
                          price_in=PRICE, price_out=PRICE)
    toml += budget_toml(tenant) + f'[store]\nurl = "{postgres_url}"\n'
    toml += f'[redis]\nurl = "{redis_server.url}"\n'
    gateway = gateway_factory(toml)
    client = gateway.client(gateway.create_key("alice", tenant=tenant))
    fake_upstream.failing.add("broken")
    hello = [{"role": "user", "content": "hello"}]
    client.chat.completions.create(model="cloud", max_tokens=MAX_TOKENS, messages=hello)
    stream = client.chat.completions.create(model="cloud", max_tokens=MAX_TOKENS,
                                            messages=hello, stream=True,
                                            stream_options={"include_usage": True})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="broken", max_tokens=MAX_TOKENS, messages=hello)
    counters = gateway.runtime.counters
    assert counters is not None
    entry = f"tenant/{tenant}/{datetime.now(UTC).strftime('%Y-%m-%d')}"
    assert counters.reserved(entry) == 0
    assert counters.spent(entry) == pytest.approx(spent(postgres_url, tenant))

    dying = SharedCounters(redis_server.url, reservation_seconds=0.3)
    try:
        left = LIMIT - spent(postgres_url, tenant)
        held = dying.reserve([Limit(entry, LIMIT)], left - 0.001, lambda i: 0.0)
        assert isinstance(held, Reservation)  # never settled: its instance "died"
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="cloud", max_tokens=MAX_TOKENS, messages=hello)
        time.sleep(0.4)
        client.chat.completions.create(model="cloud", max_tokens=MAX_TOKENS, messages=hello)
    finally:
        dying.close()
