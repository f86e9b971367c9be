"""The fast tier: Ownlight's ASGI app in the test's own event loop, no uvicorn, no socket.

``InProcessGateway`` builds the runtime as ``RunningGateway`` does (``Runtime.build``,
``prepare``, ``create_app``: the steps of ``ownlight serve``, with the ledger chained in a
thread rather than a child process), then drives the app's ASGI lifespan
itself, because ``httpx.ASGITransport`` sends only ``http`` scopes: startup starts the
backends (and the knowledge embedder) through the app's own lifespan handler, shutdown
closes them, and ``/readyz`` is polled through the app before the first test request.

Clients are the real SDKs with an ``http_client`` over ``ASGITransport``: ``client()`` is
an ``openai.AsyncOpenAI``, ``anthropic()`` an ``anthropic.AsyncAnthropic`` (both are built
on ``httpx2`` and the anthropic SDK refuses ``httpx`` objects, so theirs is an
``httpx2.AsyncClient`` over ``httpx2.ASGITransport``), ``http()`` a plain
``httpx.AsyncClient`` over ``httpx.ASGITransport``. Streams work, but ``ASGITransport`` hands the
body over only once the app has finished it, and an exception that escapes the app reaches
the test itself (where uvicorn would answer 500): tests about timing, client disconnects,
concurrency, sockets or the CLIs stay on the real server (``tests/support/gateway.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai

from ownlight.config import Config, load_config
from ownlight.runtime import Runtime
from ownlight.server import create_app

BASE_URL = "http://ownlight.test"  # a name only: nothing resolves or connects to it


class Lifespan:
    """Sends an ASGI app ``lifespan.startup`` and ``lifespan.shutdown``, as a server does."""

    def __init__(self, app: Any, timeout: float = 60.0):
        self.app = app
        self.timeout = timeout
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _expect(self, wanted: str) -> None:
        assert self._task is not None
        reply = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait({reply, self._task}, timeout=self.timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        if not reply.done():
            reply.cancel()  # a message the app sent just before it returned is still queued
        if reply.done() and not reply.cancelled():
            message = reply.result()
        elif not self._from_app.empty():
            message = self._from_app.get_nowait()
        else:
            message = {"type": "no answer within the timeout or before the app returned"}
        if message["type"] != wanted:
            failure = self._task.exception() if self._task.done() else None
            raise RuntimeError(f"lifespan: wanted {wanted!r}, got {message}") from failure

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": {}}
        self._task = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        await self._expect("lifespan.startup.complete")

    async def shutdown(self) -> None:
        if self._task is None:
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        try:
            await self._expect("lifespan.shutdown.complete")
        finally:
            await asyncio.wait_for(self._task, self.timeout)
            self._task = None


class InProcessGateway:
    """One gateway from a config, served in-process; ``async with`` starts and stops it."""

    url = BASE_URL

    def __init__(self, config: Config):
        self.config = config
        self.runtime = Runtime.build(config)
        self.app = create_app(self.runtime)
        self.transport = httpx.ASGITransport(app=self.app)
        self.sdk_transport = httpx2.ASGITransport(app=self.app)  # what the SDKs are built on
        self._lifespan = Lifespan(self.app)
        self._clients: list[Any] = []

    async def start(self, ready_timeout: float = 120.0) -> None:
        self.runtime.prepare()
        await self._lifespan.startup()
        probe = self.http()
        deadline = asyncio.get_running_loop().time() + ready_timeout
        while (await probe.get("/readyz")).status_code != 200:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"gateway not ready: {self.runtime.readiness()}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        for client in self._clients:
            await client.aclose() if isinstance(client, httpx.AsyncClient) else \
                await client.close()
        self._clients.clear()
        await self._lifespan.shutdown()

    async def __aenter__(self) -> InProcessGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def create_key(self, name: str = "alice", groups: tuple[str, ...] = (),
                   tenant: str = "default") -> str:
        key, _ = self.runtime.keys.create(name, groups, tenant)
        return key

    def http(self, key: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        """A plain client over the app; with ``key``, its bearer header is set."""
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        client = httpx.AsyncClient(transport=self.transport, base_url=BASE_URL,
                                   headers=headers, **kwargs)
        self._clients.append(client)
        return client

    def client(self, key: str | None = None, **kwargs: Any) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            base_url=BASE_URL + "/v1", api_key=key or self.create_key(), max_retries=0,
            http_client=httpx2.AsyncClient(transport=self.sdk_transport), **kwargs)
        self._clients.append(client)
        return client

    def anthropic(self, key: str | None = None, **kwargs: Any) -> anthropic.AsyncAnthropic:
        """With no ``key``, a new one, unless ``auth_token`` or ``default_headers`` says
        how the client authenticates."""
        if key is None and "auth_token" not in kwargs and "default_headers" not in kwargs:
            key = self.create_key()
        client = anthropic.AsyncAnthropic(
            base_url=BASE_URL, api_key=key, max_retries=0,
            http_client=httpx2.AsyncClient(transport=self.sdk_transport), **kwargs)
        self._clients.append(client)
        return client


def write_config(path: Path, data_dir: Path, toml: str = "", *, local: bool = False) -> Config:
    """The config the gateway fixtures use: ``toml`` after a data dir and ``[local]``."""
    path.write_text(f'data_dir = "{data_dir}"\n[local]\nenabled = {str(local).lower()}\n'
                    + toml)
    return load_config(path)


@contextlib.asynccontextmanager
async def inprocess_gateway(config: Config) -> AsyncIterator[InProcessGateway]:
    async with InProcessGateway(config) as gateway:
        yield gateway
