"""Configuration fails fast and names the variable."""

from __future__ import annotations

import subprocess

import pytest
from support import BIN

from asiarch.common.config import ServerSettings, load_settings
from asiarch.common.errors import ConfigError


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASIARCH_PORT", raising=False)
    settings = load_settings(ServerSettings)
    assert settings.host == "127.0.0.1"
    assert settings.port is None
    assert settings.auth_token is None
    assert settings.max_receive_message_bytes == 16 * 1024 * 1024


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASIARCH_PORT", "6000")
    monkeypatch.setenv("ASIARCH_AUTH_TOKEN", "zq-secret-9")
    settings = load_settings(ServerSettings)
    assert settings.port == 6000
    assert settings.auth_token is not None and settings.auth_token.get_secret_value() == "zq-secret-9"
    assert "zq-secret-9" not in repr(settings)


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASIARCH_PORT", "6000")
    assert load_settings(ServerSettings, port=0).port == 0


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ASIARCH_PORT", "abc", "ASIARCH_PORT: Input should be a valid integer"),
        ("ASIARCH_PORT", "70000", "ASIARCH_PORT: Input should be less than or equal to 65535"),
        ("ASIARCH_LOG_LEVEL", "loud", "ASIARCH_LOG_LEVEL: Input should be 'debug', 'info'"),
        ("ASIARCH_SHUTDOWN_GRACE_SECONDS", "-1", "ASIARCH_SHUTDOWN_GRACE_SECONDS: Input should be greater"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(ServerSettings)
    assert expected in str(caught.value)
    assert repr(value) in str(caught.value)


def test_serve_exits_2_with_the_variable_named() -> None:
    done = subprocess.run(
        [str(BIN / "asiarch"), "serve", "selector"],
        env={"ASIARCH_PORT": "not-a-port", "PATH": str(BIN)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "ASIARCH_PORT" in done.stderr


def test_unknown_service_lists_the_installed_ones() -> None:
    done = subprocess.run(
        [str(BIN / "asiarch"), "serve", "nosuch"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "unknown service 'nosuch'" in done.stderr
    assert "selector" in done.stderr
