"""The store contract: the same cases on SQLite and on a real PostgreSQL.

Whatever ``[store] url`` says, a key check, a stored response and a budget must behave the
same; each case here runs once per database, through ``store.open`` (so the setting that
switches them is exercised too). PostgreSQL is the session's throwaway server
(``tests/support/servers.py``); each case gets its own empty database.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from ownlight.auth import KeyStore
from ownlight.cli import main
from ownlight.config import Config, load_config
from ownlight.errors import AuthenticationFailed, ConfigError, NotFound, StoreUnavailable
from ownlight.principal import Principal
from ownlight.routing.budgets import Budget, BudgetBook
from ownlight.store.base import Migrations
from ownlight.store.migrations import STATE_MIGRATIONS
from ownlight.store.open import Stores, open_stores, store_url
from ownlight.store.postgres import PostgresDatabase, without_password
from ownlight.store.postgres_migrations import POSTGRES_MIGRATIONS
from ownlight.store.sqlite import StateStore
from tests.support.servers import Postgres, running

ALICE = Principal(1, "alice", "acme", ("staff",))


def config_for(kind: str, data_dir: Path, url: str) -> Config:
    env = {"OWNLIGHT_DATA_DIR": str(data_dir)}
    if kind == "postgresql":
        env["OWNLIGHT_STORE_URL"] = url
    return load_config(env=env)


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database for the postgresql cases ("" for SQLite)."""
    return str(request.getfixturevalue("postgres_url")) if kind == "postgresql" else ""


@pytest.fixture
def config(kind: str, url: str, tmp_path: Path) -> Config:
    return config_for(kind, tmp_path / "data", url)


@pytest.fixture
def stores(config: Config) -> Iterator[Stores]:
    state = StateStore(config.data_dir / "state.db")
    opened = open_stores(config, state)
    yield opened
    opened.close()
    state.close()


def test_the_setting_picks_the_database(kind: str, stores: Stores) -> None:
    assert stores.shared == (kind == "postgresql")
    assert type(stores.keys).__name__.lower().startswith(kind.replace("postgresql", "postgres"))


# -- principals and keys ------------------------------------------------------------------


def test_keys_are_created_listed_and_authenticate(stores: Stores) -> None:
    keys = KeyStore(stores.keys)
    key, record = keys.create("alice", ("staff", "admin"), "acme")
    other, _ = keys.create("bob")
    assert key.startswith("ol-") and record.prefix == key[:10]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record.created_at)
    listed = keys.list()
    assert listed[0] == record and [r.name for r in listed] == ["alice", "bob"]
    assert listed[1].tenant == "default" and listed[1].groups == ()
    principal = keys.authenticate(key)
    assert principal == Principal(record.id, "alice", "acme", ("staff", "admin"))
    assert principal.is_admin and "group:staff" in principal.identities
    assert keys.authenticate(other).name == "bob" and not keys.authenticate(other).is_admin


def test_revoked_and_unknown_keys_are_refused_and_reported(stores: Stores) -> None:
    reported: list[tuple[object, ...]] = []
    keys = KeyStore(stores.keys, refusals=lambda *args: reported.append(args))
    key, record = keys.create("alice", (), "acme")
    keys.create("bob")
    assert keys.revoke("alice") == 1
    assert keys.revoke("alice") == 0  # only active keys count
    with pytest.raises(AuthenticationFailed):
        keys.authenticate(key)
    with pytest.raises(AuthenticationFailed):
        keys.authenticate("ol-never-made")
    with pytest.raises(AuthenticationFailed):
        keys.authenticate(None)
    assert [(r[0], r[1], r[4], r[5]) for r in reported] == [
        (401, "revoked_key", "alice", "acme"), (401, "unknown_key", None, None),
        (401, "missing_key", None, None)]
    listed = {r.name: r for r in keys.list()}
    assert listed["alice"].revoked_at is not None and listed["bob"].revoked_at is None
    assert listed["alice"].revoked_at >= record.created_at


def test_keys_are_revoked_by_id_or_prefix(stores: Stores) -> None:
    keys = KeyStore(stores.keys)
    first, one = keys.create("carol")
    second, two = keys.create("carol")
    assert keys.revoke(str(one.id)) == 1
    assert keys.authenticate(second).key_id == two.id
    assert keys.revoke(two.prefix) == 1
    assert keys.revoke("nobody") == 0
    for key in (first, second):
        with pytest.raises(AuthenticationFailed):
            keys.authenticate(key)


