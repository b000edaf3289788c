"""Settings: defaults, the documented file, env and flag overrides, and clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from livecast.config import ConfigError, Settings, load_settings

REPO_CONFIG = Path(__file__).parent.parent / "config" / "livecast.toml"


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            flat.update(_flatten(value, f"{prefix}{f.name}."))
        else:
            flat[f"{prefix}{f.name}"] = value
    return flat


def test_documented_file_lists_every_setting_with_its_default() -> None:
    documented = _flatten(load_settings(REPO_CONFIG, env={}))
    defaults = _flatten(Settings())
    assert documented == defaults
    text = REPO_CONFIG.read_text()
    for dotted in defaults:
        assert f"\n{dotted.split('.', 1)[1]} = " in text, f"{dotted} is not in {REPO_CONFIG}"


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "livecast.toml"
    path.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[redis]\nkey_prefix = "shop:"\n')
    env = {"LIVECAST_SERVER_PORT": "9100", "LIVECAST_DEV_MINT_VIEWER_TOKENS": "true"}
    settings = load_settings(path, env=env, overrides={"server.host": "::1"})
    assert settings.server.port == 9100
    assert settings.server.host == "::1"
    assert settings.redis.key_prefix == "shop:"
    assert settings.dev.mint_viewer_tokens is True
    assert settings.server.max_body_bytes == Settings().server.max_body_bytes


def test_config_path_from_env(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text("[server]\nport = 9200\n")
    assert load_settings(env={"LIVECAST_CONFIG": str(path)}).server.port == 9200


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[server]\nprot = 80\n", "server.prot"),
        ("[sever]\nport = 80\n", "sever"),
        ("[server]\nport = 'eighty'\n", "server.port"),
        ("[server]\nport = 70000\n", "70000"),
        ("[server]\nport = true\n", "server.port"),
        ("[redis]\nurl = 'http://example'\n", "redis.url"),
        ("[auth]\nsecret = 'short'\n", "auth.secret"),
        ("server = 5\n", "server"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_bad_file_names_key_and_value(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "livecast.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(path, env={})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LIVECAST_SERVER_PORT": "abc"}, "LIVECAST_SERVER_PORT"),
        ({"LIVECAST_SERVER_PROT": "80"}, "server.prot"),
        ({"LIVECAST_NOPE": "1"}, "LIVECAST_NOPE"),
        ({"LIVECAST_DEV_MINT_VIEWER_TOKENS": "maybe"}, "maybe"),
    ],
)
def test_bad_env_names_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env=env)


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml", env={})


def test_test_variables_are_not_settings() -> None:
    env = {"LIVECAST_TEST_REDIS_URL": "redis://127.0.0.1:6379"}
    assert load_settings(env=env) == Settings()


def test_a_list_in_the_environment_is_comma_separated() -> None:
    """As the README and config/livecast.toml say: LIVECAST_WEBHOOKS_URLS=a,b."""
    settings = load_settings(
        env={"LIVECAST_WEBHOOKS_URLS": "https://a.example/h, https://b.example/h,"}
    )
    assert settings.webhooks.urls == ("https://a.example/h", "https://b.example/h")
