"""Shared fixtures: a hermetic data dir, real fake upstreams, and a gateway in two tiers.

``gateway_factory`` runs a real server (uvicorn on a 127.0.0.1 port, in a thread);
``app_gateway_factory`` runs the same app in the test's event loop over
``httpx.ASGITransport`` (the fast tier: async tests marked ``pytest.mark.anyio``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import RunningGateway
from tests.support.inprocess import InProcessGateway, write_config
from tests.support.servers import Postgres, Redis, running


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of assembled packaged models for the session (not the developer's
    ``~/.cache``): the bundled Gemma is joined once and linked into each test's data dir,
    not copied into each (250 MB apiece, 9 GB a run before)."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path: Path, model_cache: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data dir and no OWNLIGHT_* settings from the developer."""
    for name in list(os.environ):
        if name.startswith("OWNLIGHT_") or name.startswith("OPENAI_"):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "ownlight-data"
    monkeypatch.setenv("OWNLIGHT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(model_cache))
    yield data_dir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A throwaway PostgreSQL with pgvector for the whole session (started on first use);
    ``postgres_server.database()`` gives a test its own empty database. Fails if it cannot
    start: CI installs it."""
    with running(Postgres()) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: Postgres) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    return postgres_server.database()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """A throwaway Redis (Debian's redis-server) for the whole session; fails if it cannot
    start (``.ci/run`` installs it)."""
    with running(Redis()) as server:
        yield server


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def cloud() -> Iterator[FakeUpstream]:
    """A second recording upstream, for tests that name it as the cloud (outside the
    domain) beside another one."""
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def anyio_backend() -> str:
    """The fast tier runs on asyncio, the loop the server runs on (uvloop is asyncio too)."""
    return "asyncio"


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[object]:
    """Start gateways from a TOML text; all are stopped at the end of the test."""
    started: list[RunningGateway] = []

    def start(toml: str = "", *, local: bool = False) -> RunningGateway:
        count = len(started)
        gateway = RunningGateway(write_config(tmp_path / f"ownlight-{count}.toml",
                                              tmp_path / f"gw-data-{count}", toml, local=local))
        gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


AppGatewayFactory = Callable[..., Awaitable[InProcessGateway]]


@pytest.fixture
async def app_gateway_factory(anyio_backend: str,
                              tmp_path: Path) -> AsyncIterator[AppGatewayFactory]:
    """The fast tier's ``gateway_factory``: the same config, served in-process; every
    gateway's lifespan is shut down at the end of the test."""
    started: list[InProcessGateway] = []

    async def start(toml: str = "", *, local: bool = False) -> InProcessGateway:
        count = len(started)
        gateway = InProcessGateway(write_config(tmp_path / f"ownlight-{count}.toml",
                                                tmp_path / f"gw-data-{count}", toml, local=local))
        started.append(gateway)
        await gateway.start()
        return gateway

    yield start
    for gateway in reversed(started):
        await gateway.stop()


def upstream_toml(alias: str, url: str, model: str = "fake-model", **extra: object) -> str:
    lines = [f'[models.{alias}]', 'backend = "openai"', f'base_url = "{url}"', f'model = "{model}"']
    lines += [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {str(v).lower()}"
              for k, v in extra.items()]
    return "\n".join(lines).replace("'", '"') + "\n"
