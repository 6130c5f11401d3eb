"""``mailward man [PAGE]``: show a manual page, generated from this very program.

PAGE is ``mailward`` (the default), a command (``queue``, ``mailward-queue``) or
``mailward.toml``. The page is built in the process (:func:`mailward.manpages.pages`), so it
always matches the installed code, with or without the pages installed under share/man, and
is shown with ``man -l -`` (man-db: paged on a terminal, plain text into a pipe); without
man(1) the roff text is printed. An unknown page
is one line naming the pages there are, exit 2.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from mailward.cli import UsageError


def _show(args) -> int:
    from mailward.manpages import pages

    every = pages()
    want = args.page.removesuffix(".8").removesuffix(".5")
    names = {n.rsplit(".", 1)[0]: n for n in every}
    name = names.get(want) or names.get(f"mailward-{want}")
    if name is None:
        raise UsageError(f"no manual page {args.page!r}; there are: {', '.join(sorted(names))}")
    text = every[name]
    if not shutil.which("man"):
        sys.stdout.write(text)
        return 0
    return subprocess.run(["man", "-l", "-"], input=text, text=True).returncode


def register(subparsers) -> None:
    p = subparsers.add_parser("man", help="show a manual page (mailward, a command, mailward.toml)",
                              description="Show a manual page, generated from this program: mailward(8), "
                                          "mailward-COMMAND(8) or mailward.toml(5).")
    p.add_argument("page", nargs="?", default="mailward",
                   help="mailward (default), a command such as queue, or mailward.toml")
    p.set_defaults(func=_show)
