"""Settings precedence: flags > environment (BEACH_*) > config file > defaults."""

from __future__ import annotations

import subprocess

import pytest
from conftest import BEACH, beach_env

from beach_cli import config
from beach_cli.errors import BeachError


@pytest.fixture
def cfg(tmp_path, monkeypatch: pytest.MonkeyPatch):
    for var in [*config._ENV.values(), "BEACH_CONFIG"]:
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("BEACH_CONFIG", str(path))
    return path


def test_defaults_without_a_file(cfg) -> None:
    settings = config.load({})
    assert settings["server"] is None and settings["port"] == 7777
    assert settings["ice_servers"] == []


def test_file_beats_defaults(cfg) -> None:
    cfg.write_text(
        'server = "wss://file.example"\nport = 9000\nice_servers = ["stun:a", "stun:b"]\n'
    )
    settings = config.load({})
    assert settings["server"] == "wss://file.example"
    assert settings["port"] == 9000
    assert settings["ice_servers"] == ["stun:a", "stun:b"]


def test_environment_beats_file(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.write_text('server = "wss://file.example"\nport = 9000\n')
    monkeypatch.setenv("BEACH_SERVER", "wss://env.example")
    monkeypatch.setenv("BEACH_ICE_SERVERS", "stun:x, turn:y")
    settings = config.load({})
    assert settings["server"] == "wss://env.example"
    assert settings["port"] == 9000  # not set in the environment: the file's value stands
    assert settings["ice_servers"] == ["stun:x", "turn:y"]


def test_flags_beat_everything(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.write_text('server = "wss://file.example"\n')
    monkeypatch.setenv("BEACH_SERVER", "wss://env.example")
    settings = config.load({"server": "wss://flag.example", "port": None, "ice_servers": ()})
    assert settings["server"] == "wss://flag.example"
    assert settings["port"] == 7777  # a flag left out (None) does not override


@pytest.mark.parametrize(
    "text", ["port = 'many'\n", "server = 5\n", "ice_servers = [1, 2]\n", "not toml = = =\n"]
)
def test_bad_file_is_one_clear_error(cfg, text: str) -> None:
    cfg.write_text(text)
    with pytest.raises(BeachError):
        config.load({})


@pytest.mark.e2e
def test_bad_config_file_is_reported_by_the_cli(tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("port = 'many'\n")
    env = beach_env(BEACH_CONFIG=str(path))
    result = subprocess.run(
        [BEACH, "join", "--server", "127.0.0.1:9", "abcdef-ghjkmn"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "port has an invalid value" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_log_file_receives_the_logs(tmp_path) -> None:
    log = tmp_path / "beach.log"
    result = subprocess.run(
        [
            BEACH,
            "--log-file",
            str(log),
            "--log-level",
            "debug",
            "join",
            "--server",
            "127.0.0.1:9",
            "abcdef-ghjkmn",
        ],
        env=beach_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 4  # unreachable server: one line on stderr...
    assert result.stderr.strip().splitlines()[-1].startswith("beach: cannot reach the server")
    assert log.exists()  # ...and the log went to the file, not the terminal
    assert "DEBUG" not in result.stderr


@pytest.mark.e2e
def test_debug_shows_the_traceback(tmp_path) -> None:
    result = subprocess.run(
        [BEACH, "--debug", "join", "--server", "127.0.0.1:9", "abcdef-ghjkmn"],
        env=beach_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 4
    assert "Traceback" in result.stderr
