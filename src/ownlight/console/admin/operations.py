"""The admin pages for running the gateway: models (versions, licences, memory, promote
and roll back with the gate's evidence), routing (the rules and "explain this prompt") and
live metrics (charts from the ledger's summaries, queues and circuits from this instance).

Promote and roll back go through ``admin.models``, the same checks as ``ownlight models
promote`` and ``rollback``, and each act (or refusal) is recorded in the ledger with the
signed-in admin as its actor.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ownlight.admin.models import promote, rollback
from ownlight.audit import views
from ownlight.audit.queries import since_iso
from ownlight.audit.records import AdminRecord
from ownlight.console.admin.charts import bars
from ownlight.console.admin.routes import WINDOWS, _admin, _window
from ownlight.console.i18n import Translator, language
from ownlight.console.pages import render
from ownlight.console.routes import page
from ownlight.console.session import Session
from ownlight.errors import ConfigError, OwnlightError
from ownlight.principal import Principal
from ownlight.privacy.levels import LEVELS
from ownlight.protocol import openai as wire
from ownlight.protocol.model import Operation
from ownlight.routing.router import RouteRequest
from ownlight.runtime import Runtime


def _recorder(runtime: Runtime, actor: Principal) -> Any:
    def record(action: str, subject: str, details: dict[str, Any]) -> None:
        runtime.pipeline.ledger.write_sync(
            AdminRecord(action, subject, actor.name, actor.tenant, details))
    return record


def _models_view(runtime: Runtime) -> dict[str, Any]:
    readiness = runtime.readiness()
    aliases = [{"alias": alias, "kind": backend.kind, "model": backend.model_name,
                "state": readiness.get(alias, "?")}
               for alias, backend in sorted(runtime.backends.items())]
    registry = runtime.lifecycle.registry if runtime.lifecycle is not None else None
    versions: list[dict[str, Any]] = []
    history: dict[str, list[Any]] = {}
    if registry is not None:
        served = registry.served()
        for v in registry.versions():
            facts = v.facts
            versions.append({"ref": v.ref, "name": v.name, "version": v.version,
                             "license": v.license or "-", "size_mb": round(v.size / 2**20, 1),
                             "parameters": facts.get("parameters") or facts.get("params"),
                             "quantization": facts.get("quantization") or facts.get("file_type"),
                             "serving": served.get(v.name) == v.version})
        for name in sorted({v["name"] for v in versions}):
            history[name] = list(reversed(registry.history(name)))[:5]
    return {"aliases": aliases, "versions": versions, "history": history}


async def _models(request: Request, live: Session) -> Response:
    runtime = _admin(request, live)
    message, error = None, None
    if request.method == "POST":
        form = await request.form()
        registry = runtime.lifecycle.registry if runtime.lifecycle is not None else None
        record = _recorder(runtime, live.principal)
        try:
            if registry is None:
                raise ConfigError("this gateway has no model registry")
            if request.url.path.endswith("/rollback"):
                target, left = await asyncio.to_thread(
                    rollback, registry, str(form.get("name", "")), live.principal.name, record)
                message = ("admin.models.rolled_back", {"ref": target.ref, "left": left})
            else:
                name, _, number = str(form.get("ref", "")).partition("@")
                if not number.isdigit():
                    raise ConfigError("choose a version as NAME@VERSION")
                version, _, _ = await asyncio.to_thread(
                    promote, runtime.config, registry, name, int(number), live.principal.name,
                    record, gate=form.get("gate") == "on")
                message = ("admin.models.promoted", {"ref": version.ref})
        except (ConfigError, OwnlightError) as exc:
            error = str(exc)
    return render(request, "admin/models.html", live, error=error, message=message,
                  **_models_view(runtime))


async def _routing(request: Request, live: Session) -> Response:
    runtime = _admin(request, live)
    settings = runtime.config.settings.routing
    keys = [k for k in runtime.keys.list() if k.revoked_at is None]
    explained, error = None, None
    q = request.query_params
    prompt = q.get("prompt", "").strip()
    asked = {"prompt": prompt, "model": q.get("model", "auto"), "as": q.get("as", ""),
             "sensitivity": q.get("sensitivity", "unknown")}
    if prompt:
        who = next((k for k in keys if str(k.id) == asked["as"]), None)
        principal = (Principal(who.id, who.name, who.tenant, tuple(who.groups))
                     if who is not None else live.principal)
        try:
            parsed = wire.parse_request(Operation.CHAT, {
                "model": asked["model"], "messages": [{"role": "user", "content": prompt}]})
            decision = await runtime.pipeline.router.decide(RouteRequest(
                principal, asked["model"], Operation.CHAT, parsed, {}, asked["sensitivity"]))
            explained = {"principal": principal.name, **decision.as_dict()}
        except OwnlightError as exc:
            error = f"{exc.status} {exc.code}: {exc}"
    aliases = sorted({*runtime.backends, *settings.aliases})
    return render(request, "admin/routing.html", live, rules=settings.rules,
                  red_line=settings.red_line, routed=settings.aliases, aliases=aliases,
                  keys=keys, levels=["unknown", *LEVELS], asked=asked, explained=explained,
                  error=error)


async def _metrics(request: Request, live: Session) -> Response:
    runtime = _admin(request, live)
    window = _window(request)
    report = await asyncio.to_thread(views.metrics, runtime.audit_rows(), since_iso(window))
    t = Translator(language(request))
    periods = report["periods"]
    charts = [(name, f"admin.metrics.chart_{name}",
               bars([(p["period"], p[field]) for p in periods], t(f"admin.metrics.chart_{name}")))
              for name, field in (("requests", "requests"), ("tokens", "tokens"),
                                  ("cloud", "cloud"), ("guard", "guard_blocks"))]
    state = runtime.state()
    return render(request, "admin/metrics.html", live, total=report["total"], charts=charts,
                  window=window, windows=[(w, f"admin.window.{w}") for w in WINDOWS],
                  queues=state.get("queues", {}), circuits=state.get("circuits", {}),
                  models=state.get("models", {}))


routes: list[BaseRoute] = [
    Route("/console/admin/models", page(_models), methods=["GET"]),
    Route("/console/admin/models/promote", page(_models), methods=["POST"]),
    Route("/console/admin/models/rollback", page(_models), methods=["POST"]),
    Route("/console/admin/routing", page(_routing), methods=["GET"]),
    Route("/console/admin/metrics", page(_metrics), methods=["GET"]),
]
