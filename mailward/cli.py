"""The ``mailward`` command: serve, quickstart, queue, ca, policy.

Each command module (:mod:`mailward.commands`) registers its own sub-commands
(``register(subparsers)``) so this file stays a table of contents. Errors a person can fix print one line and exit 2;
a server that finds its spool in use by another one prints one line and exits 75
(EX_TEMPFAIL: try again once that one has stopped). Nothing here prints a traceback for bad
input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mailward import __version__
from mailward.config import ConfigError
from mailward.spool.store import SpoolLocked

# Modules that add sub-commands: each has register(subparsers).
_COMMAND_MODULES = (
    "mailward.commands.serve",   # serve, quickstart, worker
    "mailward.commands.queue",   # queue
    "mailward.commands.ca",      # ca
    "mailward.commands.policy",  # policy
    "mailward.commands.sendmail",  # sendmail (and the sendmail, mailq, newaliases scripts)
    "mailward.commands.check",   # check
    "mailward.commands.config",  # config show (added to serve's 'config')
    "mailward.commands.mtasts",  # mta-sts (the records and policy file to publish)
    "mailward.commands.tlsrpt",  # tls-rpt (counts and reports, RFC 8460)
    "mailward.commands.user",    # user add|passwd|del|list (the submission users file)
    "mailward.commands.man",     # man [PAGE] (the manual pages, built from this code)
)


class UsageError(Exception):
    """A mistake on the command line or in a file the user named: one line, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailward",
        description="mailward: a mail transfer agent centred on SMTP over TLS.",
    )
    parser.add_argument("--version", action="version", version=f"mailward {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # that role is not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, UsageError, SpoolLocked) as err:
        print(f"mailward: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
