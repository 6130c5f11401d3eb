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
the path and the three ways out (``-c FILE``, ``MAILWARD_CONFIG``, ``mailward quickstart DIR``).
"""

from __future__ import annotations

import os
import re
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
    config, problems = _check(data, path)
    if problems:
        _, message = problems[0]
        raise ConfigError(f"{where}: {message}")
    return config


def _check(data: dict[str, Any], path: Path | None) -> tuple[Config | None, list[tuple[str, str]]]:
    """The Config (None when anything is wrong) and every problem as (``section`` or
    ``section.key``, message), in file order of the schema."""
    base = path.parent if path else Path.cwd()
    problems: list[tuple[str, str]] = []
    for section, body in data.items():
        if section not in SCHEMA:
            problems.append((section, f"[{section}]: unknown section; expected one of {', '.join(SCHEMA)}"))
            continue
        if not isinstance(body, dict):
            problems.append((section, f"{section}: expected a [{section}] table"))
            continue
        known = {k.name for k in SCHEMA[section]}
        for name in body:
            if name not in known:
                problems.append((f"{section}.{name}", f"{section}.{name}: unknown key; "
                                                      f"expected one of {', '.join(sorted(known))}"))
    sections = {}
    for section, keys in SCHEMA.items():
        body = data.get(section, {})
        if not isinstance(body, dict):
            continue
        values = {}
        for key in keys:
            raw = body.get(key.name, key.default)
            try:
                values[key.name] = key.convert(raw, base)
            except ValueError as err:
                problems.append((f"{section}.{key.name}", f"{section}.{key.name}: expected {err}, got {raw!r}"))
        if len(values) == len(keys):
            sections[section] = SECTIONS[section](**values)
    if problems:
        return None, problems
    return Config(**sections, path=path), []


def key_lines(text: str) -> dict[str, int]:
    """Where each ``[section]`` and ``section.key`` is written in a TOML text (1-based lines).

    A plain scan of table headers and ``key =`` lines, enough for mailward.toml's flat
    sections; a key written some other way (inline table, dotted key) is simply not found.
    """
    lines: dict[str, int] = {}
    section = ""
    for number, raw in enumerate(text.splitlines(), 1):
        match = _HEADER.match(raw)
        if match:
            section = match.group(1).strip().strip('"')
            lines.setdefault(section, number)
            continue
        match = _KEY.match(raw)
        if match and section:
            lines.setdefault(f"{section}.{match.group(1).strip(chr(34))}", number)
    return lines


_HEADER = re.compile(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r'\s*("[^"]*"|[A-Za-z0-9_-]+)\s*=')


def problems(path: str | Path) -> tuple[Config | None, list[str]]:
    """Every problem of the config file at ``path`` (for ``mailward check``), each one line
    ``FILE:LINE: section.key: what`` (``FILE: ...`` when the line is unknown), and the Config
    when there are none. Never raises for a bad file."""
    path = Path(path)
    try:
        text = _read(path)
        data = _parse(text, path)
    except ConfigError as err:
        # tomllib says "... (at line 3, column 7)": put the line where an editor looks for it
        at = re.search(r" \(at line (\d+), column \d+\)$", str(err))
        if at and str(err).startswith(f"{path}: "):
            return None, [f"{path.resolve()}:{at.group(1)}: {str(err)[len(str(path)) + 2:]}"]
        return None, [str(err)]
    resolved = path.resolve()
    config, found = _check(data, resolved)
    lines = key_lines(text)
    out = []
    for where, message in found:
        line = lines.get(where) or lines.get(where.split(".", 1)[0])
        out.append((line or 0, f"{resolved}:{line}: {message}" if line else f"{resolved}: {message}"))
    return config, [text for _, text in sorted(out, key=lambda item: item[0])]


def load(path: str | Path) -> Config:
    """Read and check the config file at ``path``."""
    path = Path(path)
    return from_dict(_parse(_read(path), path), path.resolve())


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        if path == default_path():
            via = f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "the default config file"
            raise ConfigError(f"{path}: no such file ({via}); fix: give the file with -c FILE, set {ENV_VAR}=FILE, "
                              f"or create one with 'mailward quickstart DIR' (it writes DIR/mailward.toml)") from None
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror}; fix: check the path given "
                          f"with -c") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror}") from None


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
