"""Admin-only routes: the audit ledger over HTTP, the Prometheus metrics, and draining a
pool's model servers (``ownlight models drain`` talks to these).

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
from ownlight.audit.records import AdminRecord
from ownlight.auth import hash_key
from ownlight.backends.replicas import ReplicaPool
from ownlight.errors import InvalidRequest, NotFound, OwnlightError, PermissionDenied
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
        records = select(runtime.audit_rows(), since=since, until=until,
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


DRAIN_WAIT = 300.0  # seconds a drain waits for in-flight requests unless told otherwise


async def drain_replica(request: Request) -> Response:
    """``POST /v1/admin/models/{alias}/replicas/{replica}/drain?wait=SECONDS``: no new
    work for the replica; answers once its requests in flight have finished (``drained``)
    or ``wait`` seconds have passed (``draining``, with what is still in flight).
    ``.../undrain`` puts it back in rotation."""
    runtime: Runtime = request.app.state.runtime
    alias, name = request.path_params["alias"], request.path_params["replica"]
    undrain = request.url.path.endswith("/undrain")
    try:
        principal = admin(request)
        raw = request.query_params.get("wait", str(DRAIN_WAIT))
        try:
            wait = float(raw)
        except ValueError:
            raise InvalidRequest("wait must be a number of seconds", param="wait") from None
        pool = runtime.backends.get(alias)
        if not isinstance(pool, ReplicaPool):
            raise NotFound(f"{alias!r} is not an alias served by replicas")
        try:
            replica = pool.undrain(name) if undrain else await pool.drain(name, wait)
        except KeyError as exc:
            raise NotFound(str(exc.args[0])) from None
    except OwnlightError as exc:
        return error_response(exc)
    runtime.pipeline.ledger.append(AdminRecord(
        "undrain" if undrain else "drain", f"{alias}/{replica.name}", principal.name,
        principal.tenant, {"outstanding": replica.outstanding}))
    state = replica.state if undrain or replica.outstanding else "drained"
    return json_response({"model": alias, "replica": replica.name, "state": state,
                          "outstanding": replica.outstanding})


routes = [
    Route("/v1/admin/models/{alias}/replicas/{replica}/drain", drain_replica,
          methods=["POST"]),
    Route("/v1/admin/models/{alias}/replicas/{replica}/undrain", drain_replica,
          methods=["POST"]),
    Route("/v1/admin/audit", audit_records, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
