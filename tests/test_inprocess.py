"""The fast tier's own guarantees: the app's lifespan runs as a server runs it.

``tests/support/inprocess.py`` serves the ASGI app in the test's event loop over
``httpx.ASGITransport``, which sends no lifespan events: the fixture sends them. These
tests hold it to that: startup starts the backends through the app's own handler, the
first request finds them ready, shutdown closes the runtime, and a lifespan that fails
fails the fixture instead of leaving a half-started gateway.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette

from tests.conftest import upstream_toml
from tests.support.inprocess import InProcessGateway, Lifespan, write_config

pytestmark = pytest.mark.anyio


async def test_the_lifespan_starts_and_closes_the_runtime(tmp_path, fake_upstream) -> None:
    config = write_config(tmp_path / "ownlight.toml", tmp_path / "data",
                          upstream_toml("cloud", fake_upstream.url, "fake-echo"))
    gateway = InProcessGateway(config)
    calls: list[str] = []
    start, close = gateway.runtime.start, gateway.runtime.close

    async def started() -> None:
        calls.append("start")
        await start()

    async def closed() -> None:
        calls.append("close")
        await close()

    gateway.runtime.start, gateway.runtime.close = started, closed  # type: ignore[method-assign]
    async with gateway:
        assert calls == ["start"]
        assert gateway.runtime.readiness() == {"cloud": "ready"}
        assert (await gateway.http().get("/healthz")).json() == {"status": "ok"}
        reply = await gateway.client().chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "You said: hi"
        stream = await gateway.anthropic().messages.create(
            model="cloud", max_tokens=10, stream=True,
            messages=[{"role": "user", "content": "hi"}])
        assert [e.type async for e in stream][-1] == "message_stop"
    assert calls == ["start", "close"]
    assert len(fake_upstream.received) == 2


async def test_a_failing_lifespan_fails_the_fixture() -> None:
    @contextlib.asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("cannot open the data dir")
        yield

    lifespan = Lifespan(Starlette(lifespan=broken), timeout=5)
    with pytest.raises(RuntimeError, match="lifespan.startup.failed"):
        await lifespan.startup()
