"""Admin-only routes behind the console's admin views: egress and usage summaries, the
ledger a page at a time, one record, the egress export, and keys.

Each answers from the summaries or an index (``audit.views``), never a scan of the ledger;
each needs an admin key (403 otherwise, recorded like every refusal); each act (a key
created or revoked) is in the ledger before the answer, as from the CLI.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ownlight.admin.chain_status import ChainStatus, for_app
from ownlight.admin.export import export_egress
from ownlight.admin.keys import create_key, list_keys, revoke_key
from ownlight.audit import views
from ownlight.audit.queries import since_iso
from ownlight.errors import InvalidRequest, NotFound, OwnlightError
from ownlight.runtime import Runtime

from .admin_routes import admin
from .bodies import error_response, json_response


def _window(request: Request) -> tuple[str | None, str | None]:
    q = request.query_params
    return since_iso(q.get("since")), since_iso(q.get("until"))


def _number(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.lstrip("-").isdigit():
        raise InvalidRequest(f"{name} must be a number", param=name)
    return int(raw)


async def egress(request: Request) -> Response:
    """``GET /v1/admin/egress?since=30d&until=``"""
    runtime: Runtime = request.app.state.runtime
    try:
        admin(request)
        since, until = _window(request)
        report = views.egress(runtime.audit_rows(), since, until)
    except OwnlightError as exc:
        return error_response(exc)
    return json_response(report)


async def egress_export(request: Request) -> Response:
    """``GET /v1/admin/egress/export?format=jsonl|csv&since=&until=``, streamed."""
    runtime: Runtime = request.app.state.runtime
    try:
        admin(request)
        since, until = _window(request)
        fmt = request.query_params.get("format", "jsonl")
        lines = export_egress(runtime.audit_rows(), fmt, since, until)
        first = next(lines, "")
    except OwnlightError as exc:
        return error_response(exc)

    def body() -> Any:
        yield first
        yield from lines

    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    return StreamingResponse(
        body(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="ownlight-egress.{fmt}"'},
    )


def _chain(request: Request) -> ChainStatus:
    return for_app(request.app.state)


async def verification(request: Request) -> Response:
    """``GET /v1/admin/ledger/verification``: the last verdict and the records since;
    ``POST`` starts a verification (202; recorded in the ledger when it ends)."""
    runtime: Runtime = request.app.state.runtime
    try:
        actor = admin(request)
        chain = _chain(request)
        if request.method == "POST":
            started = chain.start(runtime.audit_rows(), runtime.pipeline.ledger, actor)
            return json_response(
                {"started": started, **chain.status(runtime.audit_rows())}, status=202
            )
        return json_response(chain.status(runtime.audit_rows()))
    except OwnlightError as exc:
        return error_response(exc)


async def usage(request: Request) -> Response:
    """``GET /v1/admin/usage?since=&until=``: requests, tokens, latency, local vs cloud,
    cost and what staying local saved, guard blocks, from the summaries; with the queue
    and circuit state of this instance now."""
    runtime: Runtime = request.app.state.runtime
    try:
        admin(request)
        since, until = _window(request)
        report = views.metrics(runtime.audit_rows(), since, until)
        state = runtime.state()
    except OwnlightError as exc:
        return error_response(exc)
    now = {part: state.get(part, {}) for part in ("queues", "circuits", "models", "serving")}
    return json_response({**report, "now": now})


async def ledger(request: Request) -> Response:
    """``GET /v1/admin/ledger?before=&limit=&principal=&target=&status=&kind=&outside=``
    ``&since=&until=``: newest first; ``next`` is the ``before`` of the next page."""
    runtime: Runtime = request.app.state.runtime
    q = request.query_params
    try:
        admin(request)
        since, until = _window(request)
        outside = q.get("outside")
        page = views.ledger_page(
            runtime.audit_rows(),
            before=_number(request, "before"),
            limit=_number(request, "limit", 50) or 0,
            since=since,
            until=until,
            principal=q.get("principal"),
            target=q.get("target"),
            status=_number(request, "status"),
            kind=q.get("kind"),
            inside_domain=None if outside is None else outside not in ("1", "true"),
        )
    except OwnlightError as exc:
        return error_response(exc)
    return json_response({"object": "list", "data": page["records"], "next": page["next"]})


async def ledger_record(request: Request) -> Response:
    """``GET /v1/admin/ledger/{seq}``"""
    runtime: Runtime = request.app.state.runtime
    try:
        admin(request)
        seq = request.path_params["seq"]
        if not seq.isdigit():
            raise InvalidRequest("seq must be a number", param="seq")
        record = views.ledger_record(runtime.audit_rows(), int(seq))
        if record is None:
            raise NotFound(f"no record {seq}")
    except OwnlightError as exc:
        return error_response(exc)
    return json_response(record)


async def keys(request: Request) -> Response:
    """``GET /v1/admin/keys?offset=&limit=``; ``POST /v1/admin/keys`` with
    ``{"name", "groups", "tenant"}`` answers the new key, shown this once."""
    runtime: Runtime = request.app.state.runtime
    try:
        actor = admin(request)
        if request.method == "GET":
            return json_response(
                list_keys(
                    runtime.keys,
                    _number(request, "offset", 0) or 0,
                    _number(request, "limit", 50) or 0,
                )
            )
        try:
            body = await request.json()
        except ValueError:
            raise InvalidRequest("the body must be JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise InvalidRequest("name is required", param="name")
        groups = body.get("groups") or []
        tenant = body.get("tenant") or "default"
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise InvalidRequest("groups must be a list of names", param="groups")
        if not isinstance(tenant, str):
            raise InvalidRequest("tenant must be a name", param="tenant")
        made = create_key(
            runtime.keys, runtime.pipeline.ledger, actor, body["name"], tuple(groups), tenant
        )
    except OwnlightError as exc:
        return error_response(exc)
    return json_response(made, status=201)


async def revoke(request: Request) -> Response:
    """``POST /v1/admin/keys/{ident}/revoke``: by id, name or prefix."""
    runtime: Runtime = request.app.state.runtime
    try:
        actor = admin(request)
        count = revoke_key(
            runtime.keys, runtime.pipeline.ledger, actor, request.path_params["ident"]
        )
    except OwnlightError as exc:
        return error_response(exc)
    return json_response({"revoked": count})


routes = [
    Route("/v1/admin/egress", egress, methods=["GET"]),
    Route("/v1/admin/egress/export", egress_export, methods=["GET"]),
    Route("/v1/admin/usage", usage, methods=["GET"]),
    Route("/v1/admin/ledger", ledger, methods=["GET"]),
    Route("/v1/admin/ledger/verification", verification, methods=["GET", "POST"]),
    Route("/v1/admin/ledger/{seq}", ledger_record, methods=["GET"]),
    Route("/v1/admin/keys", keys, methods=["GET", "POST"]),
    Route("/v1/admin/keys/{ident}/revoke", revoke, methods=["POST"]),
]
