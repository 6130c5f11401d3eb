"""``mailward user``: add, change, delete and list the users of the SMTP AUTH users file.

    mailward user add NAME        a new user (argon2id hash and SCRAM-SHA-256 keys of the password)
    mailward user passwd NAME     a new password for a user
    mailward user del NAME        remove a user
    mailward user list            the users, and which mechanisms each can use

The file is ``--file FILE``, else the config's ``auth.users_file`` (``-c CONFIG``, default
``$MAILWARD_CONFIG``, else /etc/mailward/mailward.toml). Its format is in docs/submission.md
(and mailward/auth/users.py).

The password is never a command-line argument (other accounts can read those in ps): it
comes from ``--password-file FILE`` (its first line; ``-`` is standard input), else the
environment variable ``MAILWARD_PASSWORD``, else a prompt on the terminal, asked twice.

The file is rewritten atomically (a temporary file beside it, fsync, rename, fsync of the
folder) with its mode and owner kept; comments and the order of the other lines are kept. A
new file is created mode 0640. Two runs at once take turns (a lock on FILE.lock). A running
server sees the change at its next AUTH (it re-reads a changed file).

Errors (a bad line in the file, a mode that lets others read it, an unknown or existing user,
no password) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import fcntl
import getpass
import os
import stat
import sys
from contextlib import contextmanager
from pathlib import Path

from mailward import config as config_mod
from mailward.cli import UsageError

ENV_PASSWORD = "MAILWARD_PASSWORD"
NEW_FILE_MODE = 0o640


def register(subparsers) -> None:
    user = subparsers.add_parser("user", help="manage the SMTP AUTH users file (add, passwd, del, list)",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _file_options(user, config_mod.default_path(), None)
    sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    for name, func, text in (("add", _add, "add a user (the password is asked for, or read from "
                                           "--password-file or $MAILWARD_PASSWORD)"),
                             ("passwd", _passwd, "set a user's password"),
                             ("del", _del, "remove a user"),
                             ("list", _list, "list the users and the mechanisms each can use")):
        p = sub.add_parser(name, help=text, description=text)
        _file_options(p, _SUPPRESS, _SUPPRESS)
        if name != "list":
            p.add_argument("name", metavar="NAME", help="the login name, as the client sends it")
        if name in ("add", "passwd"):
            p.add_argument("--password-file", metavar="FILE", default=None,
                           help="read the password from the first line of FILE ('-': standard input)")
            p.add_argument("--iterations", type=int, default=None, metavar="N",
                           help="SCRAM-SHA-256 iteration count (default 4096, the least RFC 7677 allows)")
        p.set_defaults(func=func)


# A sub-command's copy of -c/--file defaults to SUPPRESS, so it does not reset a value given before it.
_SUPPRESS = argparse.SUPPRESS


def _file_options(parser, config_default, file_default) -> None:
    parser.add_argument("-c", "--config", type=Path, default=config_default,
                        help="the config whose auth.users_file is used (default: $MAILWARD_CONFIG, "
                             "else /etc/mailward/mailward.toml)")
    parser.add_argument("--file", "-f", type=Path, default=file_default, metavar="FILE",
                        help="the users file (default: the config's auth.users_file)")


def _users_path(args) -> Path:
    if args.file:
        return Path(args.file)
    cfg = config_mod.load(args.config)
    if not cfg.auth.users_file:
        raise UsageError(f"{args.config}: auth.users_file is empty: no users file to use; fix: set "
                         f"auth.users_file or give --file FILE")
    return Path(cfg.auth.users_file)


def _password(args) -> str:
    """The new password: --password-file, else $MAILWARD_PASSWORD, else the terminal (twice)."""
    if args.password_file:
        try:
            if args.password_file == "-":
                text = sys.stdin.readline()
            else:
                with open(args.password_file, encoding="utf-8") as f:
                    text = f.readline()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"{args.password_file}: cannot read the password: {getattr(err, 'strerror', err)}")
        password = text.rstrip("\r\n")
        source = args.password_file
    elif os.environ.get(ENV_PASSWORD) is not None:
        password, source = os.environ[ENV_PASSWORD], f"${ENV_PASSWORD}"
    elif sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ; nothing changed")
        source = "the prompt"
    else:
        raise UsageError(f"no password: give --password-file FILE, set {ENV_PASSWORD}, or run at a terminal")
    if not password:
        raise UsageError(f"empty password from {source}; nothing changed")
    return password


@contextmanager
def _locked(path: Path):
    """One `mailward user` at a time on a file (flock on FILE.lock, which is left in place)."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(path: Path, *, missing_ok: bool) -> tuple[list[str], dict]:
    """The file's lines and users; ([], {}) for a missing file when ``missing_ok``."""
    from mailward.auth.users import UsersFileError, load_users

    if missing_ok and not path.exists():
        return [], {}
    try:
        users = load_users(path)
    except UsersFileError as err:
        raise UsageError(str(err)) from None
    return path.read_text(encoding="utf-8").splitlines(), users


