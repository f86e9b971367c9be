"""The console's pages and the few JSON calls its script makes, all under ``/console``.

Pages need a session (else they redirect to sign-in); the JSON calls answer 401 without
one, 403 for a missing CSRF token or an admin call by an ordinary user. Chat runs through
the same pipeline as the API, as the signed-in principal, so everything the API enforces
(aliases the key may use, access lists, the privacy shield, the guard, budgets, the ledger)
holds here too.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ownlight.api.common import until_disconnect
from ownlight.api.openai_responses_routes import ResponsesFrontEnd
from ownlight.audit.records import AdminRecord, new_request_id
from ownlight.console import answers, session
from ownlight.console.i18n import COOKIE as LANG_COOKIE
from ownlight.console.i18n import LANGUAGES
from ownlight.console.pages import SECURITY_HEADERS, render
from ownlight.console.session import COOKIE, LIFETIME, Forbidden, NotSignedIn, Session
from ownlight.console.store import ConversationRows
from ownlight.errors import AuthenticationFailed, OwnlightError
from ownlight.protocol.model import Operation
from ownlight.runtime import Runtime
from ownlight.stages.context import GatewayRequest

STATIC = Path(__file__).parent / "static"
SIGNIN_CSRF = "ownlight_signin"
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
_responses = ResponsesFrontEnd()


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _secure_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True,
                        samesite="strict")


Page = Callable[[Request, Session], Awaitable[Response]]


def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A page: signed in, or redirected to sign-in; 403 page when not allowed."""
    async def endpoint(request: Request) -> Response:
        try:
            live = session.current(request)
            if request.method != "GET":
                await session.check_csrf(request, live)
            return await handler(request, live)
        except NotSignedIn:
            return RedirectResponse("/console/sign-in", 303, headers=SECURITY_HEADERS)
        except Forbidden as exc:
            return render(request, "forbidden.html", None, status=403, reason=exc.reason)
    return endpoint


def api(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A JSON call of the console's script: 401 signed out, 403 without the CSRF token."""
    async def endpoint(request: Request) -> Response:
        try:
            live = session.current(request)
            if request.method != "GET":
                await session.check_csrf(request, live)
            return await handler(request, live)
        except NotSignedIn:
            return _error(401, "not_signed_in", "Sign in to the console first.")
        except Forbidden as exc:
            return _error(403, exc.reason, "Not allowed.")
        except OwnlightError as exc:
            return _error(exc.status, exc.code or "invalid_request", str(exc))
    return endpoint


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status,
                        headers=SECURITY_HEADERS)


# -- sign-in -----------------------------------------------------------------------

async def sign_in_form(request: Request) -> Response:
    token = request.cookies.get(SIGNIN_CSRF) or secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", None, signin_csrf=token,
                      failed=request.query_params.get("failed") == "1")
    _secure_cookie(response, SIGNIN_CSRF, token, 3600)
    return response


async def sign_in(request: Request) -> Response:
    """An API key in, a session cookie out. The form's token must match its cookie (a
    page of another site cannot sign a browser in with the attacker's key)."""
    runtime = _runtime(request)
    form = await request.form()
    sent, expected = str(form.get("csrf") or ""), request.cookies.get(SIGNIN_CSRF) or ""
    if not expected or not hmac.compare_digest(sent, expected):
        return render(request, "forbidden.html", None, status=403, reason="csrf")
    key = str(form.get("key") or "").strip()
    try:
        runtime.keys.authenticate(key, request.scope)  # a refusal is recorded there
    except AuthenticationFailed:
        return RedirectResponse("/console/sign-in?failed=1", 303, headers=SECURITY_HEADERS)
    from ownlight.auth import hash_key

    token, _csrf = session.rows(runtime).open(hash_key(key), LIFETIME)
    response = RedirectResponse("/console/", 303, headers=SECURITY_HEADERS)
    _secure_cookie(response, COOKIE, token, int(LIFETIME))
    response.delete_cookie(SIGNIN_CSRF, path="/")
    return response


async def _sign_out(request: Request, live: Session) -> Response:
    session.rows(_runtime(request)).close(live.token)
    response = RedirectResponse("/console/sign-in", 303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


async def choose_language(request: Request) -> Response:
    code = request.path_params["code"]
    back = request.query_params.get("next", "/console/")
    if not back.startswith("/console") or code not in LANGUAGES:
        back = "/console/"
    response = RedirectResponse(back, 303, headers=SECURITY_HEADERS)
    if code in LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, path="/", secure=True,
                            samesite="strict")
    return response


# -- chat --------------------------------------------------------------------------

def _aliases(runtime: Runtime) -> list[str]:
    return sorted(runtime.backends)


