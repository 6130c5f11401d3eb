"""What is generated from the schema: the commented default file, the reference table of
docs/configuration.md, and the effective configuration of a loaded file (``mailward config show``).

Both list every key of :data:`~mailward.config.schema.SCHEMA` in file order with its default
(as TOML) and its one-line documentation; neither holds any text of its own about a key.
scripts/update-docs builds docs/configuration.md and mailward.toml(5) from the same schema, and
tests/test_docs.py checks that they are not stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailward.config.schema import SCHEMA


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_config_text(overrides: dict[str, dict[str, Any]] | None = None) -> str:
    """The commented default config: every key, its documentation and its default.

    Keys in ``overrides`` are written active; all others are written commented out.
    """
    overrides = overrides or {}
    lines = ["# mailward configuration. Every key is shown with its default; uncomment to change.",
             "# Relative paths are relative to this file's folder. Reference: docs/configuration.md, man 5 mailward.toml.", ""]
    for section, keys in SCHEMA.items():
        lines.append(f"[{section}]")
        for key in keys:
            lines.append(f"# {key.doc}")
            if section in overrides and key.name in overrides[section]:
                lines.append(f"{key.name} = {_toml_value(overrides[section][key.name])}")
            else:
                lines.append(f"# {key.name} = {_toml_value(key.default)}")
        lines.append("")
    return "\n".join(lines)


def reference_markdown() -> str:
    """The README's configuration table, from the schema."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for section, keys in SCHEMA.items():
        for key in keys:
            rows.append(f"| `{section}.{key.name}` | `{_toml_value(key.default)}` | {key.doc} |")
    return "\n".join(rows)


def effective_config_text(config, non_default: bool = False) -> str:
    """The loaded configuration as TOML: every key with the value in use (paths absolute), or
    with ``non_default`` only the keys whose value differs from the default (``postconf -n``).

    The text loads back to the same configuration.
    """
    base = config.path.parent if config.path else Path.cwd()
    where = str(config.path) if config.path else "<config>"
    what = "settings that differ from the defaults" if non_default else "every setting, as in use"
    lines = [f"# mailward configuration read from {where}: {what}.", ""]
    for section, keys in SCHEMA.items():
        settings = getattr(config, section)
        body = []
        for key in keys:
            value = getattr(settings, key.name)
            if non_default and value == key.convert(key.default, base):
                continue
            body.append(f"{key.name} = {_toml_value(value)}")
        if body or not non_default:
            lines += [f"[{section}]", *body, ""]
    return "\n".join(lines).rstrip("\n") + "\n"
