"""Settings with one precedence everywhere: flags > environment (BEACH_*) > config file > defaults.

The config file is TOML, at $BEACH_CONFIG or ~/.config/beach/config.toml:

    server = "wss://beach.example.com"
    ice_servers = ["stun:stun.example.com:3478"]
    port = 7777
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .errors import BeachError

DEFAULTS: dict[str, Any] = {
    "server": None,  # None: `beach host` starts an embedded server
    "port": 7777,  # embedded server / `beach serve`
    "bind": "0.0.0.0",
    "ice_servers": [],  # STUN/TURN URLs; empty means host candidates only (LAN, loopback)
    "secret_length": 6,
    "connect_timeout": 20.0,
}

_ENV = {
    "server": "BEACH_SERVER",
    "port": "BEACH_PORT",
    "bind": "BEACH_BIND",
    "ice_servers": "BEACH_ICE_SERVERS",  # comma-separated
    "secret_length": "BEACH_SECRET_LENGTH",
    "connect_timeout": "BEACH_CONNECT_TIMEOUT",
}


def config_path() -> Path:
    env = os.environ.get("BEACH_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "beach" / "config.toml"


def _coerce(key: str, value: Any, source: str) -> Any:
    want = type(DEFAULTS[key]) if DEFAULTS[key] is not None else str
    try:
        if want is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
            raise ValueError
        if want is float:
            return float(value)
        if want is int:
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError) as exc:
        raise BeachError(f"{source}: {key} has an invalid value {value!r}") from exc


def load(flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """Resolve every setting; `flags` holds command-line values (None means not given)."""
    settings = dict(DEFAULTS)
    path = config_path()
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BeachError(f"cannot read config file {path}: {exc}") from exc
        for key, value in data.items():
            if key in DEFAULTS:
                settings[key] = _coerce(key, value, str(path))
    for key, var in _ENV.items():
        if os.environ.get(var):
            settings[key] = _coerce(key, os.environ[var], var)
    for key, value in (flags or {}).items():
        if value is not None and value != ():
            settings[key] = _coerce(key, list(value) if isinstance(value, tuple) else value, "flag")
    return settings
