"""Admin-only routes: the audit ledger over HTTP and the Prometheus metrics.

An admin key is a key in the ``admin`` group; any other key gets 403, no key 401; both
refusals are recorded in the ledger (``audit.refusals``).
Prometheus scrapes ``/metrics`` with that key as a bearer token (its scrape config's
``authorization`` section).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ownlight.audit.queries import select, since_iso
from ownlight.auth import hash_key
from ownlight.errors import InvalidRequest, OwnlightError, PermissionDenied
from ownlight.principal import Principal
from ownlight.runtime import Runtime

from .bodies import error_response, json_response
from .common import bearer_key

MAX_RECORDS = 1000


def admin(request: Request) -> Principal:
    runtime: Runtime = request.app.state.runtime
    key = bearer_key(request)
    principal = runtime.keys.authenticate(key, request.scope)
    if not principal.is_admin:
        runtime.keys.refused(403, "admin_only", hash_key(key) if key else None, request.scope,
                             principal.name, principal.tenant, "admin_only")
        raise PermissionDenied("This route needs an admin key.", code="admin_only")
    return principal


async def audit_records(request: Request) -> Response:
    """``GET /v1/admin/audit?since=30d&principal=&target=&outside=true&status=&kind=&limit=``"""
    runtime: Runtime = request.app.state.runtime
    try:
        admin(request)
        q = request.query_params
        status, limit = q.get("status"), q.get("limit", "100")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_RECORDS:
            raise InvalidRequest(f"limit must be a number from 1 to {MAX_RECORDS}",
                                 param="limit")
        if status is not None and not status.isdigit():
            raise InvalidRequest("status must be a number", param="status")
        since, until = since_iso(q.get("since")), since_iso(q.get("until"))
        records = select(runtime.pipeline.ledger.store, since=since, until=until,
                         principal=q.get("principal"), target=q.get("target"),
                         outside=q.get("outside") in ("1", "true"),
                         status=int(status) if status else None, kind=q.get("kind"),
                         limit=int(limit))
    except OwnlightError as exc:
        return error_response(exc)
    return json_response({"object": "list", "data": records})


async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        admin(request)
    except OwnlightError as exc:
        return error_response(exc)
    return Response(runtime.pipeline.metrics.render(),
                    media_type="text/plain; version=0.0.4; charset=utf-8")


routes = [
    Route("/v1/admin/audit", audit_records, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
