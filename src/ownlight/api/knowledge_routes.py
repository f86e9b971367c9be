"""POST /v1/knowledge/search: the caller's key is the principal; the ACL is in the query."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ownlight.errors import InvalidRequest, OwnlightError
from ownlight.knowledge.service import (
    MAX_QUERY_CHARS,
    MODES,
    KnowledgeService,
    chunk_count,
    collection_names,
)
from ownlight.runtime import Runtime

from .bodies import error_response, json_response
from .common import bearer_key, read_json, record_read


def _search_args(body: Any, service: KnowledgeService) -> tuple[list[str], list[str], int, Any]:
    """(queries, collections, k, mode) from ``{"query", "collections", "k", "mode"}``."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    queries = body.get("query")
    if isinstance(queries, str):
        queries = [queries]
    if (not isinstance(queries, list) or not queries
            or not all(isinstance(q, str) and q.strip() for q in queries)):
        raise InvalidRequest("query must be a non-empty string or list of strings",
                             param="query")
    if any(len(q) > MAX_QUERY_CHARS for q in queries):
        raise InvalidRequest(f"a query may hold at most {MAX_QUERY_CHARS} characters",
                             param="query")
    collections = collection_names(body.get("collections"), "collections")
    if not collections:
        raise InvalidRequest("collections must name at least one collection",
                             param="collections")
    k = chunk_count(body.get("k", service.k), "k")
    mode = body.get("mode", "hybrid")
    if mode not in MODES:
        raise InvalidRequest(f"mode must be one of {', '.join(MODES)}", param="mode")
    return queries, collections, k, mode


async def knowledge_search(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        principal = runtime.keys.authenticate(bearer_key(request))
        service = runtime.knowledge
        if service is None:
            raise InvalidRequest("The knowledge base is turned off on this server "
                                 "(knowledge.enabled).")
        body = await read_json(request, runtime.config.settings.server.max_body_bytes)
        queries, collections, k, mode = _search_args(body, service)
        data = []
        read: list[tuple[str, str]] = []
        for index, query in enumerate(queries):
            hits = await service.search(principal, query, collections, k, mode)
            read += [(hit.collection, hit.document_id) for hit in hits]
            data.append({"index": index, "query": query,
                         "results": [hit.to_dict() for hit in hits]})
        record_read(runtime, principal, "/v1/knowledge/search",
                          {"collections": collections, "documents": read})
    except OwnlightError as exc:
        return error_response(exc)
    return json_response({"object": "list", "data": data})


routes = [Route("/v1/knowledge/search", knowledge_search, methods=["POST"])]
