"""POST /v1/privacy/scan: the privacy shield's detector over HTTP."""

from __future__ import annotations

import asyncio
from collections import Counter

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ownlight.errors import OwnlightError
from ownlight.runtime import Runtime

from .bodies import error_response, json_response
from .common import bearer_key, read_json, record_read


async def privacy_scan(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        principal = runtime.keys.authenticate(bearer_key(request))  # before the body
        body = await read_json(request, runtime.config.settings.server.max_body_bytes)
        result = await asyncio.to_thread(runtime.pipeline.scan_texts, body)
        record_read(runtime, principal, "/v1/privacy/scan", {
            "texts": len(result["data"]), "level": result["level"],
            "found": dict(Counter(s["type"] for d in result["data"] for s in d["spans"]))})
    except OwnlightError as exc:
        return error_response(exc)
    return json_response(result)


routes = [Route("/v1/privacy/scan", privacy_scan, methods=["POST"])]
