"""Reading the file: TOML text → a checked :class:`~mailward.config.settings.Config`, or one line.

Contract: :func:`load` and :func:`from_dict` either return a Config whose every value has been
checked against :data:`~mailward.config.schema.SCHEMA`, or raise :class:`ConfigError` whose
message is one line: the file, the key (``section.name``) and what is expected there, e.g.
``/etc/mailward.toml: server.workers: expected an integer >= 1, got 0``. Unknown sections and
keys are errors: a typo must not silently fall back to a default. Keys left out get the
field's default. Relative paths are resolved against the folder of the config file.

Where the file is: :func:`default_path` — ``$MAILWARD_CONFIG`` when set, else
``/etc/mailward/mailward.toml`` — is the default of every command's ``-c``, so a command works
without ``-c`` on a server; ``-c FILE`` still wins. A missing default file is one line that names
the path and the three ways out (``-c FILE``, ``MAILWARD_CONFIG``, ``mailward quickstart``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from mailward.config.schema import SCHEMA, SECTIONS
from mailward.config.settings import Config


DEFAULT_PATH = Path("/etc/mailward/mailward.toml")
ENV_VAR = "MAILWARD_CONFIG"


class ConfigError(Exception):
    """A wrong key or value: str(err) is the one line the user sees."""


def default_path() -> Path:
    """The config file a command reads without ``-c``: ``$MAILWARD_CONFIG``, else /etc/mailward/mailward.toml."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def from_dict(data: dict[str, Any], path: Path | None = None) -> Config:
    """Validate a parsed TOML document; ``path`` names the file in errors and anchors paths."""
    where = str(path) if path else "<config>"
    base = path.parent if path else Path.cwd()
    for section, body in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{where}: [{section}]: unknown section; expected one of {', '.join(SCHEMA)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: {section}: expected a [{section}] table")
        known = {k.name for k in SCHEMA[section]}
        for name in body:
            if name not in known:
                raise ConfigError(f"{where}: {section}.{name}: unknown key; "
                                  f"expected one of {', '.join(sorted(known))}")
    sections = {}
    for section, keys in SCHEMA.items():
        body = data.get(section, {})
        values = {}
        for key in keys:
            raw = body.get(key.name, key.default)
            try:
                values[key.name] = key.convert(raw, base)
            except ValueError as err:
                raise ConfigError(f"{where}: {section}.{key.name}: expected {err}, got {raw!r}") from None
        sections[section] = SECTIONS[section](**values)
    return Config(**sections, path=path)


def load(path: str | Path) -> Config:
    """Read and check the config file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        if path == default_path():
            via = f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "the default config file"
            raise ConfigError(f"{path}: no such file ({via}); fix: give the file with -c FILE, set {ENV_VAR}=FILE, "
                              f"or create one with 'mailward quickstart'") from None
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror}; fix: check the path given "
                          f"with -c") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return from_dict(data, path.resolve())
