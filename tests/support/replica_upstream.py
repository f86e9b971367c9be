"""A fake model server to pool: the OpenAI-compatible fake with a fault of its own.

In a pool every replica is asked for the same model, so the fault is the server's
``mode``, switched while it runs: ``ok``, ``die`` (accepts the request, then drops the
connection before answering), ``hang`` (never answers), ``503``, ``cut`` (a stream
that drops after its first words). ``delay`` holds each answer that many seconds (for
requests in flight while draining). ``GET /v1/models`` is the health probe; it fails in
every mode but ``ok``. ``served`` counts the answers it began, ``seen`` the requests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tests.support.fake_upstream import FakeUpstream


class ReplicaUpstream(FakeUpstream):
    def __init__(self, reply: str = "Hello from a replica") -> None:
        super().__init__(reply)
        self.mode = "ok"
        self.delay = 0.0
        self.seen = 0
        self.served = 0
        self.probes = 0
        self.in_flight = 0
        self.peak = 0  # most requests it held at once
        self.name = f"127.0.0.1:{self.port}"

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_get("/v1/models", self._models)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self.probes += 1
        if self.mode != "ok":
            return web.json_response({"error": {"message": "unwell"}}, status=503)
        return web.json_response({"object": "list", "data": [{"id": "fake-model"}]})

    async def _fault(self, request: web.Request,
                     body: dict[str, Any]) -> web.StreamResponse | None:
        self.seen += 1
        if self.mode == "die":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "503":
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        if self.delay:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.in_flight -= 1
        if self.mode == "cut":
            body["model"] = "fake-cut"
        self.served += 1
        return await super()._fault(request, body)
