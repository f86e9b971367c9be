"""A real Ownlight server (uvicorn on a free 127.0.0.1 port) in a background thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn
from openai import OpenAI

from ownlight.config import Config, load_config
from ownlight.runtime import Runtime
from ownlight.server import create_app
from tests.support.fake_upstream import free_port


class RunningGateway:
    def __init__(self, config: Config):
        self.port = free_port()
        self.config = config.with_overrides(server__port=self.port)
        self.runtime = Runtime.build(self.config)
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(
            create_app(self.runtime), host="127.0.0.1", port=self.port, loop="asyncio",
            log_level="warning", lifespan="on",
        ))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._clients: list[OpenAI] = []

    def start(self, ready_timeout: float = 120.0) -> None:
        self.runtime.prepare()
        self._thread.start()
        deadline = time.monotonic() + ready_timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        while httpx.get(self.url + "/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready: {self.runtime.readiness()}")
            time.sleep(0.1)

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._server.should_exit = True
        self._thread.join(15)

    def create_key(self, name: str = "alice", groups: tuple[str, ...] = (),
                   tenant: str = "default") -> str:
        key, _ = self.runtime.keys.create(name, groups, tenant)
        return key

    def client(self, key: str | None = None, **kwargs: object) -> OpenAI:
        client = OpenAI(base_url=self.url + "/v1", api_key=key or self.create_key(),
                        max_retries=0, **kwargs)  # type: ignore[arg-type]
        self._clients.append(client)
        return client


@contextlib.contextmanager
def gateway_from(root: Path, toml: str = "") -> Iterator[RunningGateway]:
    """A gateway from ``toml`` with its data under ``root``: module-scoped fixtures use it."""
    path = root / "ownlight.toml"
    path.write_text(f'data_dir = "{root / "data"}"\n' + toml)
    gateway = RunningGateway(load_config(path))
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