async def _chat_page(request: Request, live: Session) -> Response:
    runtime = _runtime(request)
    conversations = ConversationRows(_registry(runtime))
    chosen = request.path_params.get("conversation")
    turns: list[dict[str, str]] = []
    current = None
    if chosen:
        current = conversations.get(live.principal, chosen)
        if current is None:
            return render(request, "not_found.html", live, status=404)
        for response_id in current.responses:
            try:
                body, context = runtime.responses.get(live.principal, response_id)
            except OwnlightError:
                continue
            question = _last_user_text(context)
            turns.append({"question": question,
                          "answer_html": answers.answer_html(answers.output_text(body))})
    return render(request, "chat.html", live, conversations=conversations.list(live.principal),
                  current=current, turns=turns, aliases=_aliases(runtime),
                  collections=_readable_collections(runtime, live))


def _last_user_text(context: list[Any]) -> str:
    for item in reversed(context):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return ""


def _registry(runtime: Runtime) -> Any:
    assert runtime.stores is not None
    return runtime.stores.registry


async def _chat(request: Request, live: Session) -> Response:
    """One turn, streamed as the Responses API's events, through the pipeline as the
    signed-in principal; the answer is stored and appended to the conversation."""
    runtime = _runtime(request)
    try:
        ask = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _error(400, "invalid_json", "The body is not JSON.")
    if not isinstance(ask, dict) or not str(ask.get("message") or "").strip():
        return _error(400, "invalid_request", "Write a message first.")
    conversations = ConversationRows(_registry(runtime))
    model = str(ask.get("model") or "")
    conversation = (conversations.get(live.principal, str(ask["conversation"]))
                    if ask.get("conversation") else None)
    if conversation is None:
        conversation = conversations.start(live.principal, str(ask["message"])[:60], model)
    body: dict[str, Any] = {"model": model or conversation.model, "input": str(ask["message"]),
                            "stream": True, "store": True}
    if conversation.head:
        body["previous_response_id"] = conversation.head
    knowledge = [str(c) for c in ask.get("knowledge") or [] if str(c)]
    if knowledge:
        body["knowledge"] = knowledge
    request_id = new_request_id()
    exchange = _responses.exchange(runtime, live.principal, {})
    try:
        result = await until_disconnect(request.receive, runtime.pipeline.handle(
            GatewayRequest(Operation.CHAT, body, None, exchange.parse, {}, request_id,
                           endpoint="/console/api/chat"), principal=live.principal))
    except OwnlightError as exc:
        return _error(exc.status, exc.code or "invalid_request", str(exc))
    assert result.stream is not None
    headers = {**SECURITY_HEADERS, **{k: v for k, v in result.headers.items()
                                      if k.startswith("x-ownlight-")},
               "x-ownlight-request-id": request_id, "x-console-conversation": conversation.id}

    async def events() -> AsyncIterator[bytes]:
        async for event in exchange.events(result.stream):  # type: ignore[arg-type]
            if event.get("type") == "response.completed":
                await asyncio.to_thread(conversations.add_turn, live.principal,
                                        conversation.id, event["response"]["id"])
            yield b"data: " + orjson.dumps(event) + b"\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


async def _answer(request: Request, live: Session) -> Response:
    """The finished answer as safe HTML, and what the ledger recorded about it."""
    runtime = _runtime(request)
    response_id = request.query_params.get("response", "")
    try:
        body, _ = runtime.responses.get(live.principal, response_id)
    except OwnlightError:
        return _error(404, "not_found", "No such answer.")
    facts = None
    for _ in range(20):  # the chainer writes the record a moment after the answer
        facts = await asyncio.to_thread(answers.request_facts, runtime, live.principal,
                                        request.path_params["request_id"])
        if facts is not None:
            break
        await asyncio.sleep(0.1)
    return JSONResponse({"html": answers.answer_html(answers.output_text(body)),
                         "citations": body.get("citations") or [], "facts": facts},
                        headers=SECURITY_HEADERS)


async def _rename(request: Request, live: Session) -> Response:
    title = str((orjson.loads(await request.body()) or {}).get("title") or "").strip()
    if not title:
        return _error(400, "invalid_request", "A title cannot be empty.")
    done = ConversationRows(_registry(_runtime(request))).rename(
        live.principal, request.path_params["conversation"], title)
    return JSONResponse({"renamed": done}, 200 if done else 404, headers=SECURITY_HEADERS)


async def _delete(request: Request, live: Session) -> Response:
    runtime = _runtime(request)
    gone = ConversationRows(_registry(runtime)).delete(live.principal,
                                                       request.path_params["conversation"])
    if gone is None:
        return _error(404, "not_found", "No such conversation.")
    for response_id in gone.responses:  # the turns go with it
        try:
            runtime.responses.delete(live.principal, response_id)
        except OwnlightError:
            pass
    return JSONResponse({"deleted": True}, headers=SECURITY_HEADERS)


# -- knowledge ---------------------------------------------------------------------

def _readable_collections(runtime: Runtime, live: Session) -> list[str]:
    service = runtime.knowledge
    if service is None:
        return []
    return service.readable_collections(live.principal)


