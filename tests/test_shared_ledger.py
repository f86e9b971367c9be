"""One audit ledger for every instance, in a real PostgreSQL.

Two data dirs (two instances) ship their local chains into the shared ledger; it verifies
from a third machine's command line, and an edit, a deletion or an insertion made directly
in the database with psycopg makes verify fail naming the record. ``ownlight db copy``
moves a SQLite ledger over with its hashes. Real ``ownlight serve`` processes answer the
``openai`` SDK while one is killed with ``kill -9``: once it restarts, every answered
request is in the shared ledger exactly once and the chain verifies.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import openai
import psycopg
import pytest
from click.testing import CliRunner

from ownlight.audit.ledger import Ledger
from ownlight.audit.record_hash import canonical
from ownlight.audit.records import AdminRecord, RequestRecord
from ownlight.audit.shared import (
    LEDGER_LOCK,
    SESSION_LIMITS,
    PgLedgerStore,
    Shipper,
    source_id,
)
from ownlight.audit.verify import head, verify
from ownlight.cli import main
from ownlight.store.copy import copy_state
from ownlight.store.postgres import PostgresDatabase, connect
from ownlight.store.sqlite import StateStore
from tests.support.fake_upstream import FakeUpstream, free_port
from tests.support.servers import Postgres, running


def run_cli(tmp_path: Path, url: str, *args: str) -> tuple[int, str]:
    env = {"OWNLIGHT_DATA_DIR": str(tmp_path / "auditor"), "OWNLIGHT_STORE_URL": url}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def two_instances_write(tmp_path: Path, url: str, each: int = 30) -> None:
    ledgers = [Ledger(tmp_path / f"node-{n}" / "state.db", ship_to=url, checkpoint_every=25)
               for n in range(2)]
    try:
        for i in range(each):
            for n, ledger in enumerate(ledgers):
                ledger.put(RequestRecord(f"req_{n}_{i}", "chat", principal=f"p{n}"))
        ledgers[0].write_sync(AdminRecord("key.create", "alice", "cli"))
    finally:
        for ledger in ledgers:
            ledger.close()  # the last pass chains and ships


@pytest.fixture
def shared(tmp_path: Path, postgres_url: str) -> psycopg.Connection:
    database = PostgresDatabase(postgres_url, max_connections=2)  # migrates
    database.close()
    two_instances_write(tmp_path, postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        yield conn


def _name_source(data_dir: str, barrier: multiprocessing.synchronize.Barrier,
                 names: multiprocessing.queues.Queue) -> None:
    barrier.wait()
    names.put(source_id(Path(data_dir)))


def test_processes_naming_one_data_dir_at_once_agree_on_its_name(tmp_path: Path) -> None:
    """The server and its chainer child both name the data dir as they start: every racer
    reads the one whole name (a shipper under another name than ``behind`` reads would
    leave the instance "behind" for good)."""
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        barrier, names = context.Barrier(6), context.Queue()
        racers = [context.Process(target=_name_source,
                                  args=(str(tmp_path / str(attempt)), barrier, names))
                  for _ in range(6)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(30)
        seen = {names.get(timeout=5) for _ in racers}
        assert len(seen) == 1 and len(seen.pop()) == 32
        assert [p.name for p in (tmp_path / str(attempt)).iterdir()] == ["audit.source"]


def test_two_instances_make_one_chain_that_verifies_from_any_machine(
        shared: psycopg.Connection, tmp_path: Path, postgres_url: str) -> None:
    ids = [r[0] for r in shared.execute("SELECT request_id FROM audit_log WHERE kind = "
                                        "'request' ORDER BY seq")]
    assert Counter(ids) == Counter(f"req_{n}_{i}" for n in range(2) for i in range(30))
    code, out = run_cli(tmp_path, postgres_url, "audit", "verify")
    assert code == 0 and out.startswith("ok: 61 records"), out
    code, out = run_cli(tmp_path, postgres_url, "audit", "list", "--kind", "admin")
    assert code == 0 and len(out.splitlines()) == 1 and " admin " in out and " cli " in out, out
    marks = dict(shared.execute("SELECT source, shipped FROM audit_sources").fetchall())
    assert sorted(marks.values()) == [30, 31]
    checkpoints = shared.execute("SELECT count, head FROM audit_checkpoints ORDER BY count")
    assert [(n, h) for n, h in checkpoints] == [
        (n, shared.execute("SELECT hash FROM audit_log WHERE seq = %s", (n,)).fetchone()[0])
        for n in (25, 50)]


@pytest.mark.parametrize("tamper, where", [
    ("UPDATE audit_log SET record = replace(record, 'req_1_4', 'req_1_X') "
     "WHERE request_id = 'req_1_4'", "changed"),
    ("DELETE FROM audit_log WHERE seq = 20", "record 20 is missing"),
    ("insert", "record 20 holds record 19"),
    ("DELETE FROM audit_log WHERE seq > 59", "records after 59 were deleted"),
    ("append", "1 record(s) at the end were inserted"),
])
def test_an_edit_a_deletion_or_an_insertion_in_the_database_is_named(
        shared: psycopg.Connection, tmp_path: Path, postgres_url: str, tamper: str,
        where: str) -> None:
    if tamper == "insert":  # room made at 20 (seqs after it moved up), a forged row put in
        row = shared.execute("SELECT at, kind, record, hash FROM audit_log WHERE seq = 19"
                             ).fetchone()
        shared.execute("UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 20")
        shared.execute("UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1020")
        shared.execute("INSERT INTO audit_log (seq, at, kind, record, hash) "
                       "VALUES (20, %s, %s, %s, %s)", row)
    elif tamper == "append":  # a forged last record, chained properly onto the head
        last = shared.execute("SELECT seq, hash, record FROM audit_log ORDER BY seq DESC "
                              "LIMIT 1").fetchone()
        forged = {**json.loads(last[2]), "seq": last[0] + 1, "prev": last[1],
                  "uid": "forged", "principal": "mallory"}
        text = canonical(forged)
        shared.execute("INSERT INTO audit_log (seq, at, kind, principal, target, "
                       "inside_domain, status, request_id, tenant, record, hash, uid) "
                       "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                       (last[0] + 1, forged["at"], forged["kind"], "mallory",
                        forged.get("target"), forged.get("inside_domain"),
                        forged.get("status"), forged.get("request_id"), forged.get("tenant"),
                        text, hashlib.sha256(text.encode()).hexdigest(), "forged"))
    else:
        edited = shared.execute("SELECT seq FROM audit_log WHERE request_id = 'req_1_4'"
                                ).fetchone()
        shared.execute(tamper)
        if where == "changed":
            where = f"record {edited[0]} was changed"
    code, out = run_cli(tmp_path, postgres_url, "audit", "verify")
    assert code == 1 and where in out, out
    database = PostgresDatabase(postgres_url, max_connections=1)
    try:
        verdict = verify(PgLedgerStore(database))
    finally:
        database.close()
    assert not verdict.ok and (f"record {verdict.seq}" in where or "at the end" in where
                               or f"after {verdict.seq - 1}" in where), verdict


def test_db_copy_moves_the_sqlite_ledger_with_its_hashes(tmp_path: Path,
                                                         postgres_url: str) -> None:
    ledger = Ledger(tmp_path / "single" / "state.db", checkpoint_every=10)
    for i in range(25):
        ledger.put(RequestRecord(f"req_{i}", "chat"))
    ledger.flush()
    ledger.close()
    state = StateStore(tmp_path / "single" / "state.db")
    before = head(state)
    database = PostgresDatabase(postgres_url)
    try:
        assert copy_state(state, database).audit == 25
        rows = PgLedgerStore(database)
        assert head(rows) == before  # same seqs, same hashes: old checkpoints still hold
        assert verify(rows, (before[0], before[1])).ok
        assert len(rows.query("SELECT * FROM audit_checkpoints")) == 2
        # an instance started on the copied data dir ships only what comes after
        ledger = Ledger(tmp_path / "single" / "state.db", ship_to=postgres_url)
        ledger.put(RequestRecord("req_after", "chat"))
        ledger.close()
        verdict = verify(rows)
        assert verdict.ok and verdict.count == 26, verdict
    finally:
        database.close()
        state.close()


def serve(config: Path, port: int, upstream: str, log: Path) -> subprocess.Popen[str]:
    with log.open("a") as errors:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "ownlight.cli", "--config", str(config), "serve",
             "--no-local", "--port", str(port), "--upstream", f"cloud={upstream}"],
            stdout=subprocess.PIPE, stderr=errors, text=True,
            env={**os.environ, "PYTHONPATH": ":".join(sys.path)})


def wait_ready(url: str, server: subprocess.Popen[str],
               key: str | None = None) -> dict[str, object]:
    deadline = time.monotonic() + 60
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    while time.monotonic() < deadline:
        assert server.poll() is None, "ownlight serve exited"
        try:
            reply = httpx.get(url + "/readyz", headers=headers)
            if reply.status_code == 200:
                return dict(reply.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready")


def why_stuck(url: str, tmp_path: Path) -> str:
    """What a lag that never reaches 0 needs to be understood: the store's sessions (who
    waits on what) and the end of each server's log."""
    with psycopg.connect(url) as conn:
        sessions = conn.execute(
            "SELECT pid, state, wait_event_type, wait_event, now() - xact_start, "
            "left(query, 80) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()").fetchall()
        marks = conn.execute("SELECT source, shipped FROM audit_sources").fetchall()
    logs = {p.name: p.read_text()[-2000:] for p in sorted(tmp_path.glob("log-*"))}
    return f"sessions {sessions}; marks {marks}; logs {logs}"


