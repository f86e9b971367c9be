"""``ownlight mcp``: the configured MCP servers' tools and their pins, and approving a
server's current definitions. The command connects to the servers itself (a stdio server
is started for the moment and stopped again), so it works with or without a running
gateway; a running gateway picks the new pins up on its next ``tools/list``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import click

from ownlight.audit.metrics import Metrics
from ownlight.cli_support import cli_config
from ownlight.config import Config
from ownlight.mcp.hub import ToolHub, ToolState
from ownlight.mcp.pins import ToolPins
from ownlight.runtime import build_guard, build_oauth, open_ledger, open_state
from ownlight.store.open import open_stores

CONNECT_WAIT = 30.0


@asynccontextmanager
async def _hub(config: Config) -> AsyncIterator[ToolHub]:
    state = open_state(config)
    stores = open_stores(config, state)
    ledger = open_ledger(config)
    hub = ToolHub(config.settings.mcp, pins=ToolPins(stores.registry), ledger=ledger,
                  metrics=Metrics(), privacy=None, guard=build_guard(config),
                  red_line=list(config.settings.routing.red_line),
                  oauth=build_oauth(config, stores, ledger))  # lists with a user's token
    try:
        await hub.start(wait=CONNECT_WAIT)
        yield hub
    finally:
        await hub.stop()
        ledger.close()
        stores.close()
        state.close()


def _rows(states: list[ToolState]) -> list[dict[str, str]]:
    return [{"tool": s.tool, "state": s.state, "sha256": s.sha256} for s in states]


def _names(config: Config, server: str | None) -> list[str]:
    servers = list(config.settings.mcp.servers)
    if server is None:
        return servers
    if server not in servers:
        raise click.ClickException(f"no MCP server named {server!r} is configured "
                                   f"(configured: {', '.join(servers) or 'none'})")
    return [server]


@click.group("mcp")
def mcp_group() -> None:
    """The MCP gateway's upstream servers: their tools and pinned definitions."""


@mcp_group.command("status")
@click.argument("server", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
def mcp_status(server: str | None, as_json: bool) -> None:
    """Each server's tools and whether each is approved, changed, new or poisoned."""
    config = cli_config()
    names = _names(config, server)

    async def run() -> dict[str, object]:
        out: dict[str, object] = {}
        async with _hub(config) as hub:
            for name in names:
                if hub.upstreams[name].client is None:
                    out[name] = {"connected": False}
                    continue
                out[name] = {"connected": True, "tools": _rows(await hub.states(name))}
        return out

    report = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for name, row in report.items():
        assert isinstance(row, dict)
        if not row["connected"]:
            click.echo(f"{name}: not connected")
            continue
        click.echo(f"{name}:")
        for tool in row["tools"]:
            click.echo(f"  {tool['tool']:<32} {tool['state']:<9} {tool['sha256'][:12]}")


@mcp_group.command("approve")
@click.argument("server")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
def mcp_approve(server: str, as_json: bool) -> None:
    """Pin SERVER's current tool definitions (poisoned ones stay withheld); recorded."""
    config = cli_config()
    _names(config, server)

    async def run() -> list[ToolState]:
        async with _hub(config) as hub:
            if hub.upstreams[server].client is None:
                raise click.ClickException(f"the MCP server {server!r} did not start or "
                                           "answer; nothing was approved")
            return await hub.approve(server, "cli")

    states = asyncio.run(run())
    if as_json:
        click.echo(json.dumps({"server": server, "tools": _rows(states)}, indent=2))
        return
    for s in states:
        click.echo(f"{server}__{s.tool}: {s.state}")


@mcp_group.command("disconnect")
@click.argument("server")
@click.option("--user", "user", required=True, help="The principal whose tokens to forget.")
def mcp_disconnect(server: str, user: str) -> None:
    """Forget USER's OAuth tokens for SERVER (they authorize again on their next call);
    recorded in the ledger."""
    config = cli_config()
    _names(config, server)
    if config.settings.mcp.servers[server].oauth is None:
        raise click.ClickException(f"the MCP server {server!r} does not use OAuth")
    state = open_state(config)
    stores = open_stores(config, state)
    ledger = open_ledger(config)
    try:
        broker = build_oauth(config, stores, ledger)
        assert broker is not None
        gone = broker.disconnect(server, user, "cli")
    finally:
        ledger.close()
        stores.close()
        state.close()
    click.echo(f"{server}: {user} disconnected" if gone
               else f"{server}: {user} had no tokens (recorded all the same)")
