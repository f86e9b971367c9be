"""What Ownlight keeps is its owner's alone: the data dir 0700, every file in it 0600.

Every command runs as a real subprocess with the umask most shells have (022), so the
files are private because Ownlight made them so, not because the test process's umask
happened to be strict.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ownlight.config import load_config
from ownlight.errors import ConfigError
from ownlight.runtime import Runtime
from tests.support.fake_upstream import free_port
from tests.support.tiny_gguf import write_tiny_gguf

SHELL_UMASK = 0o022
CLI = [sys.executable, "-m", "ownlight.cli"]


def ownlight(*args: str, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, umask=SHELL_UMASK)


def open_to_others(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) with a group or other bit set."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root)} {mode:04o}")
    return found


def serve_one_request(data: Path, upstream: Any, key: str) -> set[str]:
    """``ownlight serve`` as an operator starts it; one chat through it; Ctrl-C. The names
    of the data dir's files while it served, once none was open to others."""
    port = free_port()
    server = subprocess.Popen(
        [*CLI, "serve", "--no-local", "--port", str(port), "--upstream", f"cloud={upstream.url}"],
        env={**os.environ, "OWNLIGHT_DATA_DIR": str(data)}, umask=SHELL_UMASK,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "serve did not start"
            time.sleep(0.1)
        answer = httpx.post(url + "/v1/chat/completions", timeout=30, json={
            "model": "cloud", "messages": [{"role": "user", "content": "Mail ann@example.com"}]},
            headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200, answer.text
        assert httpx.get(url + "/v1/models").status_code == 401  # a refusal recorded too
        assert open_to_others(data) == []  # the -wal and -shm files of open databases too
        return {p.name for p in data.rglob("*")}
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)


def test_every_file_ownlight_writes_is_readable_by_its_owner_alone(
        hermetic_env: Path, tmp_path: Path, cloud: Any) -> None:
    data = hermetic_env
    created = ownlight("keys", "create", "--name", "admin", "--group", "admin")
    assert created.returncode == 0, created.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700  # a fresh data dir
    serving = serve_one_request(data, cloud, created.stdout.strip().splitlines()[-1])
    assert {"state.db-wal", "state.db-shm", "knowledge.db-wal"} <= serving, serving
    assert any(name.startswith("audit.journal.") for name in serving)

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "offsite.md").write_text("# Offsite\n\nThe Q4 offsite is in Lisbon.\n")
    ingested = ownlight("ingest", str(notes), "--collection", "notes", "--no-vectors")
    assert ingested.returncode == 0, ingested.stderr

    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    imported = ownlight("models", "import", str(model), "--name", "tiny")  # hard-linked
    assert imported.returncode == 0, imported.stderr
    exported = ownlight("audit", "export", "--output", str(data / "audit-export.jsonl"))
    assert exported.returncode == 0, exported.stderr
    assert "records written" in exported.stderr

    names = {p.name for p in data.rglob("*")}
    assert {"state.db", "knowledge.db", "audit.salt", "audit-export.jsonl"} <= names, names
    linked = [p for p in data.rglob("*.gguf") if p.stat().st_nlink > 1]
    assert len(linked) == 1 and linked[0].samefile(model)  # the user's own file, linked
    linked[0].unlink()  # a link shares the original's inode and mode: not Ownlight's file
    assert open_to_others(data) == []
    assert "Warning" not in ownlight("keys", "list").stderr  # and the check agrees


def test_a_model_copied_into_the_registry_is_private(hermetic_env: Path,
                                                     tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    os.chmod(model, 0o644)  # as a download usually is
    imported = ownlight("models", "import", str(model), "--name", "tiny", "--copy")
    assert imported.returncode == 0, imported.stderr
    copied = [p for p in hermetic_env.rglob("*.gguf")]
    assert copied and not copied[0].samefile(model)
    assert open_to_others(hermetic_env) == []


def loosen(data: Path, mode: int) -> None:
    os.chmod(data, mode)
    os.chmod(data / "state.db", 0o644)


def test_a_loosened_data_dir_is_named_with_its_mode_and_its_fix(hermetic_env: Path) -> None:
    data = hermetic_env
    assert ownlight("keys", "create", "--name", "alice").returncode == 0
    loosen(data, 0o755)  # an operator's chmod, or a data dir an older Ownlight made

    listed = ownlight("keys", "list")
    assert listed.returncode == 0, listed.stderr  # readable: a warning, not a refusal
    warning = listed.stderr
    assert f"Warning: Ownlight's data dir {data} (0755)" in warning
    assert "state.db (0644)" in warning
    assert f"Fix: chmod -R go-rwx {data}" in warning

    strict = ownlight("keys", "list", env={"OWNLIGHT_SERVER_STRICT_PERMISSIONS": "true"})
    assert strict.returncode == 1 and "Refusing to start" in strict.stderr
    assert "server.strict_permissions" in strict.stderr

    loosen(data, 0o777)  # anyone may replace the databases or plant a journal
    for command in (["keys", "list"], ["audit", "list"], ["serve", "--no-local"]):
        refused = ownlight(*command)
        assert refused.returncode == 1, (command, refused.stderr)
        assert "Refusing to start: other users may write there" in refused.stderr
        assert f"{data} (0777)" in refused.stderr and "Traceback" not in refused.stderr
    assert ownlight("keys", "list", "--help").returncode == 0  # help opens nothing
    assert ownlight("config", "show").returncode == 0

    subprocess.run(["chmod", "-R", "go-rwx", str(data)], check=True)  # the fix it named
    fixed = ownlight("keys", "list")
    assert fixed.returncode == 0 and "Warning" not in fixed.stderr


def test_embedded_use_is_checked_too(hermetic_env: Path, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ownlight.toml"
    path.write_text("[local]\nenabled = false\n")
    config = load_config(path)
    data = config.data_dir
    asyncio.run(Runtime.build(config).close())
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.umask(0o077)) & 0o077 == 0o077  # what Runtime.build set

    loosen(data, 0o750)
    with caplog.at_level(logging.WARNING, logger="ownlight"):
        runtime = Runtime.build(config)
    asyncio.run(runtime.close())
    assert any(f"{data} (0750)" in r.getMessage() for r in caplog.records)

    os.chmod(data, 0o757)
    with pytest.raises(ConfigError, match="other users may write"):
        Runtime.build(config)
