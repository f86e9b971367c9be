"""The audit ledger and metrics, through a real gateway, a real SQLite file and real crashes.

An auditor must be able to prove, months later, what left the machine and that nobody
edited the record: so these tests edit, delete and insert rows in the SQLite file
directly and expect ``verify`` to find and locate each change, kill the server with
SIGKILL mid-burst and expect every answered request to have its record, and check that
egress is refused when its record cannot be written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from click.testing import CliRunner

from ownlight.audit.journal import Journal
from ownlight.audit.ledger import Ledger
from ownlight.audit.record_hash import GENESIS, canonical
from ownlight.audit.verify import verify
from ownlight.cli import main
from ownlight.store.sqlite import StateStore
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream, free_port

CONTACT = "Please write to maria.gonzalez@example.com about the contract."


def start(gateway_factory, cloud: FakeUpstream, extra: str = ""):
    return gateway_factory(upstream_toml("cloud", cloud.url, "fake-echo", retries=0) + extra)


def burst(client: openai.OpenAI, n: int, threads: int = 8) -> None:
    def one(i: int) -> None:
        client.chat.completions.create(model="cloud",
                                       messages=[{"role": "user", "content": f"{CONTACT} {i}"}])

    workers = [threading.Thread(target=lambda k=k: [one(i) for i in range(k, n, threads)])
               for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def state_db(gateway) -> Path:
    return gateway.config.data_dir / "state.db"


def test_concurrent_requests_make_one_verifiable_chain(gateway_factory, cloud) -> None:
    gateway = start(gateway_factory, cloud)
    burst(gateway.client(), 40)
    ledger = gateway.runtime.pipeline.ledger
    ledger.flush()
    requests = ledger.query("status = 200")
    # Egress facts: a record of their own, or folded into the request's when both were
    # chained in one batch; either way one per request, each made durable before sending.
    egress = ledger.query(kind="egress") + [e for r in requests for e in r.get("egress", [])]
    assert len(requests) == 40 and len(egress) == 40
    assert all(r["pseudonymized"] == {"EMAIL_ADDRESS": 1} for r in requests)
    assert all(e["target"] == "cloud/fake-echo" and e["payload_bytes"] > 0 for e in egress)
    verdict = verify(StateStore(state_db(gateway)))
    assert verdict.ok and verdict.count == 40 + len(ledger.query(kind="egress"))
    assert "maria.gonzalez" not in state_db(gateway).read_bytes().decode("latin-1")


def tamper(db: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, params)


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    """A ledger of 12 admin records, closed: a file an attacker could edit."""
    db = tmp_path / "state.db"
    ledger = Ledger(db, checkpoint_every=0)
    from ownlight.audit.records import AdminRecord

    for i in range(12):
        ledger.write_sync(AdminRecord("key.create", f"user{i}", "cli"))
    ledger.close()
    return db


def test_an_edited_record_is_found(chain: Path) -> None:
    row = sqlite3.connect(chain).execute("SELECT record FROM audit_log WHERE seq = 5").fetchone()
    tamper(chain, "UPDATE audit_log SET record = ? WHERE seq = 5",
           row[0].replace('"user4"', '"mallory"'))
    verdict = verify(StateStore(chain))
    assert not verdict.ok and verdict.seq == 5 and "changed" in (verdict.problem or "")


def test_an_edited_index_column_is_found(chain: Path) -> None:
    tamper(chain, "UPDATE audit_log SET principal = 'someone-else' WHERE seq = 7")
    verdict = verify(StateStore(chain))
    assert verdict.seq == 7 and "columns disagree" in (verdict.problem or "")


def test_a_deleted_record_is_found(chain: Path) -> None:
    tamper(chain, "DELETE FROM audit_log WHERE seq = 4")
    verdict = verify(StateStore(chain))
    assert verdict.seq == 4 and "deleted" in (verdict.problem or "")


def test_an_inserted_record_is_found(chain: Path) -> None:
    conn = sqlite3.connect(chain)
    with conn:
        conn.execute("UPDATE audit_log SET seq = seq + 1000 WHERE seq > 5")
        conn.execute("UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000")
        prev = conn.execute("SELECT hash FROM audit_log WHERE seq = 5").fetchone()[0]
        forged = {"seq": 6, "prev": prev, "kind": "admin", "action": "key.create",
                  "subject": "backdoor", "at": "2026-01-01T00:00:00.000+00:00"}
        text = canonical(forged)
        conn.execute("INSERT INTO audit_log (seq, at, kind, record, hash) VALUES (?, ?, ?, ?, ?)",
                     (6, forged["at"], "admin", text, hashlib.sha256(text.encode()).hexdigest()))
    verdict = verify(StateStore(chain))
    assert not verdict.ok and verdict.seq == 7 and "inserted" in (verdict.problem or "")


def test_a_rewritten_chain_is_caught_by_a_checkpoint_kept_elsewhere(chain: Path) -> None:
    runner = CliRunner()
    env = {"OWNLIGHT_DATA_DIR": str(chain.parent)}
    kept = json.loads(runner.invoke(main, ["audit", "checkpoint"], env=env).output)
    conn = sqlite3.connect(chain)
    rows = conn.execute("SELECT seq, record FROM audit_log ORDER BY seq").fetchall()
    prev = GENESIS
    with conn:  # an attacker who edits record 3 and recomputes every hash after it
        for seq, text in rows:
            body = json.loads(text)
            if seq == 3:
                body["subject"] = "mallory"
            body["prev"] = prev
            text = canonical(body)
            prev = hashlib.sha256(text.encode()).hexdigest()
            conn.execute("UPDATE audit_log SET record = ?, hash = ? WHERE seq = ?",
                         (text, prev, seq))
    assert verify(StateStore(chain)).ok  # the chain alone cannot tell
    result = runner.invoke(main, ["audit", "verify", "--checkpoint", kept["verify_with"]], env=env)
    assert result.exit_code == 1 and "checkpoint" in result.output


def test_every_answered_request_survives_kill_9(cloud, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "OWNLIGHT_DATA_DIR": str(data)}
    cli = [sys.executable, "-m", "ownlight.cli"]
    key = subprocess.run([*cli, "keys", "create", "--name", "load"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen([*cli, "serve", "--no-local", "--port", str(port), "--upstream",
                               f"cloud={cloud.url}"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        answered: list[str] = []
        stop = threading.Event()

        def fire() -> None:
            with httpx.Client(timeout=5) as client:
                while not stop.is_set():
                    try:
                        response = client.post(url + "/v1/chat/completions", json={
                            "model": "cloud", "messages": [{"role": "user", "content": "hi"}]},
                            headers={"Authorization": f"Bearer {key}"})
                    except httpx.HTTPError:
                        return
                    if response.status_code == 200:
                        answered.append(response.headers["x-ownlight-request-id"])

        workers = [threading.Thread(target=fire) for _ in range(8)]
        for w in workers:
            w.start()
        time.sleep(2.0)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        stop.set()
        for w in workers:
            w.join(10)
    finally:
        if server.poll() is None:
            server.kill()
    assert len(answered) > 50
    Ledger(data / "state.db").close()  # what a restart does: chain what the journal kept
    assert not list(data.glob("audit.journal.*"))
    store = StateStore(data / "state.db")
    recorded = {str(r[0]) for r in store.query(
        "SELECT request_id FROM audit_log WHERE kind = 'request' AND status = 200")}
    assert set(answered) <= recorded
    assert verify(store).ok


@pytest.mark.parametrize("mode", ["none", "hashed", "full"])
def test_bodies_are_kept_as_configured(gateway_factory, cloud, mode: str) -> None:
    gateway = start(gateway_factory, cloud, f'[audit]\nbodies = "{mode}"\n')
    gateway.client().chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": "The tide is high."}])
    ledger = gateway.runtime.pipeline.ledger
    ledger.flush()
    (record,) = ledger.query("status = 200")
    if mode == "none":
        assert record["prompt"] is None and record["answer"] is None
    elif mode == "hashed":
        assert set(record["prompt"]) == {"hmac_sha256"} and len(record["prompt"]["hmac_sha256"]) \
            == 64
        assert "tide" not in json.dumps(record)
        salt = ledger.salt  # nothing was pseudonymized: the egress record's hash is reused
        assert record["prompt"]["hmac_sha256"] == hmac_sha256(salt, "The tide is high.")
        assert record["answer"]["hmac_sha256"] == hmac_sha256(salt, "You said: The tide is high.")
    else:
        assert record["prompt"] == "The tide is high."
        assert record["answer"] == "You said: The tide is high."


def test_egress_is_refused_when_its_record_cannot_be_written(gateway_factory, cloud,
                                                             monkeypatch) -> None:
    gateway = start(gateway_factory, cloud)
    client = gateway.client()

    def broken(self: Journal, line: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Journal, "put", broken)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="cloud", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 503
    assert caught.value.body["code"] == "audit_unavailable"  # type: ignore[index]
    assert cloud.received == []


def test_internal_errors_are_recorded(gateway_factory, cloud, monkeypatch) -> None:
    gateway = start(gateway_factory, cloud)

    async def crash(self: object, request: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("ownlight.routing.router.Router.decide", crash)
    response = httpx.post(gateway.url + "/v1/chat/completions",
                          headers={"Authorization": f"Bearer {gateway.create_key()}"},
                          json={"model": "cloud", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 500
    ledger = gateway.runtime.pipeline.ledger
    ledger.flush()
    assert ledger.query("status = 500")[0]["error_code"] == "internal_error"


def test_metrics_move_and_admin_routes_refuse_ordinary_keys(gateway_factory, cloud) -> None:
    gateway = start(gateway_factory, cloud)
    admin = gateway.create_key("root", groups=("admin",))
    auth = {"Authorization": f"Bearer {admin}"}

    def scrape() -> str:
        response = httpx.get(gateway.url + "/metrics", headers=auth)
        assert response.status_code == 200
        return response.text

    def value(text: str, name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name))

    before = scrape()
    burst(gateway.client(), 5, threads=1)
    after = scrape()
    assert value(after, "ownlight_requests_total") - value(before, "ownlight_requests_total") == 5
    assert value(after, 'ownlight_egress_requests_total{target="cloud/fake-echo"}') == 5
    assert value(after, 'ownlight_pseudonymized_entities_total{type="EMAIL_ADDRESS"}') == 5
    assert 'ownlight_circuit_state{target="cloud"} 0.0' in after
    ordinary = {"Authorization": f"Bearer {gateway.create_key('bob')}"}
    for path in ("/metrics", "/v1/admin/audit"):
        assert httpx.get(gateway.url + path, headers=ordinary).status_code == 403
        assert httpx.get(gateway.url + path).status_code == 401
    records = httpx.get(gateway.url + "/v1/admin/audit?outside=true&limit=3", headers=auth)
    assert records.status_code == 200 and len(records.json()["data"]) == 3


def test_egress_report_and_admin_acts_from_the_cli(gateway_factory, cloud) -> None:
    gateway = start(gateway_factory, cloud)
    burst(gateway.client(), 3, threads=1)
    with pytest.raises(openai.BadRequestError):
        gateway.client().chat.completions.create(model="cloud", messages=[
            {"role": "user", "content": "My card is 4111 1111 1111 1111"}])
    gateway.runtime.pipeline.ledger.flush()
    runner = CliRunner()
    env = {"OWNLIGHT_DATA_DIR": str(gateway.config.data_dir)}
    created = runner.invoke(main, ["keys", "create", "--name", "carol"], env=env)
    assert created.exit_code == 0, created.output
    report = json.loads(runner.invoke(main, ["audit", "egress", "--json"], env=env).output)
    (sent,) = [row for row in report["sent"] if row["requests"]]
    assert sent["target"] == "cloud/fake-echo" and sent["requests"] == 3
    assert sent["pseudonymized"] == {"EMAIL_ADDRESS": 3} and report["refused"] == 1
    listed = json.loads(runner.invoke(main, ["audit", "list", "--kind", "admin", "--json"],
                                      env=env).output)
    assert any(r["action"] == "key.create" and r["subject"] == "carol" for r in listed)
    verified = runner.invoke(main, ["audit", "verify"], env=env)
    assert verified.exit_code == 0 and verified.output.startswith("ok:")
    exported = runner.invoke(main, ["audit", "export", "--since", "1d"], env=env).output
    everything = json.loads(runner.invoke(main, ["audit", "list", "--limit", "10000", "--json"],
                                          env=env).output)
    assert [json.loads(line)["seq"] for line in exported.splitlines()] == \
        [r["seq"] for r in everything]


def test_a_dead_process_journal_is_chained_once(tmp_path: Path) -> None:
    from ownlight.audit.records import AdminRecord, journal_line

    db = tmp_path / "state.db"
    ledger = Ledger(db)
    chained = json.loads(journal_line(AdminRecord("key.create", "before-the-crash", "cli")))
    ledger._append([chained])  # chained, but the journal was not emptied before the kill
    ledger.close()
    lost = json.loads(journal_line(AdminRecord("key.revoke", "only-in-the-journal", "cli")))
    dead_pid = 2**22 + 12345  # above pid_max: no such process
    (tmp_path / f"audit.journal.{dead_pid}.ab12").write_bytes(
        b"".join(json.dumps(r).encode() + b"\n" for r in (chained, lost)))
    Ledger(db).close()
    subjects = [json.loads(str(r[0]))["subject"] for r in StateStore(db).query(
        "SELECT record FROM audit_log ORDER BY seq")]
    assert subjects == ["before-the-crash", "only-in-the-journal"]
    assert not (tmp_path / f"audit.journal.{dead_pid}.ab12").exists()
    assert verify(StateStore(db)).ok


def test_a_journal_left_under_this_very_pid_is_recovered(tmp_path: Path) -> None:
    """A restarted container often gets the pid its predecessor had."""
    from ownlight.audit.records import AdminRecord, journal_line

    db = tmp_path / "state.db"
    Ledger(db).close()
    left = json.loads(journal_line(AdminRecord("key.create", "from-the-last-run", "cli")))
    (tmp_path / f"audit.journal.{os.getpid()}.0000").write_bytes(json.dumps(left).encode() + b"\n")
    ledger = Ledger(db)
    ledger.put(AdminRecord("key.create", "this-run", "cli"))
    ledger.flush()
    ledger.close()
    subjects = [json.loads(str(r[0]))["subject"] for r in StateStore(db).query(
        "SELECT record FROM audit_log ORDER BY seq")]
    assert subjects == ["from-the-last-run", "this-run"]


def test_a_stream_cut_by_its_client_is_recorded_and_charged(gateway_factory, cloud) -> None:
    gateway = start(gateway_factory, cloud)
    key = gateway.create_key()
    long_text = "lighthouse keeper " * 40
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=10,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": "cloud", "stream": True,
                            "messages": [{"role": "user", "content": long_text}]}) as response:
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
    ledger = gateway.runtime.pipeline.ledger
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ledger.query("status = 499"):
        time.sleep(0.1)
        ledger.flush()
    (record,) = ledger.query("status = 499")
    assert record["error_code"] == "client_closed_request"
    assert record["usage"]["completion_tokens"] > 0 and record["usage"]["prompt_tokens"] > 0


def test_the_process_chainer_chains_and_is_restarted_when_it_dies(tmp_path: Path) -> None:
    """The server's chainer runs in a child process; if it dies, another takes over and
    replays the journal, so no record is lost or chained twice."""
    from ownlight.audit.records import AdminRecord

    db = tmp_path / "state.db"
    ledger = Ledger(db, chainer="process")
    try:
        assert ledger.write_sync(AdminRecord("key.create", "first", "cli")) == 1
        first = ledger._proc
        assert first is not None
        first.kill()
        first.wait(10)
        for i in range(20):
            ledger.put(AdminRecord("key.create", f"after-{i}", "cli"))
        deadline = time.monotonic() + 20
        while ledger._proc is first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ledger._proc is not first  # started again
        ledger.flush()
        assert len(ledger.query(kind="admin")) == 21
    finally:
        ledger.close()
    assert ledger._proc is not None and ledger._proc.returncode == 0  # exited when closed
    assert not list(tmp_path.glob("audit.journal.*"))
    subjects = [json.loads(str(r[0]))["subject"] for r in StateStore(db).query(
        "SELECT record FROM audit_log ORDER BY seq")]
    assert subjects == ["first", *(f"after-{i}" for i in range(20))]
    assert verify(StateStore(db)).ok


def test_a_journal_spanning_several_files_is_chained_in_order(tmp_path: Path,
                                                              monkeypatch) -> None:
    from ownlight.audit.records import AdminRecord

    monkeypatch.setattr(Journal, "SIZE", 4096)  # a new file every few records
    db = tmp_path / "state.db"
    ledger = Ledger(db)
    for i in range(100):
        ledger.put(AdminRecord("key.create", f"user{i}", "cli", details={"pad": "x" * 200}))
    ledger.flush()
    ledger.close()
    assert not list(tmp_path.glob("audit.journal.*"))
    subjects = [json.loads(str(r[0]))["subject"] for r in StateStore(db).query(
        "SELECT record FROM audit_log ORDER BY seq")]
    assert subjects == [f"user{i}" for i in range(100)]
    assert verify(StateStore(db)).ok


def test_the_egress_hash_is_of_the_text_that_left(gateway_factory, cloud) -> None:
    """The payload hash is computed from the request's slots and the placeholders put in;
    it must equal the hash of the slots of what the upstream actually received."""
    from ownlight.protocol.model import Operation
    from ownlight.protocol.openai import parse_request
    from ownlight.protocol.slots import text_slots

    gateway = start(gateway_factory, cloud)
    tool = {"type": "function", "function": {
        "name": "send_mail", "description": "Send an e-mail.",
        "parameters": {"type": "object", "properties": {
            "to": {"type": "string", "description": "Recipient address"}}}}}
    gateway.client().chat.completions.create(model="cloud", tools=[tool], messages=[
        {"role": "system", "content": "You help with mail."},
        {"role": "user", "content": CONTACT}])
    (sent,) = cloud.received
    assert "maria.gonzalez@example.com" not in json.dumps(sent)  # pseudonymized
    ledger = gateway.runtime.pipeline.ledger
    ledger.flush()
    (record,) = ledger.query()
    egress = record["egress"][0] if "egress" in record else ledger.query(kind="egress")[0]
    payload = "\n".join(s.text for s in text_slots(parse_request(Operation.CHAT, sent)))
    assert egress["payload_sha256"] == hmac_sha256(ledger.salt, payload)


def hmac_sha256(salt: bytes, text: str) -> str:
    """The standard's HMAC, computed apart from the ledger's own."""
    return hmac.digest(salt, text.encode(), "sha256").hex()