def _write(path: Path, lines: list[str]) -> None:
    """Replace the file atomically, keeping its mode and owner (0640 and ours when new)."""
    from mailward.fsutil import write_atomically

    try:
        st = os.stat(path)
        mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
    except FileNotFoundError:
        mode, owner = NEW_FILE_MODE, None
    write_atomically(path, "".join(line + "\n" for line in lines).encode("utf-8"), mode,
                     owner if os.geteuid() == 0 else None)


def _entry_line(lines: list[str], name: str) -> int | None:
    for index, raw in enumerate(lines):
        line = raw.strip()
        if line and not line.startswith("#") and line.split(":", 1)[0] == name:
            return index
    return None


def _new_entry(args, name: str) -> str:
    from mailward.auth.users import DEFAULT_ITERATIONS, make_entry

    iterations = args.iterations or DEFAULT_ITERATIONS
    if not 4096 <= iterations <= 10_000_000:
        raise UsageError(f"--iterations {iterations}: expected 4096 to 10000000 (RFC 7677 §4 asks for 4096 or more)")
    password = _password(args)
    try:
        return str(make_entry(name, password, iterations=iterations))
    except Exception as err:  # SASLprep refusing the password, a bad name: one line
        raise UsageError(f"{name}: {err}") from None


def _check_name(name: str) -> None:
    from mailward.auth.users import name_problem

    problem = name_problem(name)
    if problem:
        raise UsageError(f"cannot use {problem}")


def _add(args) -> int:
    path = _users_path(args)
    _check_name(args.name)
    with _locked(path):
        lines, users = _read(path, missing_ok=True)
        if args.name in users:
            raise UsageError(f"{path}:{users[args.name].line}: user {args.name!r} exists; "
                             f"use mailward user passwd to change the password")
        if not lines:
            lines = ["# mailward users file: NAME:ARGON2ID:SCRAM-SHA-256 keys (see `mailward user --help`)"]
        lines.append(_new_entry(args, args.name))
        _write(path, lines)
    print(f"{path}: user {args.name} added")
    return 0


def _passwd(args) -> int:
    path = _users_path(args)
    with _locked(path):
        lines, users = _read(path, missing_ok=False)
        index = _entry_line(lines, args.name)
        if args.name not in users or index is None:
            raise UsageError(f"{path}: no user {args.name!r}; use mailward user add")
        lines[index] = _new_entry(args, args.name)
        _write(path, lines)
    print(f"{path}: password of {args.name} changed")
    return 0


def _del(args) -> int:
    path = _users_path(args)
    with _locked(path):
        lines, users = _read(path, missing_ok=False)
        index = _entry_line(lines, args.name)
        if args.name not in users or index is None:
            raise UsageError(f"{path}: no user {args.name!r}")
        del lines[index]
        _write(path, lines)
    print(f"{path}: user {args.name} removed")
    return 0


def _list(args) -> int:
    path = _users_path(args)
    _, users = _read(path, missing_ok=False)
    for entry in users.values():
        kinds = []
        if entry.argon2:
            kinds.append("PLAIN LOGIN (argon2id)")
        if entry.scram:
            kinds.append(f"SCRAM-SHA-256 ({entry.scram.iterations} iterations)")
        print(f"{entry.name}\t{', '.join(kinds)}")
    print(f"{path}: {len(users)} users", file=sys.stderr)
    return 0
