"""The ownlight command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def ownlight(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ownlight.cli", *args], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=120,
    )


def test_keys_create_list_revoke(hermetic_env: Path) -> None:
    created = ownlight("keys", "create", "--name", "alice", "--group", "eng", "--group", "ops")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("ol-") and len(key) > 40
    db = (hermetic_env / "state.db").read_bytes()
    assert key.encode() not in db  # only the hash is stored

    as_json = ownlight("keys", "create", "--name", "bob", "--tenant", "acme", "--json")
    record = json.loads(as_json.stdout)
    assert record["tenant"] == "acme" and record["key"].startswith("ol-")

    listed = json.loads(ownlight("keys", "list", "--json").stdout)
    assert [(k["name"], k["groups"]) for k in listed] == [("alice", ["eng", "ops"]), ("bob", [])]
    assert all(key not in json.dumps(k) for k in listed)

    assert ownlight("keys", "revoke", "alice").returncode == 0
    listed = json.loads(ownlight("keys", "list", "--json").stdout)
    assert listed[0]["revoked_at"] and not listed[1]["revoked_at"]
    missing = ownlight("keys", "revoke", "nobody")
    assert missing.returncode != 0 and "no active key" in missing.stderr


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    path = tmp_path / "ownlight.toml"
    path.write_text('[models.cloud]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
                    'api_key = "sk-inline-secret"\n')
    shown = ownlight("--config", str(path), "config", "show", env={"OWNLIGHT_SERVER_PORT": "9123"})
    assert shown.returncode == 0, shown.stderr
    assert "sk-inline-secret" not in shown.stdout
    assert "port = 9123" in shown.stdout
    assert "[models.cloud]" in shown.stdout
    view = json.loads(ownlight("--config", str(path), "config", "show", "--json").stdout)
    assert view["models"]["cloud"]["api_key"] == "****"


def test_config_errors_are_one_clear_line(tmp_path: Path) -> None:
    result = ownlight("--config", str(tmp_path / "nope.toml"), "config", "show")
    assert result.returncode != 0
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_models_list(hermetic_env: Path) -> None:
    listed = json.loads(ownlight("models", "list", "--json").stdout)
    assert {r["alias"] for r in listed["aliases"]} == {"local", "local-embed"}
    assert listed["versions"] == []


def test_route_explain_without_calling_a_model(tmp_path: Path, hermetic_env: Path) -> None:
    path = tmp_path / "ownlight.toml"
    path.write_text(
        '[local]\nenabled = false\n'
        '[models.cloud]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        '[models.home]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'inside_domain = true\n'
        '[routing.aliases.auto]\ntargets = ["cloud", "home"]\n'
        '[[routing.rules]]\nname = "finance-home"\nwhen = { groups = ["finance"] }\n'
        'action = "local"\n[[routing.rules]]\nname = "rest"\naction = "cloud"\n'
    )
    env = {"OWNLIGHT_CONFIG": str(path)}
    key = ownlight("keys", "create", "--name", "fi", "--group", "finance", env=env)
    key = key.stdout.strip().splitlines()[-1]
    shown = ownlight("route", "explain", "What is our Q3 revenue?", "--key", key, "--json",
                     env=env)
    assert shown.returncode == 0, shown.stderr
    decision = json.loads(shown.stdout)
    assert decision["rule"] == "finance-home" and decision["targets"] == ["home/home"]
    other = ownlight("keys", "create", "--name", "ed", env=env).stdout.strip().splitlines()[-1]
    decision = json.loads(ownlight("route", "explain", "hi", "--key", other, "--json",
                                   env=env).stdout)
    assert decision["targets"] == ["cloud/cloud", "home/home"]
    bad = ownlight("route", "explain", "hi", "--key", "ol-wrong", env=env)
    assert bad.returncode != 0 and "401" in bad.stderr


def test_serve_keeps_start_up_objects_out_of_full_collections() -> None:
    """What start-up loaded is frozen, so a full collection never walks it again (the
    README's audit-cost section: 37 ms a pass before)."""
    import gc

    from ownlight.runtime import YOUNG_COLLECTION_EVERY, freeze_startup_objects

    loaded = {"model": [list(range(3)) for _ in range(100)]}  # stands for a loaded table
    before = gc.get_threshold()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
        assert not any(obj is loaded for obj in gc.get_objects(generation=2))
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY
        made_later = {"request": [1, 2]}
        gc.collect()
        assert any(obj is made_later for obj in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
