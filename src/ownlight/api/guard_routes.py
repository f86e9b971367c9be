"""POST /v1/guard/scan: the injection guard's verdict on one or many texts."""

from __future__ import annotations

import asyncio
from functools import cache

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ownlight.errors import InvalidRequest, OwnlightError
from ownlight.guard.stage import InjectionGuard
from ownlight.runtime import Runtime

from .bodies import error_response, json_response
from .common import bearer_key, read_json, record_read

MAX_TEXTS = 256


async def guard_scan(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        principal = runtime.keys.authenticate(bearer_key(request))
        guard = runtime.pipeline.guard or _default()
        body = await read_json(request, runtime.config.settings.server.max_body_bytes)
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object with \"input\"", param="input")
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if (not isinstance(texts, list) or not texts or len(texts) > MAX_TEXTS
                or not all(isinstance(t, str) for t in texts)):
            raise InvalidRequest(f"input must be a string or a list of 1..{MAX_TEXTS} strings",
                                 param="input")
        content = body.get("content", "input")
        if content not in ("input", "untrusted"):
            raise InvalidRequest("content must be \"input\" (what a user sends) or "
                                 "\"untrusted\" (a document or tool result)", param="content")
        scan = guard.scan if content == "input" else guard.scan_untrusted
        verdicts = await asyncio.to_thread(lambda: [scan(t) for t in texts])
        # each row's own threshold: a score that e5's second look read is on its scale (1.0)
        data = [{"index": i, **v.to_dict(), "threshold": round(v.threshold, 4)}
                for i, v in enumerate(verdicts)]
        record_read(runtime, principal, "/v1/guard/scan", {
            "texts": len(data), "injections": sum(v.injection for v in verdicts)})
    except OwnlightError as exc:
        return error_response(exc)
    threshold = guard.threshold if content == "input" else guard.untrusted_threshold
    return json_response({"object": "list", "data": data, "threshold": threshold})


@cache
def _default() -> InjectionGuard:
    """The packaged guard, for a server whose guard is turned off in the pipeline."""
    return InjectionGuard()


routes = [Route("/v1/guard/scan", guard_scan, methods=["POST"])]
