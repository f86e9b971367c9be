"""The ``ownlight`` command line: serve, chat, keys, models, config."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ownlight.audit.audit_cli import audit_group
from ownlight.audit.ledger import record_admin_act
from ownlight.audit.records import AdminRecord
from ownlight.backends.base import Operation
from ownlight.cli_support import progress_bar
from ownlight.config import Config, effective_view, load_config, upstream_entry
from ownlight.errors import ConfigError, OwnlightError
from ownlight.evals.eval_cli import eval_group
from ownlight.guard.guard_cli import guard_group
from ownlight.knowledge.knowledge_cli import ingest_command, search_command
from ownlight.mcp.mcp_cli import mcp_group
from ownlight.models.models_cli import models_group
from ownlight.pipeline import GatewayRequest
from ownlight.principal import Principal
from ownlight.privacy.privacy_cli import privacy_group
from ownlight.protocol import openai as wire
from ownlight.routing.router_cli import router_group
from ownlight.runtime import Runtime, freeze_startup_objects, open_keys, state_path
from ownlight.store.db_cli import db_group
from ownlight.store.files import private_umask, secure_data_dir
from ownlight.store.open import store_url

err = Console(stderr=True)


def _load(ctx: click.Context) -> Config:
    try:
        return load_config(ctx.obj.get("config_path"))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


class OwnlightGroup(click.Group):
    """The root command. Before any subcommand runs, this process's files are made private
    and the data dir is checked (``store.files``): a warning naming what other users may
    read and the ``chmod`` that fixes it, or a refusal. Help and ``config`` never open the
    data dir, so they skip the check. A ``ConfigError`` from any command is its message."""

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        private_umask()
        if name != "config" and not ctx.resilient_parsing and not {"-h", "--help"} & set(rest):
            _check_data_dir(ctx.params.get("config_path"))
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        """A configuration that cannot work (a store that cannot be reached, a secret file
        that is missing) ends any command with its message, not a traceback."""
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc


def _check_data_dir(config_path: str | None) -> None:
    try:
        config = load_config(config_path)
    except ConfigError:
        return  # the command says what is wrong with it
    try:
        secure_data_dir(config.data_dir, strict=config.settings.server.strict_permissions,
                        warn=lambda message: click.secho(f"Warning: {message}", err=True,
                                                         fg="yellow"))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(cls=OwnlightGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $OWNLIGHT_CONFIG or ~/.ownlight/ownlight.toml).")
@click.option("--verbose", "-v", is_flag=True,
              help="Show Ownlight's debug log on stderr, llama.cpp's model-loading lines too.")
@click.version_option(package_name="ownlight")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Ownlight: a self-hosted, local-first AI gateway."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    if verbose:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("ownlight").setLevel(logging.DEBUG)


# -- serve ------------------------------------------------------------------------------


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise click.BadParameter(f"expected NAME=VALUE, got {value!r}", param_hint=flag)
        pairs[name] = rest
    return pairs


@main.command()
@click.option("--host", help="Address to listen on (overrides server.host).")
@click.option("--port", type=int, help="Port to listen on (overrides server.port).")
@click.option("--upstream", multiple=True, metavar="NAME=URL",
              help="Add an OpenAI-compatible backend under alias NAME (repeatable).")
@click.option("--upstream-key", multiple=True, metavar="NAME=KEY",
              help="API key for an --upstream NAME.")
@click.option("--no-local", is_flag=True, help="Do not load the embedded models.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, upstream: tuple[str, ...],
          upstream_key: tuple[str, ...], no_local: bool) -> None:
    """Start the OpenAI-compatible gateway."""
    import uvicorn

    from ownlight.server import create_app

    config = _load(ctx)
    overrides: dict[str, Any] = {}
    if host:
        overrides["server.host"] = host
    if port:
        overrides["server.port"] = port
    if no_local:
        overrides["local.enabled"] = False
    config = config.with_overrides(**{k.replace(".", "__"): v for k, v in overrides.items()})
    keys = _pairs(upstream_key, "--upstream-key")
    upstreams = _pairs(upstream, "--upstream")
    unknown = set(keys) - set(upstreams)
    if unknown:
        raise click.BadParameter(f"no --upstream named {', '.join(sorted(unknown))}",
                                 param_hint="--upstream-key")
    config = config.with_models(
        {name: upstream_entry(name, url, keys.get(name)) for name, url in upstreams.items()}
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    runtime = Runtime.build(config, chainer="process")
    with progress_bar("Preparing models") as update:
        runtime.prepare(update)
    _bootstrap_key(runtime)
    for alias, backend in runtime.backends.items():
        err.print(f"  model [bold]{alias}[/] -> {backend.kind} {backend.model_name}")
    address = f"http://{config.host}:{config.port}"
    err.print(f"Ownlight listening on {address}/v1")
    err.print(f"The console: open {address}/ in a browser and sign in with a key")
    freeze_startup_objects()
    uvicorn.run(
        create_app(runtime), host=config.host, port=config.port, loop="uvloop",
        http="httptools", access_log=config.settings.server.access_log,
        log_level="info", timeout_graceful_shutdown=5,
        proxy_headers=bool(config.settings.server.trusted_proxies),
        forwarded_allow_ips=",".join(config.settings.server.trusted_proxies) or None,
    )


def _bootstrap_key(runtime: Runtime) -> None:
    """On a brand-new install, make the first key so the operator can call the API."""
    made = runtime.keys.create_first("admin", groups=("admin",))
    if made is None:
        return
    key, record = made
    runtime.pipeline.ledger.write_sync(AdminRecord(
        "key.create", "admin", "ownlight serve", details={"key_id": record.id,
                                                          "groups": ["admin"]}))
    err.print("No API keys existed; created one for [bold]admin[/] (shown only now):")
    click.echo(key)


# -- chat -------------------------------------------------------------------------------


@main.command()
@click.argument("question", required=False)
@click.option("--model", "-m", default="local", show_default=True, help="Model alias.")
@click.option("--max-tokens", type=int, default=256, show_default=True)
@click.option("--temperature", type=float, default=0.7, show_default=True)
@click.option("--system", help="System message.")
@click.option("--knowledge", "-k", multiple=True, metavar="COLLECTION",
              help="Ground answers in a collection you may read (repeatable).")
@click.pass_context
def chat(ctx: click.Context, question: str | None, model: str, max_tokens: int,
         temperature: float, system: str | None, knowledge: tuple[str, ...]) -> None:
    """Chat with a model in the terminal; with QUESTION, answer once and exit.

    You chat as your login user (group ``operators``): with --knowledge, answers cite
    the documents of those collections that this user may read.
    """
    config = _load(ctx)
    if model not in config.models:
        raise click.ClickException(f"unknown model alias {model!r}")
    config = config.only_models([model])
    runtime = Runtime.build(config)
    with progress_bar("Preparing model") as update:
        runtime.prepare(update)
    if runtime.load_errors:
        raise click.ClickException("; ".join(runtime.load_errors.values()))
    principal = Principal(0, getpass.getuser(), "default", ("operators",))
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
    if knowledge:
        options["knowledge"] = list(knowledge)
    asyncio.run(_chat_session(runtime, principal, model, messages, question, options))


async def _chat_session(runtime: Runtime, principal: Principal, model: str,
                        messages: list[dict[str, str]], question: str | None,
                        sampling: dict[str, Any]) -> None:
    with err.status(f"Loading {model}..."):
        await runtime.start()
    if runtime.load_errors:
        raise click.ClickException("; ".join(runtime.load_errors.values()))
    try:
        if question is not None:
            await _ask(runtime, principal, model, messages, question, sampling)
            return
        err.print(f"Chatting with [bold]{model}[/]. Ctrl-D to leave.")
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                click.echo()
                return
            if line.strip():
                await _ask(runtime, principal, model, messages, line, sampling)
    finally:
        await runtime.close()


async def _ask(runtime: Runtime, principal: Principal, model: str,
               messages: list[dict[str, str]], text: str, sampling: dict[str, Any]) -> None:
    messages.append({"role": "user", "content": text})
    body = {"model": model, "messages": messages, "stream": True, **sampling}
    try:
        response = await runtime.pipeline.handle(
            GatewayRequest(Operation.CHAT, body, None, wire.parse_request), principal=principal
        )
    except OwnlightError as exc:
        messages.pop()
        raise click.ClickException(exc.message) from exc
    parts: list[str] = []
    assert response.stream is not None
    async for chunk in response.stream:
        for choice in chunk.choices:
            piece = choice.text or ""
            if not parts:
                piece = piece.lstrip()
            if piece:
                parts.append(piece)
                click.echo(piece, nl=False)
    click.echo()
    if response.headers.get("x-ownlight-grounding") == "none":
        names = ", ".join(sampling.get("knowledge") or [])
        err.print(f"[yellow]note[/]: nothing you may read in {escape(names)} matched, so this "
                  "answer cites no source (see `ownlight ingest --owner/--allow`).")
    messages.append({"role": "assistant", "content": "".join(parts).strip()})


# -- keys -------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--name", required=True, help="Who the key is for (the principal's name).")
@click.option("--group", "groups", multiple=True, help="A group the principal is in (repeatable).")
@click.option("--tenant", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
@click.pass_context
def keys_create(ctx: click.Context, name: str, groups: tuple[str, ...], tenant: str,
                as_json: bool) -> None:
    """Make a key. It is printed once, alone on the last line; only its hash is kept."""
    config = _load(ctx)
    with open_keys(config) as store:
        key, record = store.create(name, groups, tenant)
    record_admin_act(state_path(config), AdminRecord(
        "key.create", name, "cli", tenant, {"key_id": record.id, "groups": list(groups)}),
        store_url(config))
    if as_json:
        click.echo(json.dumps({"id": record.id, "name": name, "groups": list(groups),
                               "tenant": tenant, "key": key}))
        return
    err.print(f"Created key {record.id} for [bold]{name}[/] (tenant {tenant}, groups "
              f"{', '.join(groups) or '-'}). Store it now: it cannot be shown again.")
    click.echo(key)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """List keys (prefixes only; keys themselves are never stored)."""
    with open_keys(_load(ctx)) as store:
        records = store.list()
    if as_json:
        click.echo(json.dumps([r.__dict__ | {"groups": list(r.groups)} for r in records]))
        return
    table = Table("id", "name", "prefix", "tenant", "groups", "created", "revoked")
    for r in records:
        table.add_row(str(r.id), r.name, r.prefix + "…", r.tenant, ", ".join(r.groups),
                      r.created_at, r.revoked_at or "")
    Console().print(table)


@keys.command("revoke")
@click.argument("ident")
@click.pass_context
def keys_revoke(ctx: click.Context, ident: str) -> None:
    """Revoke a key by id, name or prefix. Takes effect on the next request."""
    config = _load(ctx)
    with open_keys(config) as store:
        count = store.revoke(ident)
    if not count:
        raise click.ClickException(f"no active key matches {ident!r}")
    record_admin_act(state_path(config), AdminRecord("key.revoke", ident, "cli",
                                                     details={"count": count}),
                     store_url(config))
    click.echo(f"revoked {count} key(s)")


# -- route ------------------------------------------------------------------------------


@main.group()
def route() -> None:
    """Inspect routing decisions."""


@route.command("explain")
@click.argument("prompt")
@click.option("--key", required=True, envvar="OWNLIGHT_API_KEY",
              help="The API key whose policy applies (or $OWNLIGHT_API_KEY).")
@click.option("--model", "-m", default="auto", show_default=True, help="Alias asked for.")
@click.option("--prefer", type=click.Choice(["local", "cloud"]),
              help="Send x-ownlight-prefer, as a client would.")
@click.option("--sensitivity", default="unknown", show_default=True,
              help="Sensitivity level to assume (normally found by the privacy stage).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def route_explain(ctx: click.Context, prompt: str, key: str, model: str, prefer: str | None,
                  sensitivity: str, as_json: bool) -> None:
    """Show where PROMPT would go, and why, without calling any model."""
    from ownlight.routing.router import RouteRequest

    runtime = Runtime.build(_load(ctx))
    try:
        principal = runtime.keys.authenticate(key)
        headers = {"x-ownlight-prefer": prefer} if prefer else {}
        request = wire.parse_request(Operation.CHAT, {
            "model": model, "messages": [{"role": "user", "content": prompt}]})
        decision = asyncio.run(runtime.pipeline.router.decide(
            RouteRequest(principal, model, Operation.CHAT, request, headers, sensitivity)))
    except OwnlightError as exc:
        raise click.ClickException(f"{exc.status} {exc.code}: {exc.message}") from exc
    view = {"principal": principal.name, "tenant": principal.tenant,
            "groups": list(principal.groups), **decision.as_dict()}
    view.pop("served_by")
    view.pop("failures")
    if as_json:
        click.echo(json.dumps(view))
        return
    for name, value in view.items():
        click.echo(f"{name:>9}: {value}")


# -- config ------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective config (defaults, file, environment), secrets masked."""
    config = _load(ctx)
    view = effective_view(config)
    if as_json:
        click.echo(json.dumps(view, indent=2, default=str))
        return
    click.echo(f"# source: {config.source or 'defaults only (no file)'}")
    click.echo(_toml(view))


def _toml(view: dict[str, Any], table: str = "") -> str:
    """Render nested tables as TOML: scalars first, then one [section] per sub-table."""
    lines = [f"{k} = {json.dumps(v, default=str)}" for k, v in view.items()
             if not isinstance(v, dict)]
    if table and lines:
        lines.insert(0, f"\n[{table}]")
    for key, value in view.items():
        if isinstance(value, dict):
            name = _key(key) if not table else f"{table}.{_key(key)}"
            lines.append(_toml(value, name))
    return "\n".join(line for line in lines if line)


def _key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else json.dumps(key)


main.add_command(audit_group)
main.add_command(mcp_group)
main.add_command(models_group)
main.add_command(eval_group)
main.add_command(guard_group)
main.add_command(privacy_group)
main.add_command(router_group)
main.add_command(db_group)
main.add_command(ingest_command)
main.add_command(search_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
