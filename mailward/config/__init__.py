"""The TOML configuration file → frozen, validated settings.

Contract: :func:`load` either returns a :class:`Config` whose every value has been checked,
or raises :class:`ConfigError` whose one-line message names the file, the key and what is
expected. Unknown sections and keys are errors (a typo must not silently fall back to a
default). Relative paths are resolved against the directory of the config file.

One source: the frozen dataclasses in :mod:`.settings` (``ServerSettings``, ``TLSSettings``,
..., and ``Config`` holding one of each) declare every key with its type, default, checks and
one-line documentation in the field's metadata. From them come:

- :mod:`.schema`: ``SCHEMA``, the keys of each section as the loader sees them;
- :mod:`.load`: :func:`load` and :func:`from_dict`, which check a file against ``SCHEMA``;
- :mod:`.render`: :func:`default_config_text` (``mailward config``, quickstart),
  :func:`effective_config_text` (``mailward config show [--non-default]``) and
  :func:`reference_markdown` (the reference table; scripts/update-docs writes docs/configuration.md).

Without ``-c``, commands read :func:`default_path` (``$MAILWARD_CONFIG``, else
/etc/mailward/mailward.toml).

Import from ``mailward.config``; the submodules are its parts, not separate interfaces.
"""

from mailward.config.load import ConfigError, default_path, from_dict, key_lines, load, problems
from mailward.config.render import default_config_text, effective_config_text, reference_markdown
from mailward.config.schema import SCHEMA, SECTIONS, Key
from mailward.config.settings import (Config, DeliverySettings, FilePath, LocalSettings, LogSettings,
                                      PolicySettings, ServerSettings, SpoolSettings, TLSSettings)

__all__ = [
    "Config", "ConfigError", "default_path", "load", "problems", "key_lines", "from_dict", "default_config_text",
    "effective_config_text", "reference_markdown",
    "ServerSettings", "TLSSettings", "SpoolSettings", "LocalSettings", "PolicySettings",
    "DeliverySettings", "LogSettings", "FilePath", "SCHEMA", "SECTIONS", "Key",
]