def test_kill_9_under_load_loses_no_answered_request(fake_upstream: FakeUpstream,
                                                    postgres_url: str, tmp_path: Path) -> None:
    """Two ``ownlight serve`` on one PostgreSQL, four openai clients on each; the first is
    killed with SIGKILL mid-load and started again on its data dir: every request either
    instance answered is in the shared ledger exactly once, and the chain verifies."""
    ports = [free_port(), free_port()]
    configs = []
    for n in range(2):
        configs.append(tmp_path / f"ownlight-{n}.toml")
        configs[-1].write_text(f'data_dir = "{tmp_path / f"data-{n}"}"\n'
                               f'[store]\nurl = "{postgres_url}"\n')
    servers = [serve(configs[0], ports[0], fake_upstream.url, tmp_path / "log-0")]
    wait_ready(f"http://127.0.0.1:{ports[0]}", servers[0])
    assert servers[0].stdout is not None
    key = servers[0].stdout.readline().strip()
    servers.append(serve(configs[1], ports[1], fake_upstream.url, tmp_path / "log-1"))
    wait_ready(f"http://127.0.0.1:{ports[1]}", servers[1])
    answered: list[str] = []
    stop = threading.Event()

    def client(port: int) -> None:
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key,
                           max_retries=0, timeout=10) as sdk:
            while not stop.is_set():
                try:
                    raw = sdk.chat.completions.with_raw_response.create(
                        model="cloud", messages=[{"role": "user", "content": "hello"}])
                except openai.APIError:
                    time.sleep(0.05)  # the killed one: refused until it is back
                    continue
                raw.parse()
                answered.append(raw.headers["x-ownlight-request-id"])

    lags: list[int] = []

    def sample() -> None:  # the survivor's shipper lag while the load runs
        while not stop.is_set():
            lag = wait_ready(f"http://127.0.0.1:{ports[1]}", servers[1], key)
            lags.append(int(str(lag.get("audit_behind"))))
            time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(ports[n % 2],)) for n in range(8)]
    threads.append(threading.Thread(target=sample))
    try:
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        before = len(answered)
        servers[0].send_signal(signal.SIGKILL)
        servers[0].wait(10)
        assert servers[0].stdout is not None
        servers[0].stdout.close()
        time.sleep(1.0)
        servers[0] = serve(configs[0], ports[0], fake_upstream.url, tmp_path / "log-0")
        wait_ready(f"http://127.0.0.1:{ports[0]}", servers[0])
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    try:
        assert before > 50 and len(answered) > before
        deadline = time.monotonic() + 30
        while True:  # the shipper's lag, as /readyz reports it to an admin, goes to 0 on both
            lag = [wait_ready(f"http://127.0.0.1:{p}", s, key).get("audit_behind")
                   for p, s in zip(ports, servers, strict=True)]
            if lag == [0, 0]:
                break
            assert time.monotonic() < deadline, (lag, why_stuck(postgres_url, tmp_path))
            time.sleep(0.2)
        with psycopg.connect(postgres_url) as conn:
            counts = Counter(dict(conn.execute(
                "SELECT request_id, count(*) FROM audit_log WHERE kind = 'request' "
                "AND request_id = ANY(%s) GROUP BY request_id", (answered,)).fetchall()))
        assert set(counts) == set(answered), len(set(answered) - set(counts))
        assert set(counts.values()) == {1}
        code, out = run_cli(tmp_path, postgres_url, "audit", "verify")
        assert code == 0, out
        metrics = httpx.get(f"http://127.0.0.1:{ports[1]}/metrics",
                            headers={"Authorization": f"Bearer {key}"}).text
        assert "ownlight_audit_behind 0.0" in metrics
        print(f"answered {len(answered)} ({before} before the kill); {out.strip()}; "
              f"survivor's lag under load: max {max(lags)}, median "
              f"{sorted(lags)[len(lags) // 2]} over {len(lags)} samples")
    finally:
        for server in servers:
            server.terminate()
            server.communicate(timeout=30)


