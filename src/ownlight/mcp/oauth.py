"""Per-user OAuth for upstream MCP servers: Ownlight is the OAuth client, one token per
(server, principal), so a call always goes with the caller's own upstream token and never
with the caller's Ownlight key (the MCP spec's confused-deputy rule).

Discovery follows the spec: the server's 401 ``WWW-Authenticate: Bearer resource_metadata=``
→ RFC 9728 protected-resource metadata → RFC 8414 authorization-server metadata; the
client is the configured one or registered (RFC 7591). PKCE, the discovery URL order and
the metadata models are the ``mcp`` SDK's. The ``state`` sent to the authorization server
is sealed (``TokenBox``): it carries the principal, the PKCE verifier and the redirect URI,
so any instance sharing the key can finish the flow, and nobody can forge one for another
user. Tokens are stored sealed; every authorization, refresh, failure and disconnect is
recorded in the ledger."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx2
from mcp.client.auth.oauth2 import PKCEParameters
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    extract_resource_metadata_from_www_auth,
)
from mcp.shared.auth import (
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    OAuthToken,
    ProtectedResourceMetadata,
)
from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url

from ownlight.audit.ledger import Ledger
from ownlight.audit.records import AdminRecord
from ownlight.config.settings import McpServerSettings
from ownlight.mcp.token_box import TokenBox
from ownlight.store.base import McpTokenRows

log = logging.getLogger(__name__)

STATE_TTL = 600.0  # seconds a started authorization may take
EARLY = 30.0  # refresh this many seconds before a token expires
STATE_ROW = ("ownlight", "oauth-state")  # what a sealed state is bound to


class OAuthFailed(Exception):
    """The authorization could not be started or finished; ``message`` is for the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Discovered:
    resource: str  # the server's canonical URL, sent as ``resource`` (RFC 8707)
    metadata: OAuthMetadata
    scopes: list[str]


