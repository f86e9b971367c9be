"""The privacy shield in the request path: the gateway and a real fake cloud upstream.

The gateway is served in-process (the fast tier, ``app_gateway_factory``); concurrent
requests from threads stay on the real server.
"""

from __future__ import annotations

import threading

import openai
import pytest

from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream

CONTACT = ("Please email Maria Gonzalez at maria.gonzalez@example.com or call "
           "+1 415 555 0132 about the contract.")
ORIGINALS = ["Maria Gonzalez", "maria.gonzalez@example.com", "+1 415 555 0132"]
CN_ID = "我的身份证号是11010519491231002X，请帮我查询。"
SECRET = "Deploy with key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD please"


@pytest.fixture
def home():
    with FakeUpstream(reply="answered at home") as upstream:
        yield upstream


def toml_with(cloud: FakeUpstream, home: FakeUpstream | None = None, extra: str = "") -> str:
    toml = upstream_toml("cloud", cloud.url, "fake-echo", inside_domain=False, retries=0)
    if home is not None:
        toml += upstream_toml("home", home.url, "fake-echo", inside_domain=True, retries=0)
        toml += '[routing.aliases.auto]\ntargets = ["cloud", "home"]\n'
        toml += '[[routing.rules]]\nname = "to-cloud"\naction = "cloud"\n'
    return toml + extra


async def gateway_with(app_gateway_factory, cloud: FakeUpstream,
                       home: FakeUpstream | None = None, extra: str = ""):
    return await app_gateway_factory(toml_with(cloud, home, extra))


def ask(client: openai.OpenAI, text: str, model: str = "cloud", **kwargs: object):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kwargs)


async def aask(client: openai.AsyncOpenAI, text: str, model: str = "cloud", **kwargs: object):
    return await client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kwargs)


@pytest.mark.anyio
async def test_cloud_sees_placeholders_and_the_client_sees_real_values(
        app_gateway_factory, cloud) -> None:
    gateway = await gateway_with(app_gateway_factory, cloud)
    raw = await aask(gateway.client(), CONTACT)
    sent = cloud.received[-1]["messages"][-1]["content"]
    assert all(value not in sent for value in ORIGINALS)
    assert "<PERSON_1>" in sent and "<EMAIL_ADDRESS_1>" in sent and "<PHONE_NUMBER_1>" in sent
    assert raw.parse().choices[0].message.content == f"You said: {CONTACT}"
    assert raw.headers["x-ownlight-sensitivity"] == "confidential"


@pytest.mark.anyio
async def test_streamed_answers_are_restored_across_split_placeholders(
        app_gateway_factory, cloud) -> None:
    gateway = await gateway_with(app_gateway_factory, cloud)
    raw = await aask(gateway.client(), CONTACT, stream=True)
    pieces = [c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]
    assert "".join(pieces) == f"You said: {CONTACT}"
    assert not any("<" in p for p in pieces)  # no half placeholder ever reached the client
    assert all(value not in str(cloud.received) for value in ORIGINALS)


def test_concurrent_requests_never_mix_their_values(gateway_factory, cloud) -> None:
    gateway = gateway_factory(toml_with(cloud))
    client = gateway.client()
    names = ["Maria Gonzalez", "John Smith", "Emily Clarke", "David Miller", "Sarah Johnson",
             "James Wilson"]
    answers: dict[str, str] = {}

    def one(name: str) -> None:
        text = f"Please write to {name} today."
        stream = ask(client, text, stream=True).parse()
        answers[name] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    threads = [threading.Thread(target=one, args=(n,)) for n in names * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == {n: f"You said: Please write to {n} today." for n in names}
    assert all(n not in str(cloud.received) for n in names)


@pytest.mark.anyio
async def test_red_line_refuses_400_naming_the_types_and_never_connects(
        app_gateway_factory, cloud) -> None:
    gateway = await gateway_with(app_gateway_factory, cloud)
    client = gateway.client()
    for text in (CN_ID, SECRET):
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as caught:
                await aask(client, text, stream=stream)
            assert caught.value.code == "policy_local_only"
            assert "restricted" in caught.value.message
            assert ("NATIONAL_ID" if text == CN_ID else "SECRET") in caught.value.message
    assert cloud.received == []
    gateway.runtime.pipeline.ledger.flush()
    refused = gateway.runtime.pipeline.ledger.query("status = 400")
    assert len(refused) == 4
    assert refused[0]["found"] == {"NATIONAL_ID": 1} and refused[0]["route"] is None
    assert refused[0]["sensitivity"] == "restricted"


@pytest.mark.anyio
async def test_red_line_with_a_local_target_stays_home(app_gateway_factory, cloud, home) -> None:
    gateway = await gateway_with(app_gateway_factory, cloud, home)
    raw = await aask(gateway.client(), CN_ID, model="auto")
    assert raw.headers["x-ownlight-route"] == "home/fake-echo"
    assert raw.headers["x-ownlight-route-reason"].startswith("red line: restricted")
    assert home.received[-1]["messages"][-1]["content"] == CN_ID  # at home, nothing hidden
    assert cloud.received == []


@pytest.mark.anyio
async def test_blocked_types_are_refused(app_gateway_factory, cloud) -> None:
    extra = '[privacy.actions]\nEMAIL_ADDRESS = "block"\n'
    gateway = await gateway_with(app_gateway_factory, cloud, extra=extra)
    with pytest.raises(openai.BadRequestError) as caught:
        await aask(gateway.client(), CONTACT)
    assert caught.value.code == "sensitive_data_blocked"
    assert "maria" not in caught.value.message.lower()
    assert cloud.received == []


@pytest.mark.anyio
async def test_audit_records_types_and_counts_never_values(app_gateway_factory, cloud) -> None:
    gateway = await gateway_with(app_gateway_factory, cloud)
    await aask(gateway.client(), CONTACT + " Maria Gonzalez agreed.")
    log = gateway.runtime.pipeline.ledger
    log.flush()
    (row,) = log.query("status = 200")
    assert row["found"] == {"PERSON": 2, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert row["pseudonymized"] == {"PERSON": 1, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert row["route"] == "cloud/fake-echo" and row["inside_domain"] == 0
    stored = b"".join(p.read_bytes() for p in gateway.config.data_dir.glob("state.db*"))
    assert all(value.encode() not in stored for value in ORIGINALS)


@pytest.mark.anyio
async def test_privacy_scan_endpoint(app_gateway_factory, cloud) -> None:
    gateway = await gateway_with(app_gateway_factory, cloud)
    key = gateway.create_key()
    http = gateway.http()
    response = await http.post("/v1/privacy/scan", json={"input": [CONTACT, CN_ID, "hi"]},
                               headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert [d["level"] for d in result["data"]] == ["confidential", "restricted", "public"]
    assert result["level"] == "restricted"
    types = [s["type"] for s in result["data"][0]["spans"]]
    assert types == ["PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER"]
    first = result["data"][0]["spans"][0]
    assert CONTACT[first["start"]:first["end"]] == "Maria Gonzalez"
    assert (await http.post("/v1/privacy/scan", json={"input": "x"})).status_code == 401
    bad = await http.post("/v1/privacy/scan", json={"input": 5},
                          headers={"Authorization": f"Bearer {key}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