def test_instances_starting_together_make_one_first_key(config: Config) -> None:
    """``ownlight serve`` makes an admin key on an empty store; four instances (each its own
    handle on the database) starting at once make one between them."""
    count = 4
    states = [StateStore(config.data_dir / "state.db") for _ in range(count)]
    handles = [open_stores(config, state) for state in states]
    start = threading.Barrier(count)
    made: list[object] = [None] * count

    def run(i: int) -> None:
        start.wait()
        made[i] = KeyStore(handles[i].keys).create_first("admin", ("admin",))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sum(m is not None for m in made) == 1
        assert [(r.name, r.groups) for r in KeyStore(handles[0].keys).list()] == [
            ("admin", ("admin",))]
        assert KeyStore(handles[0].keys).create_first("admin") is None
    finally:
        for handle, state in zip(handles, states, strict=True):
            handle.close()
            state.close()


# -- stored responses -----------------------------------------------------------------------


def test_a_stored_response_is_its_owner_alone(stores: Stores) -> None:
    responses = stores.responses
    body = {"id": "resp_1", "object": "response", "zeta": 1, "alpha": [1, {"b": 2, "a": 1}]}
    context = [{"role": "user", "content": "héllo"}]
    responses.save(ALICE, body, context)
    got, items = responses.get(ALICE, "resp_1")
    assert got == body and list(got) == list(body) and items == context  # key order kept
    strangers = (Principal(2, "bob", "acme"), Principal(3, "alice", "other-tenant"))
    for stranger in strangers:
        with pytest.raises(NotFound, match="resp_1"):
            responses.get(stranger, "resp_1")
        with pytest.raises(NotFound):
            responses.delete(stranger, "resp_1")
    assert responses.get(ALICE, "resp_1")[0] == body  # still there
    with pytest.raises(NotFound):
        responses.get(ALICE, "resp_never")
    responses.save(ALICE, {**body, "zeta": 2}, context)  # saved again: replaced
    assert responses.get(ALICE, "resp_1")[0]["zeta"] == 2
    responses.delete(ALICE, "resp_1")
    with pytest.raises(NotFound):
        responses.get(ALICE, "resp_1")


# -- spend and budgets ----------------------------------------------------------------------


def test_spend_is_recorded_and_budgets_read_it(stores: Stores) -> None:
    day = Budget("key", "alice", "day", 1.0)
    month = Budget("tenant", "*", "month", 5.0)
    book = BudgetBook(stores.spend, [day, month],
                      now=lambda: datetime(2026, 12, 4, 10, tzinfo=UTC))
    assert book.spent(day, ALICE) == 0.0 and book.exhausted(ALICE) is None
    book.charge(ALICE, 0.25)
    book.charge(ALICE, 0.5)
    book.charge(ALICE, 0.0)  # free: nothing recorded
    assert book.spent(day, ALICE) == pytest.approx(0.75)
    assert book.spent(month, ALICE) == pytest.approx(0.75)
    assert book.exhausted(ALICE) is None
    assert book.exhausted(ALICE, estimated_usd=0.3) == day
    assert stores.spend.spent(("key", "alice", "2026-12")) == pytest.approx(0.75)
    book.now = lambda: datetime(2026, 12, 5, tzinfo=UTC)  # a new day
    assert book.spent(day, ALICE) == 0.0 and book.spent(month, ALICE) == pytest.approx(0.75)
    assert book.spent(day, Principal(9, "bob", "acme")) == 0.0


