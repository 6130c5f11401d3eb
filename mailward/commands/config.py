"""``mailward config show [-c FILE] [--non-default]``: the effective configuration as TOML.

``show`` prints every setting with the value in use (defaults filled in, paths made absolute,
as the server sees them); ``--non-default`` only those that differ from the defaults, like
Postfix's ``postconf -n``. The output is a config file: it loads back to the same settings.
A file that does not load is one line naming the file, the key and the fix, exit 2.

``mailward config`` alone (the commented default file) belongs to :mod:`mailward.commands.serve`;
this module adds the ``show`` action to that command, or makes the command when it is absent.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mailward import config as config_mod


def _show(args) -> int:
    cfg = config_mod.load(args.config)
    try:
        sys.stdout.write(config_mod.effective_config_text(cfg, non_default=args.non_default))
        sys.stdout.flush()
    except BrokenPipeError:   # `mailward config show | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def register(subparsers) -> None:
    parser = subparsers.choices.get("config")
    if parser is None:
        parser = subparsers.add_parser("config", help="print configuration",
                                       description="Print the configuration.")
        parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION")
    show = actions.add_parser("show", help="the effective configuration as TOML (--non-default: like postconf -n)",
                              description="Print the effective configuration as TOML: every setting with the "
                                          "value in use, or with --non-default only those that differ from "
                                          "the defaults.")
    show.add_argument("-c", "--config", type=Path, default=config_mod.default_path(),
                      help="the TOML config file (default: $MAILWARD_CONFIG, else /etc/mailward/mailward.toml)")
    show.add_argument("--non-default", action="store_true", help="only the settings that differ from the defaults")
    show.set_defaults(func=_show)
