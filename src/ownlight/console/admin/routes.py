"""The admin pages: server-rendered, paged and filtered on the server, each reading the
summaries or an index (``audit.views``) through the same services as the admin API, so a
page costs a few queries whatever the ledger's size. Every change is a CSRF-checked POST
recorded in the ledger (``admin.keys``). An ordinary user gets the 403 page."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ownlight.admin.chain_status import for_app
from ownlight.admin.export import export_egress
from ownlight.admin.keys import create_key, list_keys, revoke_key
from ownlight.audit import views
from ownlight.audit.queries import since_iso
from ownlight.console.admin.charts import bars
from ownlight.console.i18n import Translator, language
from ownlight.console.pages import render
from ownlight.console.routes import page
from ownlight.console.session import Forbidden, Session
from ownlight.errors import OwnlightError
from ownlight.runtime import Runtime

WINDOWS = ("1d", "7d", "30d")


def _admin(request: Request, live: Session) -> Runtime:
    if not live.principal.is_admin:
        raise Forbidden("admin_only")
    runtime: Runtime = request.app.state.runtime
    return runtime


def _window(request: Request) -> str:
    chosen = request.query_params.get("since", "7d")
    return chosen if chosen in WINDOWS else "7d"


async def _egress(request: Request, live: Session) -> Response:
    runtime = _admin(request, live)
    window = _window(request)
    report = views.egress(runtime.audit_rows(), since_iso(window))
    t = Translator(language(request))
    chart = bars([(p["period"], p["egress"]) for p in report["periods"]], t("admin.egress.chart"))
    chain = await asyncio.to_thread(for_app(request.app.state).status, runtime.audit_rows())
    return render(
        request,
        "admin/egress.html",
        live,
        report=report,
        chart=chart,
        chain=chain,
        window=window,
        windows=[(w, f"admin.window.{w}") for w in WINDOWS],
    )


async def _verify(request: Request, live: Session) -> Response:
    """Start a verification of the chain (recorded when it ends); back to the egress page."""
    runtime = _admin(request, live)
    for_app(request.app.state).start(runtime.audit_rows(), runtime.pipeline.ledger,
                                     live.principal)
    return RedirectResponse(f"/console/admin/egress?since={_window(request)}", 303)


async def _export(request: Request, live: Session) -> Response:
    """The egress of the window as CSV, streamed (the same export as the admin API)."""
    runtime = _admin(request, live)
    lines = export_egress(runtime.audit_rows(), "csv", since_iso(_window(request)))
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="ownlight-egress.csv"',
            "Cache-Control": "no-store",
        },
    )


async def _ledger(request: Request, live: Session) -> Response:
    runtime = _admin(request, live)
    q = request.query_params
    filters = {name: q.get(name) or None for name in ("principal", "target", "kind")}
    error = None
    before = q.get("before")
    try:
        result = views.ledger_page(
            runtime.audit_rows(),
            limit=50,
            before=int(before) if before and before.isdigit() else None,
            **filters,
        )
    except OwnlightError as exc:
        result, error = {"records": [], "next": None}, str(exc)
    opened = None
    if q.get("open", "").isdigit():
        opened = views.ledger_record(runtime.audit_rows(), int(q["open"]))
    return render(
        request,
        "admin/ledger.html",
        live,
        records=result["records"],
        next=result["next"],
        filters=filters,
        keep=urlencode({k: v for k, v in filters.items() if v}),  # links keep the filters
        opened=opened,
        error=error,
    )


async def _keys(request: Request, live: Session) -> Response:
    runtime = _admin(request, live)
    made, error = None, None
    if request.method == "POST":
        form = await request.form()
        try:
            if request.url.path.endswith("/revoke"):
                revoke_key(
                    runtime.keys,
                    runtime.pipeline.ledger,
                    live.principal,
                    str(form.get("ident", "")),
                )
            else:
                groups = tuple(str(form.get("groups", "")).replace(",", " ").split())
                made = create_key(
                    runtime.keys,
                    runtime.pipeline.ledger,
                    live.principal,
                    str(form.get("name", "")),
                    groups,
                    str(form.get("tenant", "")) or "default",
                )
        except OwnlightError as exc:
            error = str(exc)
    offset = request.query_params.get("offset", "0")
    listing = list_keys(runtime.keys, int(offset) if offset.isdigit() else 0, 50)
    return render(request, "admin/keys.html", live, keys=listing, made=made, error=error)


routes: list[BaseRoute] = [
    Route("/console/admin/egress", page(_egress), methods=["GET"]),
    Route("/console/admin/egress/export", page(_export), methods=["GET"]),
    Route("/console/admin/egress/verify", page(_verify), methods=["POST"]),
    Route("/console/admin/ledger", page(_ledger), methods=["GET"]),
    Route("/console/admin/keys", page(_keys), methods=["GET"]),
    Route("/console/admin/keys/create", page(_keys), methods=["POST"]),
    Route("/console/admin/keys/revoke", page(_keys), methods=["POST"]),
]
