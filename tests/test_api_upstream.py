"""The HTTP API through the official openai SDK, against a real fake upstream."""

from __future__ import annotations

import httpx
import openai
import pytest

from ownlight.auth import KeyStore
from ownlight.store.keys import SqliteKeys
from ownlight.store.sqlite import StateStore
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream, free_port


@pytest.fixture
def gateway(gateway_factory, fake_upstream: FakeUpstream):
    toml = upstream_toml("cloud", fake_upstream.url)
    toml += upstream_toml("slow", fake_upstream.url, "fake-slow", timeout=0.5)
    toml += upstream_toml("broken", fake_upstream.url, "fake-500")
    toml += upstream_toml("limited", fake_upstream.url, "fake-429")
    toml += upstream_toml("cutting", fake_upstream.url, "fake-cut")
    toml += upstream_toml("tiny", fake_upstream.url, "fake-context")
    toml += upstream_toml("gone", f"http://127.0.0.1:{free_port()}/v1")
    return gateway_factory(toml)


def test_models_list_shows_aliases(gateway) -> None:
    ids = {m.id for m in gateway.client().models.list()}
    assert {"cloud", "slow", "broken"} <= ids
    assert "local" not in ids  # the embedded model is off in this gateway


def test_chat_is_forwarded_with_the_upstream_model_name(gateway, fake_upstream) -> None:
    raw = gateway.client().chat.completions.with_raw_response.create(
        model="cloud", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello from upstream"
    assert reply.usage is not None and reply.usage.total_tokens == 11
    assert fake_upstream.received[-1]["model"] == "fake-model"
    assert fake_upstream.received[-1]["max_tokens"] == 5
    assert raw.headers["x-ownlight-route"] == "cloud/fake-model"
    assert raw.headers["x-ownlight-request-id"].startswith("req_")


def test_streamed_chat_relays_chunks_and_hides_usage_unless_asked(gateway) -> None:
    client = gateway.client()
    chunks = list(client.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": "hi"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from upstream"
    assert all(c.usage is None for c in chunks)

    chunks = list(client.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_completion_and_embeddings_are_forwarded(gateway) -> None:
    client = gateway.client()
    done = client.completions.create(model="cloud", prompt="Say hi")
    assert done.choices[0].text == "Hello from upstream"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="cloud", prompt="Say hi", stream=True) if c.choices)
    assert streamed == "Hello from upstream"
    vectors = client.embeddings.create(model="cloud", input=["a", "b"], encoding_format="float")
    assert [d.embedding for d in vectors.data] == [[0.1, 0.2, 0.3]] * 2


def test_health_needs_no_key_but_v1_does(gateway) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    response = httpx.get(gateway.url + "/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        gateway.client("ol-not-a-real-key").chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "hi"}])


def test_revoked_key_stops_working_at_once(gateway) -> None:
    key = gateway.create_key("carol")
    client = gateway.client(key)
    assert client.models.list().data
    # Revoke from another connection, as `ownlight keys revoke` does.
    other = KeyStore(SqliteKeys(StateStore(gateway.config.data_dir / "state.db")))
    assert other.revoke("carol") == 1
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "cloud"}, "messages"),
        ({"model": "cloud", "messages": "hi"}, "messages"),
        ({"model": "cloud", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "cloud", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"},
         "max_tokens"),
        ({"model": "cloud", "messages": [{"role": "user", "content": "x"}], "n": 200}, "n"),
        ({"model": "cloud", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
         "temperature"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_invalid_requests_get_400_in_openai_shape(gateway, body, param) -> None:
    key = gateway.create_key()
    response = httpx.post(gateway.url + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_malformed_json_and_oversized_bodies(gateway_factory, fake_upstream) -> None:
    gateway = gateway_factory("[server]\nmax_body_bytes = 2000\n"
                              + upstream_toml("cloud", fake_upstream.url))
    headers = {"Authorization": f"Bearer {gateway.create_key()}"}
    response = httpx.post(gateway.url + "/v1/chat/completions", content=b"{not json",
                          headers=headers)
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]
    big = {"model": "cloud", "messages": [{"role": "user", "content": "x" * 5000}]}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=big, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unknown_model_is_404(gateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.client().chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_unknown_route_and_wrong_method_use_the_error_shape(gateway) -> None:
    response = httpx.get(gateway.url + "/v1/nothing-here")
    assert response.status_code == 404 and "error" in response.json()
    response = httpx.get(gateway.url + "/v1/chat/completions")
    assert response.status_code == 405 and "error" in response.json()


@pytest.mark.parametrize(
    ("alias", "error", "status"),
    [
        ("broken", openai.InternalServerError, 502),
        ("slow", openai.InternalServerError, 504),
        ("gone", openai.InternalServerError, 503),
        ("limited", openai.RateLimitError, 429),
        ("tiny", openai.BadRequestError, 400),
    ],
)
def test_upstream_trouble_maps_to_the_right_status(gateway, alias, error, status) -> None:
    client = gateway.client()
    for stream in (False, True):
        with pytest.raises(error) as caught:
            result = client.chat.completions.create(
                model=alias, messages=[{"role": "user", "content": "hi"}], stream=stream)
            list(result)  # type: ignore[arg-type]
        assert caught.value.status_code == status
    # The gateway keeps serving afterwards.
    assert client.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": "hi"}]).choices


def test_context_length_error_keeps_its_code(gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "context_length_exceeded"


def test_stream_cut_mid_answer_ends_with_an_error_event(gateway) -> None:
    client = gateway.client()
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(
            model="cutting", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello from"  # what came before the cut arrived
    assert "stream" in str(caught.value.message)
    assert client.models.list().data


def test_the_length_limit_field_follows_the_alias(gateway_factory, fake_upstream) -> None:
    """OpenAI's reasoning models refuse max_tokens: an alias can send max_completion_tokens."""
    gateway = gateway_factory(
        upstream_toml("plain", fake_upstream.url)
        + upstream_toml("reasoning", fake_upstream.url, max_tokens_field="max_completion_tokens"))
    client = gateway.client()
    for alias in ("plain", "reasoning"):
        client.chat.completions.create(model=alias, max_completion_tokens=7,
                                       messages=[{"role": "user", "content": "hi"}])
    plain, reasoning = fake_upstream.received[-2:]
    assert plain["max_tokens"] == 7 and "max_completion_tokens" not in plain
    assert reasoning["max_completion_tokens"] == 7 and "max_tokens" not in reasoning
