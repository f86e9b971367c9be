"""The console's rows on SQLite and on a real PostgreSQL: sign-in sessions and the
conversation list behave the same whatever ``[store] url`` says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ownlight.console.store import ConversationRows, SessionRows, token_hash
from ownlight.principal import Principal
from ownlight.store.open import Stores, open_stores
from ownlight.store.sqlite import StateStore
from tests.test_store_contract import config_for

ALICE = Principal(1, "alice", "acme", ("staff",))
ALICE_ELSEWHERE = Principal(2, "alice", "globex", ())
BOB = Principal(3, "bob", "acme", ())


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    url = str(request.getfixturevalue("postgres_url")) if request.param == "postgresql" else ""
    config = config_for(str(request.param), tmp_path / "data", url)
    state = StateStore(config.data_dir / "state.db")
    opened = open_stores(config, state)
    assert opened.shared == (request.param == "postgresql")
    yield opened
    opened.close()
    state.close()


def test_a_session_opens_reads_back_and_closes(stores: Stores) -> None:
    sessions = SessionRows(stores.registry)
    token, csrf = sessions.open("key-hash-1", 60)
    other, other_csrf = sessions.open("key-hash-1", 60)
    assert token != other and csrf != other_csrf
    row = sessions.get(token)
    assert row is not None and row.key_hash == "key-hash-1" and row.csrf == csrf
    assert row.expires_at > time.time()
    sessions.close(token)
    assert sessions.get(token) is None
    assert sessions.get(other) is not None  # closing one leaves the other
    assert sessions.get("never-issued") is None


def test_the_cookie_is_never_stored_in_clear(stores: Stores) -> None:
    token, _ = SessionRows(stores.registry).open("key-hash-2", 60)
    rows = stores.registry.query("SELECT token_hash FROM console_sessions", ())
    assert [r[0] for r in rows] == [token_hash(token)] and token not in str(rows)


def test_an_expired_session_is_gone(stores: Stores) -> None:
    sessions = SessionRows(stores.registry)
    token, _ = sessions.open("key-hash-3", -1)
    assert sessions.get(token) is None


def test_conversations_are_kept_per_principal(stores: Stores) -> None:
    rows = ConversationRows(stores.registry)
    first = rows.start(ALICE, "Holiday policy", "local")
    second = rows.start(ALICE, "", "cloud")
    rows.add_turn(ALICE, first.id, "resp_1")
    rows.add_turn(ALICE, first.id, "resp_2")
    rows.add_turn(BOB, first.id, "resp_bob")  # not his: nothing happens
    kept = rows.get(ALICE, first.id)
    assert kept is not None and kept.responses == ("resp_1", "resp_2") and kept.head == "resp_2"
    assert second.title == "…" and rows.get(ALICE, second.id).head is None  # type: ignore[union-attr]
    assert [c.id for c in rows.list(ALICE)] == [first.id, second.id]  # last turn first
    for stranger in (BOB, ALICE_ELSEWHERE):  # another name, or the same name in another tenant
        assert rows.list(stranger) == [] and rows.get(stranger, first.id) is None
        assert not rows.rename(stranger, first.id, "mine now")
        assert rows.delete(stranger, first.id) is None
    assert rows.rename(ALICE, first.id, "Leave policy")
    assert rows.get(ALICE, first.id).title == "Leave policy"  # type: ignore[union-attr]
    deleted = rows.delete(ALICE, first.id)
    assert deleted is not None and deleted.responses == ("resp_1", "resp_2")
    assert [c.id for c in rows.list(ALICE)] == [second.id]
