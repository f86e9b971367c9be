"""A person's own notes, as a new user meets them: ingest, ask, get cited answers.

``ownlight ingest`` with neither ``--owner`` nor ``--allow`` makes the invoking user the
owner (the identity ``ownlight chat`` uses), and says who may read what it added. A
grounded request in which nothing the caller may read matches says so
(``x-ownlight-grounding: none``, ``citations: []``, a line from ``ownlight chat``); with
``knowledge.require_sources`` it is answered without asking the model at all.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ownlight.knowledge.citations import NOTHING_READABLE
from tests.conftest import upstream_toml

NOTE = ("Team notes, November.\n\nThe Q4 offsite is in Lisbon, at the Hotel Miradouro, from "
        "the 3rd to the 5th of December. Bring a laptop.\n")


def ownlight(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ownlight.cli", *args], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "OWNLIGHT_DATA_DIR": str(data_dir)})


def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "offsite.md").write_text(NOTE)
    return folder


def test_ingest_without_owner_or_allow_makes_you_the_owner(tmp_path: Path,
                                                           hermetic_env: Path) -> None:
    done = ownlight("ingest", str(notes(tmp_path)), "--collection", "notes", "--no-vectors",
                    data_dir=hermetic_env)
    assert done.returncode == 0, done.stderr
    assert f"readable by: owner {getpass.getuser()}" in done.stderr
    found = ownlight("search", "Where is the offsite?", "--collection", "notes",
                     "--as", getpass.getuser(), "--mode", "lexical", "--json",
                     data_dir=hermetic_env)
    assert "Lisbon" in found.stdout
    stranger = ownlight("search", "Where is the offsite?", "--collection", "notes",
                        "--as", "someone-else", "--mode", "lexical", "--json",
                        data_dir=hermetic_env)
    assert "Lisbon" not in stranger.stdout


@pytest.mark.slow
def test_chat_answers_your_own_notes_with_their_source(tmp_path: Path,
                                                       hermetic_env: Path) -> None:
    assert ownlight("ingest", str(notes(tmp_path)), "--collection", "notes",
                    data_dir=hermetic_env).returncode == 0
    done = ownlight("chat", "--knowledge", "notes", "--max-tokens", "48",
                    "Where is the Q4 offsite?", data_dir=hermetic_env)
    assert done.returncode == 0, done.stderr
    assert "Sources:" in done.stdout and "offsite" in done.stdout
    assert "cites no source" not in done.stderr
    other = ownlight("chat", "--knowledge", "empty-shelf", "--max-tokens", "8",
                     "Where is the Q4 offsite?", data_dir=hermetic_env)
    assert "nothing you may read in empty-shelf matched" in other.stderr


def gateway_over_notes(gateway_factory, fake_upstream, tmp_path: Path, require: bool):
    toml = upstream_toml("home", fake_upstream.url, "fake-echo", inside_domain=True)
    toml += f"[knowledge]\nvectors = false\nrequire_sources = {str(require).lower()}\n"
    gateway = gateway_factory(toml)
    data_dir = gateway.config.data_dir
    done = ownlight("ingest", str(notes(tmp_path)), "--collection", "notes", "--owner", "bob",
                    "--no-vectors", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    return gateway


def ask(gateway, user: str) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", timeout=30, json={
        "model": "home", "knowledge": ["notes"],
        "messages": [{"role": "user", "content": "Where is the Q4 offsite?"}]},
        headers={"authorization": f"Bearer {gateway.create_key(user)}"})


def test_nothing_readable_is_said_in_a_header_and_empty_citations(
        gateway_factory, fake_upstream, tmp_path: Path) -> None:
    gateway = gateway_over_notes(gateway_factory, fake_upstream, tmp_path, require=False)
    bob = ask(gateway, "bob")
    assert bob.headers["x-ownlight-grounding"] == "1" and bob.json()["citations"]
    alice = ask(gateway, "alice")
    assert alice.headers["x-ownlight-grounding"] == "none"
    assert alice.json()["citations"] == []
    assert "Lisbon" not in str(fake_upstream.received[-1])


def test_require_sources_answers_without_asking_the_model(
        gateway_factory, fake_upstream, tmp_path: Path) -> None:
    gateway = gateway_over_notes(gateway_factory, fake_upstream, tmp_path, require=True)
    alice = ask(gateway, "alice")
    assert alice.status_code == 200 and alice.headers["x-ownlight-grounding"] == "none"
    text = alice.json()["choices"][0]["message"]["content"]
    assert text == NOTHING_READABLE.format(collections="notes")
    assert fake_upstream.received == []  # the model was never asked
    streamed = httpx.post(gateway.url + "/v1/chat/completions", timeout=30, json={
        "model": "home", "knowledge": ["notes"], "stream": True,
        "messages": [{"role": "user", "content": "Where is the Q4 offsite?"}]},
        headers={"authorization": f"Bearer {gateway.create_key('carol')}"})
    assert "I found nothing you may read" in streamed.text and "[DONE]" in streamed.text
    assert fake_upstream.received == []
    assert "Sources:" in ask(gateway, "bob").json()["choices"][0]["message"]["content"]
    assert "Lisbon" in str(fake_upstream.received[-1])  # the owner's question had its source
