"""One upstream MCP server, kept connected: a stdio server is started, watched and started
again with backoff when it exits; an HTTP server is connected and reconnected the same way.

The connection lives in one supervising task (the SDK's client is an async context that
must be entered and left in the same task); calls from other tasks use it while it is up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from ownlight.config.settings import McpServerSettings
from ownlight.mcp.capped_http import CappedTransport, wire_cap

log = logging.getLogger(__name__)

# Seconds between liveness checks of a connected server: a tools/list (the current
# revision has no ping), which also keeps the last list fresh.
CHECK_EVERY = 2.0
MAX_BACKOFF = 60.0


class NotConnected(RuntimeError):
    """The server is down or (re)starting."""


class Unauthorized(RuntimeError):
    """The server answered 401 to the token a call carried (expired or revoked)."""


class Upstream:
    def __init__(self, name: str, settings: McpServerSettings, backoff: float = 1.0):
        self.name = name
        # An OAuth server's token for the supervising connection (listing), or None.
        self.bearer: Callable[[], Awaitable[str | None]] | None = None
        self._wake = asyncio.Event()
        self.settings = settings
        self.backoff = backoff
        self.client: Client | None = None
        self.tools: list[types.Tool] | None = None  # the last list the server gave
        self.starts = 0  # how many times a connection came up (restarts = starts - 1)
        self._up = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def inside_domain(self) -> bool:
        return self.settings.inside

    def _target(self, stack: AsyncExitStack, token: str | None = None,
                refused: list[int] | None = None) -> Any:
        """What the SDK's client connects to; an HTTP client is closed with ``stack``;
        ``token`` is an OAuth server's bearer token for this connection; a 401 to it is
        noted in ``refused`` (the SDK turns HTTP errors into a generic JSON-RPC error)."""
        s = self.settings
        if s.command is not None:
            env = {k: v.reveal() for k, v in s.env.items()}
            return StdioServerParameters(command=s.command[0], args=s.command[1:],
                                         env=env or None)
        assert s.url is not None
        headers = {"Accept-Encoding": "identity",  # counted as sent (capped_http)
                   **{k: v.reveal() for k, v in s.headers.items()}}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        cap = wire_cap(s.max_output_bytes)
        async def note(response: httpx2.Response) -> None:
            if refused is not None and response.status_code == 401:
                refused.append(401)

        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(s.timeout + 5),
                                  transport=CappedTransport(cap),
                                  event_hooks={"response": [note]})
        stack.push_async_callback(http.aclose)
        return streamable_http_client(s.url, http_client=http, max_sse_event_size=cap)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"mcp:{self.name}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def wait_up(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _supervise(self) -> None:
        delay = self.backoff
        while not self._stop.is_set():
            try:
                token = await self.bearer() if self.bearer is not None else None
                if self.bearer is not None and token is None:
                    raise NotConnected(f"no user has authorized {self.name} yet")
                async with AsyncExitStack() as stack:
                    client = await stack.enter_async_context(
                        Client(self._target(stack, token), message_handler=self._on_message))
                    self.client = client
                    self.tools = (await client.list_tools(cache_mode="bypass")).tools
                    self.starts += 1
                    self._up.set()
                    delay = self.backoff
                    while True:  # until the server stops answering
                        await asyncio.sleep(CHECK_EVERY)
                        await self.list_tools()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - any failure means: start again
                log.warning("MCP server %s disconnected: %s", self.name, exc)
            finally:
                self.client = None
                self._up.clear()
            if self._stop.is_set():
                return
            self._wake.clear()
            try:  # the backoff, cut short by wake() (a user has just authorized)
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, MAX_BACKOFF)

    def wake(self) -> None:
        """Try to connect now rather than after the backoff."""
        self._wake.set()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ServerNotification) and getattr(
                message, "method", "") == "notifications/tools/list_changed":
            self.tools = None  # listed again on the next list

    def _connected(self) -> Client:
        if self.client is None:
            raise NotConnected(f"MCP server {self.name} is not connected")
        return self.client

    async def list_tools(self, refresh: bool = True) -> list[types.Tool]:
        """The server's tools; ``refresh`` asks it again (else the last list, if any)."""
        if not refresh and self.tools is not None:
            return self.tools
        client = self._connected()
        result = await asyncio.wait_for(client.list_tools(cache_mode="bypass"),
                                        self.settings.timeout)
        self.tools = result.tools
        return self.tools

    async def call_tool(self, tool: str, arguments: dict[str, Any],
                        token: str | None = None) -> types.CallToolResult:
        """One call; ``TimeoutError`` after the server's ``timeout``. With ``token`` (an
        OAuth server), the call goes on its own connection carrying that user's token
        (``Unauthorized`` if the server refuses it), never on the shared one."""
        if token is not None:
            return await asyncio.wait_for(self._call_as(tool, arguments, token),
                                          self.settings.timeout)
        client = self._connected()
        return await asyncio.wait_for(client.call_tool(tool, arguments), self.settings.timeout)

    async def _call_as(self, tool: str, arguments: dict[str, Any],
                       token: str) -> types.CallToolResult:
        refused: list[int] = []
        try:
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(
                    Client(self._target(stack, token, refused)))
                return await client.call_tool(tool, arguments)
        except Exception:
            if refused:
                raise Unauthorized(self.name) from None
            raise