def test_concurrent_charges_are_all_counted(stores: Stores) -> None:
    book = BudgetBook(stores.spend, [Budget("key", "*", "month", 100.0)])
    threads = [threading.Thread(target=lambda: [book.charge(ALICE, 0.01) for _ in range(25)])
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert book.spent(book.budgets[0], ALICE) == pytest.approx(1.5)


# -- migrations -----------------------------------------------------------------------------


def steps_for(kind: str) -> list[str]:
    steps = POSTGRES_MIGRATIONS if kind == "postgresql" else STATE_MIGRATIONS
    return [name for name, _ in steps]


def unmigrated(kind: str, url: str, path: Path) -> Migrations:
    if kind == "postgresql":
        return PostgresDatabase(url, max_connections=2, migrate=False)
    return StateStore(path, migrate=False)


def close(database: Migrations) -> None:
    assert isinstance(database, PostgresDatabase | StateStore)
    database.close()


def test_migrations_apply_in_order_once(kind: str, url: str, tmp_path: Path) -> None:
    database = unmigrated(kind, url, tmp_path / "state.db")
    try:
        assert [(s.name, s.applied) for s in database.status()] == [
            (name, False) for name in steps_for(kind)]
        assert database.migrate() == steps_for(kind)
        assert database.migrate() == []
        assert all(s.applied for s in database.status())
    finally:
        close(database)
    again = unmigrated(kind, url, tmp_path / "state.db")
    try:
        assert again.migrate() == [] and all(s.applied for s in again.status())
    finally:
        close(again)


def test_instances_migrating_together_apply_each_step_once(kind: str, url: str,
                                                           tmp_path: Path) -> None:
    """Several handles (as several instances would) migrate one fresh database at the same
    moment: each step is applied by exactly one of them and none fails."""
    count = 4
    databases = [unmigrated(kind, url, tmp_path / "state.db") for _ in range(count)]
    start = threading.Barrier(count)
    applied: list[list[str]] = [[] for _ in range(count)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            applied[i] = databases[i].migrate()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for database in databases:
        close(database)
    assert not errors
    names = [name for batch in applied for name in batch]
    assert sorted(names) == sorted(steps_for(kind))  # each once, by one of them


def test_processes_migrating_together_apply_each_step_once(postgres_url: str,
                                                           tmp_path: Path) -> None:
    """Three ``ownlight db migrate`` processes on one fresh PostgreSQL database: the
    advisory lock lets one apply the steps; the others find them done."""
    env = {"PATH": "/usr/bin:/bin", "OWNLIGHT_STORE_URL": postgres_url,
           "PYTHONPATH": ":".join(sys.path)}
    command = [sys.executable, "-c", "from ownlight.cli import main; main()", "db", "migrate"]
    processes = [subprocess.Popen(  # as on three machines: each its own data dir
        command, env={**env, "OWNLIGHT_DATA_DIR": str(tmp_path / f"data-{i}")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    lines = [out for out, _ in outputs]
    assert sum("applied" in line for line in lines) == 1, lines
    assert sum("up to date" in line for line in lines) == 2, lines
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT name FROM ownlight_migrations ORDER BY name").fetchall()
    assert [r[0] for r in rows] == steps_for("postgresql")


def test_db_status_and_migrate_commands(kind: str, url: str, tmp_path: Path) -> None:
    env = {"OWNLIGHT_DATA_DIR": str(tmp_path / "data")}
    if kind == "postgresql":
        env["OWNLIGHT_STORE_URL"] = url
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    before = run("db", "status")
    assert f"pending  {steps_for(kind)[0]}" in before and "pending\n" in before
    assert "applied " + ", ".join(steps_for(kind)) in run("db", "migrate")
    assert "up to date" in run("db", "migrate")
    after = run("db", "status")
    assert "pending  " not in after and after.strip().endswith("up to date")
    shown = run("db", "status", "--json")
    assert '"pending": []' in shown
    # On PostgreSQL this machine's SQLite file is not the store: left alone, not made.
    assert (tmp_path / "data" / "state.db").exists() == (kind == "sqlite")


def test_an_unreachable_store_stops_start_up_with_its_address(tmp_path: Path) -> None:
    from tests.support.fake_upstream import free_port

    url = f"postgresql://ownlight:s3cret@127.0.0.1:{free_port()}/ownlight?connect_timeout=1"
    config = config_for("postgresql", tmp_path / "data", url)
    assert store_url(config) == url
    state = StateStore(tmp_path / "state.db")
    try:
        with pytest.raises(Exception, match="cannot reach the store at") as caught:
            open_stores(config, state)
    finally:
        state.close()
    assert "s3cret" not in str(caught.value) and "ownlight:****@127.0.0.1" in str(caught.value)
    env = {"OWNLIGHT_DATA_DIR": str(tmp_path / "data"), "OWNLIGHT_STORE_URL": url}
    for command in (["keys", "list"], ["db", "status"]):
        result = CliRunner().invoke(main, command, env=env)
        assert result.exit_code == 1 and result.exception is not None
        assert isinstance(result.exception, SystemExit)  # a message, not a traceback
        assert "Error: cannot reach the store at" in result.output
        assert "s3cret" not in result.output


def test_a_store_url_may_be_a_secret_reference(tmp_path: Path) -> None:
    secret = tmp_path / "store-url"
    secret.write_text("postgresql://ownlight:pw@db.internal/ownlight\n")
    path = tmp_path / "ownlight.toml"
    path.write_text(f'[store]\nurl = {{"$file" = "{secret}"}}\n')
    config = load_config(path, env={"OWNLIGHT_DATA_DIR": str(tmp_path / "data")})
    assert store_url(config) == "postgresql://ownlight:pw@db.internal/ownlight"
    assert without_password(store_url(config) or "") == \
        "postgresql://ownlight:****@db.internal/ownlight"
    assert without_password("postgresql://db.internal/o?sslmode=require&password=pw2") == \
        "postgresql://db.internal/o?sslmode=require&password=****"
    assert without_password("host=db.internal password='p w' dbname=o") == \
        "host=db.internal password=**** dbname=o"
    assert store_url(load_config(env={"OWNLIGHT_DATA_DIR": str(tmp_path / "empty")})) is None
    assert config.with_overrides(server__port=9000).settings.store.url == \
        config.settings.store.url  # the reference survives a re-validation

    with pytest.raises(ConfigError, match=r"store.ulr \(did you mean store.url\?\)"):
        path.write_text('[store]\nulr = "postgresql://db.internal/ownlight"\n')
        load_config(path, env={})


def test_budgets_fail_closed_when_the_store_is_lost(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A budget check that cannot read spend refuses (503); a charge that cannot be written
    is logged, not raised, so the request's ledger record (which has the cost) is kept."""
    with running(Postgres()) as server:
        config = config_for("postgresql", tmp_path / "data", server.database())
        state = StateStore(tmp_path / "state.db")
        stores = open_stores(config, state)
        book = BudgetBook(stores.spend, [Budget("key", "*", "month", 1.0)])
        book.charge(ALICE, 0.5)
        server.halt()
        try:
            with pytest.raises(StoreUnavailable) as lost:
                book.exhausted(ALICE)
            assert lost.value.status == 503 and lost.value.retry_after == 5.0
            book.charge(ALICE, 0.25)
            assert "spend of 0.250000 USD by alice (tenant acme) not counted" in caplog.text
            with pytest.raises(StoreUnavailable):
                KeyStore(stores.keys).authenticate("ol-anything")
        finally:
            server.resume()
        deadline = time.monotonic() + 20  # the pool reconnects by itself, within seconds
        while True:
            try:
                assert book.spent(book.budgets[0], ALICE) == pytest.approx(0.5)
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store did not come back"
        stores.close()
        state.close()


def test_a_dropped_connection_is_retried_and_a_failed_statement_is_not_an_outage(
        postgres_url: str) -> None:
    """A pooled connection killed by the server (an idle timeout, a failover) costs a read
    nothing: it is tried again on a fresh one. A statement that fails on its own (here a
    statement timeout) raises as itself and does not mark the store down."""
    db = PostgresDatabase(postgres_url, max_connections=1)
    try:
        pid = db.query("SELECT pg_backend_pid()")[0][0]
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert db.query("SELECT 1") == [(1,)]
        assert db.query("SELECT pg_backend_pid()")[0][0] != pid
        with pytest.raises(psycopg.errors.QueryCanceled), db.transaction() as conn:
            conn.execute("SET LOCAL statement_timeout = 10")
            conn.execute("SELECT pg_sleep(1)")
        assert db.query("SELECT 2") == [(2,)]
    finally:
        db.close()


def test_db_copy_moves_a_single_machine_onto_postgresql(postgres_url: str,
                                                        tmp_path: Path) -> None:
    """``ownlight db copy``: keys keep their ids and keep working (a revoked one stays
    revoked), spend and stored responses follow; a second copy is refused."""
    env = {"OWNLIGHT_DATA_DIR": str(tmp_path / "data")}
    state = StateStore(tmp_path / "data" / "state.db")
    sqlite = open_stores(config_for("sqlite", tmp_path / "data", ""), state)
    keys = KeyStore(sqlite.keys)
    kept, _ = keys.create("alice", ("staff",), "acme")
    gone, _ = keys.create("bob")
    keys.revoke("bob")
    BudgetBook(sqlite.spend, []).charge(ALICE, 0.5)
    sqlite.responses.save(ALICE, {"id": "resp_1", "z": 1, "a": 2}, [{"role": "user"}])
    before = keys.list()
    state.close()

    runner = CliRunner()
    result = runner.invoke(main, ["db", "copy", "--to", postgres_url], env=env)
    assert result.exit_code == 0, result.output
    assert "copied 2 key(s), 2 spend total(s) and 1 stored response(s)" in result.output
    assert "0 audit record(s)" in result.output  # the ledger's copy: test_shared_ledger.py

    other = StateStore(tmp_path / "other.db")
    shared = open_stores(config_for("postgresql", tmp_path / "data", postgres_url), other)
    try:
        moved = KeyStore(shared.keys)
        assert moved.list() == before
        assert moved.authenticate(kept) == Principal(before[0].id, "alice", "acme", ("staff",))
        with pytest.raises(AuthenticationFailed):
            moved.authenticate(gone)
        assert moved.create("carol")[1].id == before[-1].id + 1  # ids go on after the copy
        assert shared.spend.spent(("tenant", "acme", datetime.now(UTC).strftime("%Y-%m"))) \
            == pytest.approx(0.5)
        body, _ = shared.responses.get(ALICE, "resp_1")
        assert list(body) == ["id", "z", "a"]
    finally:
        shared.close()
        other.close()
    again = runner.invoke(main, ["db", "copy", "--to", postgres_url], env=env)
    assert again.exit_code == 1 and "has keys already" in again.output


# -- pinned MCP tool definitions ----------------------------------------------------------


def test_mcp_pins_are_replaced_per_server_and_shared(stores: Stores, config: Config) -> None:
    from ownlight.mcp.pins import ToolPins, definition_hash

    pins = ToolPins(stores.registry)
    assert pins.for_server("crm") == {}
    first = definition_hash("lookup", "Look up a customer.", {"type": "object"})
    assert first != definition_hash("lookup", "Look up a customer!", {"type": "object"})
    pins.approve("crm", {"lookup": first, "fetch": "b" * 64}, "root")
    pins.approve("files", {"read": "c" * 64}, "root")
    assert pins.for_server("crm") == {"lookup": first, "fetch": "b" * 64}
    pins.approve("crm", {"lookup": "d" * 64}, "ops")  # a re-approval replaces the set
    assert pins.for_server("crm") == {"lookup": "d" * 64}
    assert [(p.server, p.tool, p.approved_by) for p in pins.all()] == [
        ("crm", "lookup", "ops"), ("files", "read", "root")]
    state = StateStore(config.data_dir / "state-2.db")  # another instance sees the same pins
    other = open_stores(config, state)
    try:
        expected = {"lookup": "d" * 64} if stores.shared else {}
        assert ToolPins(other.registry).for_server("crm") == expected
    finally:
        other.close()
        state.close()


def test_mcp_oauth_tokens_are_kept_sealed_per_server_and_principal(
        stores: Stores, config: Config) -> None:
    from ownlight.mcp.token_box import TokenBox, load_key
    from ownlight.store.mcp_tokens import StoredTokens

    rows = StoredTokens(stores.registry)
    box = TokenBox(load_key(None, config.data_dir))
    assert rows.get("web", "alice") is None and rows.latest("web") is None
    rows.put("web", "alice", box.seal("web", "alice", {"access_token": "tok-alice-1"}))
    time.sleep(0.01)
    rows.put("web", "bob", box.seal("web", "bob", {"access_token": "tok-bob-1"}))
    rows.put("files", "alice", box.seal("files", "alice", {"access_token": "tok-files"}))
    sealed = rows.get("web", "alice")
    assert sealed is not None and "tok-alice" not in sealed
    assert box.open("web", "alice", sealed) == {"access_token": "tok-alice-1"}
    assert box.open("web", "bob", sealed) is None  # a row copied onto another user's
    latest = rows.latest("web")
    assert latest is not None and latest[0] == "bob"
    rows.put("web", "alice", box.seal("web", "alice", {"access_token": "tok-alice-2"}))
    assert box.open("web", "alice", rows.get("web", "alice") or "") == {
        "access_token": "tok-alice-2"}
    assert (rows.latest("web") or ("", ""))[0] == "alice"
    assert rows.delete("web", "alice") and not rows.delete("web", "alice")
    assert rows.get("web", "alice") is None and rows.get("files", "alice") is not None
    state = StateStore(config.data_dir / "state-2.db")  # another instance, same store
    other = open_stores(config, state)
    try:
        seen = StoredTokens(other.registry).get("web", "bob")
        assert (seen is not None) == stores.shared
    finally:
        other.close()
        state.close()