def test_a_stopped_store_delays_shipping_not_the_local_chain(tmp_path: Path) -> None:
    """PostgreSQL stopped (pg_ctl stop) under a shipping ledger: records are still journaled and
    chained locally at once; once it runs again the shipper catches up by itself and the
    shared chain verifies."""
    with running(Postgres()) as server:
        url = server.database()
        PostgresDatabase(url).close()  # migrates
        ledger = Ledger(tmp_path / "node" / "state.db", ship_to=url)
        try:
            for i in range(10):
                ledger.put(RequestRecord(f"req_{i}", "chat"))
            wait_shipped(url, 10)
            server.halt()
            started = time.monotonic()
            ledger.write_sync(AdminRecord("key.revoke", "bob", "cli"))
            for i in range(10, 30):
                ledger.put(RequestRecord(f"req_{i}", "chat"))
            ledger.flush()
            assert time.monotonic() - started < 2.0  # chained here without PostgreSQL
            server.resume()
            wait_shipped(url, 31)
        finally:
            ledger.close()
        database = PostgresDatabase(url, max_connections=1)
        try:
            verdict = verify(PgLedgerStore(database))
        finally:
            database.close()
        assert verdict.ok and verdict.count == 31, verdict


def wait_shipped(url: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(url) as conn:
            found = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        if found is not None and found[0] == count:
            return
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def test_a_hung_peer_holding_the_ledger_lock_is_cut_off(tmp_path: Path, postgres_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer's shipper that hangs inside its batch transaction (holding the ledger's lock)
    does not stop the other instances' shipping for good: its session's limits make
    PostgreSQL end the idle transaction, and the waiting shipper ships on its next try."""
    monkeypatch.setitem(SESSION_LIMITS, "lock_timeout", "300ms")
    monkeypatch.setitem(SESSION_LIMITS, "idle_in_transaction_session_timeout", "2s")
    PostgresDatabase(postgres_url).close()  # migrates
    peer = Shipper(postgres_url, StateStore(tmp_path / "peer" / "state.db"), tmp_path / "peer")
    hung = peer._connect()
    hung.execute("BEGIN")
    hung.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK,))  # and then nothing
    started = time.monotonic()
    ledger = Ledger(tmp_path / "node" / "state.db", ship_to=postgres_url)
    try:
        for i in range(5):
            ledger.put(RequestRecord(f"req_{i}", "chat"))
        wait_shipped(postgres_url, 5, timeout=20.0)
    finally:
        ledger.close()
    assert time.monotonic() - started >= 1.5  # it did wait for the peer's lock
    with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
        hung.execute("SELECT 1")  # PostgreSQL ended the hung session
    peer.close()


def test_every_connection_to_the_store_notices_a_silent_server(postgres_url: str) -> None:
    """libpq's keepalive and ``tcp_user_timeout`` are set on the pool's connections and on
    every other connection Ownlight opens (the ledger shipper's, the key listener's), so a
    partition is noticed in seconds, not hours; a value the operator put in the URL wins."""
    def settings(conn: psycopg.Connection) -> dict[str, str]:
        return {k: v for k, v in conn.info.get_parameters().items()
                if k.startswith("keepalives") or k == "tcp_user_timeout"}

    expected = {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2",
                "keepalives_count": "3", "tcp_user_timeout": "10000"}
    database = PostgresDatabase(postgres_url, max_connections=1)
    try:
        with database.pool.connection() as conn:
            assert settings(conn) == expected
    finally:
        database.close()
    with connect(postgres_url) as conn:
        assert settings(conn) == expected
    with connect(postgres_url + "?keepalives_idle=30&tcp_user_timeout=0") as conn:
        assert settings(conn) == {**expected, "keepalives_idle": "30", "tcp_user_timeout": "0"}
    src = Path(__file__).resolve().parents[1] / "src" / "ownlight"
    direct = [str(p.relative_to(src)) for p in src.rglob("*.py")
              if "psycopg.connect(" in p.read_text() or "Connection.connect(" in p.read_text()]
    assert direct == ["store/postgres.py"]  # its connect() is the only way in