async def _knowledge_page(request: Request, live: Session) -> Response:
    runtime = _runtime(request)
    service = runtime.knowledge
    query = request.query_params.get("q", "").strip()
    chosen = [c for c in request.query_params.getlist("collection") if c]
    collections = _readable_collections(runtime, live)
    hits = []
    if service is not None and query:
        hits = await service.search(live.principal, query, chosen or collections,
                                    k=10, mode="lexical" if service.embedder is None else "hybrid")
    focus = (request.query_params.get("document"), request.query_params.get("chunk"))
    access = {}
    if service is not None:
        for name in collections:
            shown = await asyncio.to_thread(service.access_list, live.principal, name)
            if shown is not None:
                access[name] = shown
    return render(request, "knowledge.html", live, enabled=service is not None, query=query,
                  hits=hits, collections=collections, chosen=chosen, focus=focus,
                  access=access, access_error=request.query_params.get("access") == "invalid")


async def _change_access(request: Request, live: Session) -> Response:
    """A collection-wide reader added or removed, by its owners or an admin only (403
    for anyone else, the same answer whether or not the collection exists)."""
    runtime = _runtime(request)
    service = runtime.knowledge
    form = await request.form()
    collection = str(form.get("collection") or "").strip()
    identity = str(form.get("identity") or "").strip()
    allow = form.get("action") != "revoke"
    who = live.principal

    def record(status: int) -> None:
        runtime.pipeline.ledger.append(AdminRecord(
            "knowledge.grant" if allow else "knowledge.revoke", collection, who.name,
            who.tenant, {"identity": identity, "via": "console"}, status=status))

    if service is None or not collection:
        record(403)
        raise Forbidden("not_owner")
    try:
        changed = await asyncio.to_thread(service.change_access, who, collection, identity,
                                          allow)
    except OwnlightError:
        record(400)
        return RedirectResponse("/console/knowledge?access=invalid", 303,
                                headers=SECURITY_HEADERS)
    record(200 if changed else 403)
    if not changed:
        raise Forbidden("not_owner")
    return RedirectResponse("/console/knowledge", 303, headers=SECURITY_HEADERS)


async def _upload(request: Request, live: Session) -> Response:
    """A file into a collection, owned by the uploader; parsed in a bounded child process
    like ``ownlight ingest``."""
    runtime = _runtime(request)
    service = runtime.knowledge
    if service is None:
        return _error(400, "knowledge_off", "The knowledge base is turned off on this server.")
    if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES:
        return _error(413, "too_large", f"Files up to {MAX_UPLOAD_BYTES // 2**20} MiB.")
    async with request.form(max_files=1) as form:  # closes the spooled upload
        collection = str(form.get("collection") or "").strip()
        upload = form.get("file")
        if not collection or upload is None or isinstance(upload, str):
            return _error(400, "invalid_request", "Choose a collection and a file.")
        name = Path(upload.filename or "upload.txt").name or "upload.txt"
        data = await upload.read()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        report = await asyncio.to_thread(service.ingest_sync, live.principal, path, collection,
                                         (runtime.config.data_dir,))
    runtime.pipeline.ledger.append(AdminRecord(
        "knowledge.ingest", collection, live.principal.name, live.principal.tenant,
        {"path": name, "owner": live.principal.name, "via": "console"}, status=200))
    return JSONResponse({"collection": collection, "file": name, **report.to_dict()},
                        headers=SECURITY_HEADERS)


async def root_page(request: Request) -> Response:
    return RedirectResponse("/console/", 303)


def _admin_routes() -> list[BaseRoute]:
    """The admin views' routes (``console.admin``), when that package is present."""
    found: list[BaseRoute] = []
    for module in ("ownlight.console.admin.routes", "ownlight.console.admin.operations"):
        try:
            found += importlib.import_module(module).routes
        except ModuleNotFoundError:
            continue
    return found


routes: list[BaseRoute] = [
    Route("/console/sign-in", sign_in_form, methods=["GET"]),
    Route("/console/sign-in", sign_in, methods=["POST"]),
    Route("/console/sign-out", page(_sign_out), methods=["POST"]),
    Route("/console/lang/{code}", choose_language, methods=["GET"]),
    Route("/console/", page(_chat_page), methods=["GET"]),
    Route("/console/c/{conversation}", page(_chat_page), methods=["GET"]),
    Route("/console/knowledge", page(_knowledge_page), methods=["GET"]),
    Route("/console/knowledge/access", page(_change_access), methods=["POST"]),
    Route("/console/api/chat", api(_chat), methods=["POST"]),
    Route("/console/api/answers/{request_id}", api(_answer), methods=["GET"]),
    Route("/console/api/conversations/{conversation}/rename", api(_rename), methods=["POST"]),
    Route("/console/api/conversations/{conversation}/delete", api(_delete), methods=["POST"]),
    Route("/console/api/knowledge/upload", api(_upload), methods=["POST"]),
    *_admin_routes(),
    Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
]
