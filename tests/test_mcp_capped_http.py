"""An MCP server's answer is cut while it streams in, not read whole and then refused:
a real HTTP server on 127.0.0.1 that never stops answering, read through the transport
the gateway gives its MCP clients."""

from __future__ import annotations

import asyncio

import httpx2
import orjson
import pytest
from aiohttp import web

from ownlight.mcp.capped_http import OUTPUT_TOO_LARGE, CappedTransport, wire_cap
from tests.support.loopback import LoopbackServer

CAP = 200_000
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class EndlessServer(LoopbackServer):
    """``/sse`` sends two small events, then one event that never ends; ``/json`` a JSON
    body that never ends; ``/small`` one whole event. Counts the bytes it got out."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/sse", self.sse)
        app.router.add_post("/json", self.json)
        app.router.add_post("/small", self.small)

    async def _endless(self, response: web.StreamResponse, head: bytes) -> None:
        await response.write(head)
        try:
            while True:
                await response.write(b"x" * 65_536)
                self.sent += 65_536
                await asyncio.sleep(0)
        except (ConnectionResetError, ConnectionError, RuntimeError):
            return

    async def sse(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        note = b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress"}\n\n'
        await self._endless(response, note * 2 + b'event: message\ndata: {"result": "')
        return response

    async def json(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await self._endless(response, b'{"jsonrpc": "2.0", "id": 7, "result": "')
        return response

    async def small(self, request: web.Request) -> web.Response:
        body = b'event: message\ndata: {"jsonrpc":"2.0","id":7,"result":{}}\n\n'
        return web.Response(body=body, headers={"Content-Type": "text/event-stream"})


@pytest.fixture
def endless():
    with EndlessServer() as server:
        yield server


def _request() -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "big"}}


async def _post(server: EndlessServer, path: str) -> bytes:
    async with httpx2.AsyncClient(transport=CappedTransport(CAP), timeout=30) as http:
        response = await http.post(f"http://127.0.0.1:{server.port}{path}", json=_request())
        return await asyncio.wait_for(response.aread(), 30)


async def test_an_endless_json_answer_becomes_an_error_for_its_request(endless) -> None:
    body = orjson.loads(await _post(endless, "/json"))
    assert body["id"] == 7 and body["error"]["data"]["ownlight"] == OUTPUT_TOO_LARGE


async def test_an_endless_sse_event_is_cut_after_the_whole_events_before_it(endless) -> None:
    body = await _post(endless, "/sse")
    events = [e for e in body.split(b"\n\n") if e]
    assert len(events) == 3 and all(e.startswith(b"event: message\ndata: ") for e in events)
    assert b"notifications/progress" in events[0] and b"notifications/progress" in events[1]
    error = orjson.loads(events[2].split(b"data: ", 1)[1])
    assert error["id"] == 7 and error["error"]["data"]["ownlight"] == OUTPUT_TOO_LARGE
    assert b"xxxx" not in body  # no part of the cut event is passed on
    assert endless.sent < 50 * CAP  # it stopped reading; the server saw the door close


async def test_an_answer_under_the_cap_passes_untouched(endless) -> None:
    body = await _post(endless, "/small")
    assert body == b'event: message\ndata: {"jsonrpc":"2.0","id":7,"result":{}}\n\n'


def test_the_wire_cap_leaves_room_for_escaped_text() -> None:
    assert wire_cap(1_000_000) > 6_000_000 and wire_cap(1_000_000) < 10_000_000
