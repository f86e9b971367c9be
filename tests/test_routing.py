"""Dual-track routing through the gateway: two fake upstreams, one inside the domain
("home", standing in for a local model server) and one outside ("cloud").

The gateway is served in-process (the fast tier, ``app_gateway_factory``): HTTP is only the
transport here. A stream cut mid-answer stays on the real server, where the client sees the
first chunks arrive before the error.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest

from ownlight.routing.training import load_rows
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream, free_port

HI = [{"role": "user", "content": "hi"}]
# The first 300 rows of shared/eval/routing/dev.jsonl, kept here so a clean clone runs it.
DEV_ROUTING = Path(__file__).resolve().parent / "data" / "routing_dev_head300.jsonl"


@pytest.fixture
def home():
    with FakeUpstream(reply="answer from home") as upstream:
        yield upstream


@pytest.fixture
def cloud():
    with FakeUpstream(reply="answer from cloud") as upstream:
        yield upstream


def routed_toml(home: FakeUpstream, cloud: FakeUpstream, *, rules: str = "",
                cloud_model: str = "fake-model", cloud_url: str | None = None,
                extra: str = "", **cloud_opts: object) -> str:
    toml = upstream_toml("home", home.url, "fake-model", inside_domain=True, retries=0)
    opts = {"inside_domain": False, "retries": 0, **cloud_opts}
    toml += upstream_toml("cloud", cloud_url or cloud.url, cloud_model, **opts)
    toml += '[routing]\nallow_prefer = ["group:eng"]\n'
    toml += extra
    toml += '[routing.aliases.auto]\ntargets = ["cloud", "home"]\nthreshold = 0.5\n'
    toml += '[routing.aliases.cloud-only]\ntargets = ["cloud"]\n'
    return toml + rules


async def chat(client: openai.AsyncOpenAI, model: str = "auto", **kwargs: object):
    raw = await client.chat.completions.with_raw_response.create(model=model, messages=HI,
                                                                 **kwargs)
    return raw.parse(), raw.headers


@pytest.mark.anyio
async def test_cloud_rule_sends_to_cloud_and_says_why(app_gateway_factory, home, cloud) -> None:
    rules = '[[routing.rules]]\nname = "everything-to-cloud"\naction = "cloud"\n'
    gateway = await app_gateway_factory(routed_toml(home, cloud, rules=rules))
    reply, headers = await chat(gateway.client())
    assert reply.choices[0].message.content == "answer from cloud"
    assert headers["x-ownlight-route"] == "cloud/fake-model"
    assert headers["x-ownlight-route-reason"] == "rule everything-to-cloud"


@pytest.mark.parametrize(
    ("cloud_model", "cloud_url_dead", "reason"),
    [
        ("fake-500", False, "cloud upstream_error"),
        ("fake-429", False, "cloud rate_limit_exceeded"),
        ("fake-slow", False, "cloud upstream_timeout"),
        ("fake-model", True, "cloud upstream_unavailable"),
    ],
)
@pytest.mark.anyio
async def test_cloud_failure_falls_back_to_home(app_gateway_factory, home, cloud, cloud_model,
                                                cloud_url_dead, reason) -> None:
    rules = '[[routing.rules]]\nname = "to-cloud"\naction = "cloud"\n'
    dead = f"http://127.0.0.1:{free_port()}/v1" if cloud_url_dead else None
    gateway = await app_gateway_factory(routed_toml(home, cloud, rules=rules,
                                                    cloud_model=cloud_model, cloud_url=dead,
                                                    timeout=0.5))
    for stream in (False, True):
        raw = await gateway.client().chat.completions.with_raw_response.create(
            model="auto", messages=HI, stream=stream)
        assert raw.headers["x-ownlight-route"] == "home/fake-model"
        assert raw.headers["x-ownlight-route-reason"].startswith(f"fallback: {reason}")
        parsed = raw.parse()
        text = (parsed.choices[0].message.content if not stream else
                "".join([c.choices[0].delta.content or "" async for c in parsed if c.choices]))
        assert text == "answer from home"


def test_stream_cut_mid_answer_is_not_silently_replaced(gateway_factory, home, cloud) -> None:
    rules = '[[routing.rules]]\nname = "to-cloud"\naction = "cloud"\n'
    gateway = gateway_factory(routed_toml(home, cloud, rules=rules, cloud_model="fake-cut"))
    seen = []
    with pytest.raises(openai.APIError):
        for chunk in gateway.client().chat.completions.create(model="auto", messages=HI,
                                                              stream=True):
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "answer from"  # the client saw the cloud's start, then an error
    assert home.received == []  # no second answer was spliced in


@pytest.mark.anyio
async def test_circuit_opens_skips_the_target_then_recovers(
        app_gateway_factory, home, cloud) -> None:
    rules = '[[routing.rules]]\nname = "to-cloud"\naction = "cloud"\n'
    gateway = await app_gateway_factory(routed_toml(home, cloud, rules=rules, circuit_failures=2,
                                                    circuit_cooldown=1.0))
    client = gateway.client()
    cloud.failing.add("fake-model")
    for _ in range(2):
        assert (await chat(client))[1]["x-ownlight-route"] == "home/fake-model"
    calls = len(cloud.received)
    _, headers = await chat(client)
    assert len(cloud.received) == calls  # open circuit: the cloud was not even tried
    assert "cloud circuit_open" in headers["x-ownlight-route-reason"]
    cloud.failing.clear()
    await asyncio.sleep(1.1)
    _, headers = await chat(client)  # half-open: one probe goes through and succeeds
    assert headers["x-ownlight-route"] == "cloud/fake-model"
    assert len(cloud.received) == calls + 1


@pytest.mark.anyio
async def test_retries_with_backoff_before_failing_over(app_gateway_factory, home, cloud) -> None:
    rules = '[[routing.rules]]\nname = "to-cloud"\naction = "cloud"\n'
    gateway = await app_gateway_factory(routed_toml(home, cloud, rules=rules,
                                                    cloud_model="fake-500", retries=2,
                                                    backoff=0.01, circuit_failures=10))
    _, headers = await chat(gateway.client())
    assert headers["x-ownlight-route"] == "home/fake-model"
    assert len(cloud.received) == 3  # one try and two retries


@pytest.mark.anyio
async def test_forced_local_never_leaves_even_when_home_fails(
        app_gateway_factory, home, cloud) -> None:
    rules = ('[[routing.rules]]\nname = "finance-stays-home"\nwhen = { groups = ["finance"] }\n'
             'action = "local"\n[[routing.rules]]\nname = "rest"\naction = "cloud"\n')
    gateway = await app_gateway_factory(routed_toml(home, cloud, rules=rules))
    finance = gateway.client(gateway.create_key("fiona", ("finance", "eng")))
    reply, headers = await chat(finance, extra_headers={"x-ownlight-prefer": "cloud"})
    assert headers["x-ownlight-route"] == "home/fake-model"
    assert headers["x-ownlight-route-reason"] == "rule finance-stays-home"
    home.failing.add("fake-model")
    with pytest.raises(openai.InternalServerError):
        await chat(finance, extra_headers={"x-ownlight-prefer": "cloud"})
    with pytest.raises(openai.BadRequestError) as caught:
        await chat(finance, model="cloud-only")  # no local target: refused, nothing sent
    assert caught.value.code == "policy_local_only"
    assert cloud.received == []


@pytest.mark.anyio
async def test_prefer_header_only_for_keys_allowed_to_choose(
        app_gateway_factory, home, cloud) -> None:
    rules = '[[routing.rules]]\nname = "default-home"\naction = "score"\nwhen = {}\n'
    toml = routed_toml(home, cloud, rules=rules).replace("threshold = 0.5", "threshold = 1.0")
    gateway = await app_gateway_factory(toml)
    engineer = gateway.client(gateway.create_key("erin", ("eng",)))
    sales = gateway.client(gateway.create_key("sam", ("sales",)))
    _, headers = await chat(engineer, extra_headers={"x-ownlight-prefer": "cloud"})
    assert headers["x-ownlight-route"] == "cloud/fake-model"
    assert headers["x-ownlight-route-reason"] == "header x-ownlight-prefer=cloud"
    _, headers = await chat(sales, extra_headers={"x-ownlight-prefer": "cloud"})
    assert headers["x-ownlight-route"] == "home/fake-model"  # header ignored
    assert headers["x-ownlight-route-reason"].startswith("complexity=")


@pytest.mark.anyio
async def test_deny_rule_is_a_400_refusal(app_gateway_factory, home, cloud) -> None:
    rules = ('[[routing.rules]]\nname = "no-contractors"\nwhen = { tenants = ["contractors"] }\n'
             'action = "deny"\n')
    gateway = await app_gateway_factory(routed_toml(home, cloud, rules=rules))
    with pytest.raises(openai.BadRequestError):
        await chat(gateway.client(gateway.create_key("cy", tenant="contractors")))
    assert home.received == [] and cloud.received == []


@pytest.mark.anyio
async def test_budget_exhaustion_goes_local_then_429_then_resets(
        app_gateway_factory, home, cloud) -> None:
    rules = '[[routing.rules]]\nname = "to-cloud"\naction = "cloud"\n'
    budgets = ('[[routing.budgets]]\nscope = "key"\nmatch = "*"\nperiod = "day"\n'
               'limit_usd = 1.0\n')
    # 7 prompt tokens at 100,000 USD per million: 0.70 USD a request.
    gateway = await app_gateway_factory(routed_toml(home, cloud, rules=rules, extra=budgets,
                                                    price_in=100000.0))
    client = gateway.client(gateway.create_key("bo"))
    assert (await chat(client))[1]["x-ownlight-route"] == "cloud/fake-model"
    assert (await chat(client))[1]["x-ownlight-route"] == "cloud/fake-model"  # 0.70 < 1.0
    _, headers = await chat(client)
    assert headers["x-ownlight-route"] == "home/fake-model"
    assert "budget: key bo reached its day limit of 1 USD" in headers["x-ownlight-route-reason"]
    with pytest.raises(openai.RateLimitError) as caught:
        await chat(client, model="cloud-only")
    assert caught.value.code == "budget_exceeded"
    other = gateway.client(gateway.create_key("di"))  # budgets are per key
    assert (await chat(other))[1]["x-ownlight-route"] == "cloud/fake-model"

    book = gateway.runtime.pipeline.budgets
    book.now = lambda: datetime.now(UTC) + timedelta(days=1)
    assert (await chat(client))[1]["x-ownlight-route"] == "cloud/fake-model"  # a new day


@pytest.mark.anyio
async def test_spend_survives_a_restart(app_gateway_factory, home, cloud) -> None:
    from ownlight.routing.budgets import Budget, BudgetBook
    from ownlight.store.spend import SqliteSpend
    from ownlight.store.sqlite import StateStore

    rules = '[[routing.rules]]\nname = "to-cloud"\naction = "cloud"\n'
    gateway = await app_gateway_factory(routed_toml(home, cloud, rules=rules, price_in=100000.0))
    key = gateway.create_key("pat")
    await chat(gateway.client(key))
    principal = gateway.runtime.keys.authenticate(key)
    await gateway.stop()
    reopened = BudgetBook(SqliteSpend(StateStore(gateway.config.data_dir / "state.db")),
                          [Budget("key", "pat", "month", 10.0)])
    assert reopened.spent(reopened.budgets[0], principal) == pytest.approx(0.7)


@pytest.mark.anyio
async def test_complexity_sends_hard_prompts_to_the_cloud_and_easy_ones_home(
        app_gateway_factory, home, cloud) -> None:
    """The packaged scorer, through the gateway: the threshold splits two dev prompts."""
    from ownlight.routing.complexity import ComplexityRouter

    scorer = ComplexityRouter.load()
    rows = load_rows(DEV_ROUTING)[:300]
    easy, hard = (row["prompt"] for row in (min(rows, key=lambda r: scorer.score(r["prompt"])),
                                            max(rows, key=lambda r: scorer.score(r["prompt"]))))
    low, high = scorer.score(easy), scorer.score(hard)
    assert low < high
    threshold = round((low + high) / 2, 6)
    toml = routed_toml(home, cloud).replace("threshold = 0.5", f"threshold = {threshold}")
    client = (await app_gateway_factory(toml)).client()
    routes = {}
    for prompt in (easy, hard):
        raw = await client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": prompt}])
        routes[prompt] = (raw.headers["x-ownlight-route"], raw.headers["x-ownlight-route-reason"])
    assert routes[easy] == ("home/fake-model", f"complexity={low:.2f}<={threshold:g}")
    assert routes[hard] == ("cloud/fake-model", f"complexity={high:.2f}>{threshold:g}")