class OAuthBroker:
    """Tokens of every OAuth server (``[mcp.servers.NAME] oauth``), per principal."""

    def __init__(self, servers: dict[str, McpServerSettings], rows: McpTokenRows,
                 box: TokenBox, ledger: Ledger):
        self.servers = {n: s for n, s in servers.items() if s.oauth is not None}
        self.rows = rows
        self.box = box
        self.ledger = ledger
        self.on_authorized: list[Any] = []  # callables(server), e.g. wake the upstream
        self._discovered: dict[str, Discovered] = {}
        self._registered: dict[tuple[str, str], OAuthClientInformationFull] = {}
        self._used_states: dict[str, float] = {}  # state -> when it expires (no replays)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def __contains__(self, server: str) -> bool:
        return server in self.servers

    # -- discovery and registration ---------------------------------------------------

    async def discover(self, server: str) -> Discovered:
        """The server's resource and authorization server (found once, then kept)."""
        if server not in self._discovered:
            try:
                self._discovered[server] = await self._discover(server)
            except httpx2.HTTPError as exc:
                raise OAuthFailed(f"The MCP server {server} or its authorization server "
                                  f"could not be reached: {exc}") from None
        return self._discovered[server]

    async def _discover(self, server: str) -> Discovered:
        url = self.servers[server].url
        assert url is not None
        async with httpx2.AsyncClient(timeout=10) as http:
            probe = await http.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "ping"},
                                    headers={"Accept": "application/json, text/event-stream"})
            hint = extract_resource_metadata_from_www_auth(probe) \
                if probe.status_code == 401 else None
            prm = await _first(http, build_protected_resource_metadata_discovery_urls(hint, url),
                               ProtectedResourceMetadata)
            canonical = resource_url_from_server_url(url)
            if prm is None:
                raise OAuthFailed(f"The MCP server {server} publishes no protected-resource "
                                  "metadata (RFC 9728).")
            resource = str(prm.resource)
            if not check_resource_allowed(canonical, resource):
                raise OAuthFailed(f"The MCP server {server} names a different resource "
                                  f"({resource}); refused.")
            issuer = str(prm.authorization_servers[0])
            meta = await _first(http, build_oauth_authorization_server_metadata_discovery_urls(
                issuer, url), OAuthMetadata)
        if meta is None:
            raise OAuthFailed(f"The authorization server of {server} publishes no metadata.")
        oauth = self.servers[server].oauth
        assert oauth is not None
        return Discovered(canonical, meta, list(oauth.scopes or prm.scopes_supported or []))

    async def _client(self, server: str, meta: OAuthMetadata,
                      redirect_uri: str) -> tuple[str, str | None]:
        oauth = self.servers[server].oauth
        assert oauth is not None
        if oauth.client_id is not None:
            secret = oauth.client_secret.reveal() if oauth.client_secret else None
            return oauth.client_id.reveal(), secret
        known = self._registered.get((server, redirect_uri))
        if known is None:
            if meta.registration_endpoint is None:
                raise OAuthFailed(f"The authorization server of {server} offers no client "
                                  "registration; set [mcp.servers.NAME.oauth] client_id.")
            body = OAuthClientMetadata.model_validate({
                "redirect_uris": [redirect_uri], "client_name": "Ownlight",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"], "token_endpoint_auth_method": "none"})
            try:
                async with httpx2.AsyncClient(timeout=10) as http:
                    reply = await http.post(str(meta.registration_endpoint),
                                            json=body.model_dump(mode="json", exclude_none=True))
            except httpx2.HTTPError as exc:
                raise OAuthFailed(f"The authorization server of {server} could not be "
                                  f"reached: {exc}") from None
            if reply.status_code not in (200, 201):
                raise OAuthFailed(f"The authorization server of {server} refused to register "
                                  f"Ownlight ({reply.status_code}).")
            known = OAuthClientInformationFull.model_validate_json(reply.content)
            self._registered[(server, redirect_uri)] = known
        assert known.client_id is not None
        return known.client_id, known.client_secret

    # -- the flow -----------------------------------------------------------------------

    async def start_url(self, server: str, principal: str, redirect_uri: str) -> str:
        """Where to send the user: the authorization endpoint with PKCE, state, resource."""
        found = await self.discover(server)
        client_id, client_secret = await self._client(server, found.metadata, redirect_uri)
        pkce = PKCEParameters.generate()
        state = self.box.seal(*STATE_ROW, {
            "server": server, "principal": principal, "verifier": pkce.code_verifier,
            "redirect_uri": redirect_uri, "client_id": client_id, "client_secret": client_secret,
            "expires": time.time() + STATE_TTL, "nonce": secrets.token_urlsafe(8)})
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                  "code_challenge": pkce.code_challenge, "code_challenge_method": "S256",
                  "state": state, "resource": found.resource}
        if found.scopes:
            params["scope"] = " ".join(found.scopes)
        return f"{found.metadata.authorization_endpoint}?{urlencode(params)}"

    async def finish(self, state: str, code: str) -> tuple[str, str]:
        """The callback: check the state, exchange the code; (server, principal)."""
        pending = self.box.open(*STATE_ROW, state)
        if pending is None or pending.get("server") not in self.servers:
            self._record("mcp.oauth.failed", "-", "-", {"reason": "bad_state"})
            raise OAuthFailed("This authorization link is not valid.")
        server, principal = str(pending["server"]), str(pending["principal"])
        now = time.time()
        self._used_states = {k: t for k, t in self._used_states.items() if t > now}
        if float(pending["expires"]) < now or state in self._used_states:
            self._record("mcp.oauth.failed", server, principal, {"reason": "stale_state"})
            raise OAuthFailed("This authorization link has expired or was used; start again.")
        self._used_states[state] = float(pending["expires"])
        found = await self.discover(server)
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": pending["redirect_uri"], "client_id": pending["client_id"],
                "code_verifier": pending["verifier"], "resource": found.resource}
        if pending.get("client_secret"):
            form["client_secret"] = pending["client_secret"]
        token = await self._token_request(server, principal, found, form)
        self._store(server, principal, token, pending["client_id"], pending.get("client_secret"))
        self._record("mcp.oauth.authorize", server, principal, {"scope": token.scope})
        for wake in self.on_authorized:
            wake(server)
        return server, principal

    async def _token_request(self, server: str, principal: str, found: Discovered,
                             form: dict[str, Any]) -> OAuthToken:
        try:
            async with httpx2.AsyncClient(timeout=10) as http:
                reply = await http.post(str(found.metadata.token_endpoint), data=form)
        except httpx2.HTTPError as exc:
            self._record("mcp.oauth.failed", server, principal,
                         {"reason": "unreachable", "grant_type": form["grant_type"]})
            raise OAuthFailed(f"The authorization server of {server} could not be reached: "
                              f"{exc}") from None
        if reply.status_code != 200:
            self._record("mcp.oauth.failed", server, principal,
                         {"reason": "token_endpoint", "status": reply.status_code,
                          "grant_type": form["grant_type"]})
            raise OAuthFailed(f"The authorization server of {server} refused the token "
                              f"request ({reply.status_code}).")
        return OAuthToken.model_validate_json(reply.content)

    def _store(self, server: str, principal: str, token: OAuthToken, client_id: str,
               client_secret: str | None) -> None:
        expires = time.time() + token.expires_in if token.expires_in else None
        self.rows.put(server, principal, self.box.seal(server, principal, {
            "access_token": token.access_token, "refresh_token": token.refresh_token,
            "expires_at": expires, "client_id": client_id, "client_secret": client_secret}))

    # -- tokens for calls -----------------------------------------------------------------

    async def token(self, server: str, principal: str) -> str | None:
        """The principal's access token for the server, refreshed when about to expire;
        None when they have not authorized (or it can no longer be refreshed)."""
        sealed = self.rows.get(server, principal)
        held = self.box.open(server, principal, sealed) if sealed else None
        if held is None:
            return None
        expires = held.get("expires_at")
        if expires is not None and float(expires) - EARLY < time.time():
            return await self.refresh(server, principal, str(held["access_token"]))
        return str(held["access_token"])

    async def refresh(self, server: str, principal: str, stale: str) -> str | None:
        """A new access token from the refresh token (once per stale token, however many
        calls ask); None, recorded, when there is none or the server refuses it."""
        lock = self._locks.setdefault((server, principal), asyncio.Lock())
        async with lock:
            sealed = self.rows.get(server, principal)
            held = self.box.open(server, principal, sealed) if sealed else None
            if held is None:
                return None
            if held["access_token"] != stale:  # another call refreshed it meanwhile
                return str(held["access_token"])
            if not held.get("refresh_token"):
                self._record("mcp.oauth.failed", server, principal, {"reason": "no_refresh"})
                return None
            found = await self.discover(server)
            form = {"grant_type": "refresh_token", "refresh_token": held["refresh_token"],
                    "client_id": held["client_id"], "resource": found.resource}
            if held.get("client_secret"):
                form["client_secret"] = held["client_secret"]
            try:
                token = await self._token_request(server, principal, found, form)
            except OAuthFailed:
                return None
            if token.refresh_token is None:  # the old one stays valid (RFC 6749 6)
                token = token.model_copy(update={"refresh_token": held["refresh_token"]})
            self._store(server, principal, token, held["client_id"], held.get("client_secret"))
            self._record("mcp.oauth.refresh", server, principal, {})
            return token.access_token

    async def service_token(self, server: str) -> str | None:
        """A token to list the server's tools with: the most recently stored user's."""
        latest = self.rows.latest(server)
        return await self.token(server, latest[0]) if latest else None

    def disconnect(self, server: str, principal: str, by: str) -> bool:
        """Forget the principal's tokens for the server; recorded."""
        gone = self.rows.delete(server, principal)
        self._record("mcp.oauth.disconnect", server, principal, {"by": by, "had_token": gone})
        return gone

    def _record(self, action: str, server: str, principal: str, details: dict[str, Any]) -> None:
        self.ledger.put(AdminRecord(action=action, subject=server, principal=principal,
                                    details=details))


async def _first(http: httpx2.AsyncClient, urls: list[str], model: Any) -> Any:
    """The first of ``urls`` that answers 200 with a valid ``model`` document, or None."""
    for url in urls:
        try:
            reply = await http.get(url)
            if reply.status_code == 200:
                return model.model_validate_json(reply.content)
        except Exception as exc:  # noqa: BLE001 - try the next place
            log.debug("no metadata at %s: %s", url, exc)
    return None
