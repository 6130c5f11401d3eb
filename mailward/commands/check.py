"""``mailward check [-c FILE]``: everything a start would load, checked, every problem at once.

What it reads, in the order ``serve`` does: the config file (TOML, every key), the TLS files
of ``[tls]`` (:func:`mailward.ca.check.check_config`), the delivery client certificate
(``delivery.client_cert_file`` / ``client_key_file``), the access map
(``policy.access_map``), the route file (``delivery.route_file``,
:func:`mailward.deliver.routes.load_routes`), the aliases (``local.aliases``,
:func:`mailward.deliver.aliases.load_aliases`), the local users (``local.users``), the AUTH
users file (``auth.users_file`` with ``auth.backend = "file"``; every bad line, and its mode)
and the trust stores of MTA-STS and TLS-RPT (``mta_sts.ca_file``, ``tls_rpt.ca_file``).

Output: one line per problem, ``FILE:LINE: error: what`` (or ``warning:``), compiler style so
an editor can jump to it; a TLS file's problem is placed at the config line that names the
file. Unlike ``serve``, which stops at the first bad line, each file is read on past a bad
line (the line is skipped and the file parsed again), so one run lists every problem.
Exit 0 when there is no error (warnings allowed), 2 when there is one; never a traceback.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Callable

from mailward import config as config_mod

MAX_PER_FILE = 50   # a file that is wrong on every line: the first 50 say enough
_AT_LINE = re.compile(r"^(?P<where>.*?:\d+): (?P<what>.*)$", re.S)


class Report:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.lines: dict[str, int] = {}
        self.errors = 0
        self.warnings = 0

    def setting(self, name: str) -> str:
        """``CONFIG:LINE`` where ``name`` (``tls.cert_file``) is written, else ``CONFIG``."""
        line = self.lines.get(name)
        return f"{self.config_path}:{line}" if line else str(self.config_path)

    def add(self, severity: str, where: str, what: str) -> None:
        if severity == "error":
            self.errors += 1
        else:
            self.warnings += 1
        print(f"{where}: {severity}: {what}")

    def add_located(self, severity: str, message: str) -> None:
        """A message that starts ``FILE:LINE: `` (the parsers' form) or ``FILE: ``."""
        match = _AT_LINE.match(message)
        if match:
            self.add(severity, match["where"], match["what"])
        else:
            where, _, what = message.partition(": ")
            self.add(severity, where, what or message)


def _each_bad_line(path: Path, parse: Callable[[str], object], errors: tuple[type[Exception], ...],
                   continued: bool = False) -> tuple[object | None, list[str]]:
    """Parse the file; on a bad line, note it, blank it and parse again, so every bad line is
    found (line numbers stay as they are). ``continued``: lines that start with white space
    belong to the line before (aliases), and are blanked with it."""
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as err:
        return None, [f"{path}: cannot read the file: {err.strerror}"]
    lines = text.split("\n")
    found: list[str] = []
    prefix = f"{path}:"
    while True:
        try:
            return parse("\n".join(lines)), found
        except errors as err:
            message = str(err)
            found.append(message)
            number = re.match(re.escape(prefix) + r"(\d+): ", message)
            if not number or len(found) >= MAX_PER_FILE:
                return None, found
            index = int(number.group(1)) - 1
            if not 0 <= index < len(lines) or not lines[index]:
                return None, found   # no progress possible: stop rather than loop
            lines[index] = ""
            while continued and index + 1 < len(lines) and lines[index + 1][:1] in (" ", "\t"):
                index += 1
                lines[index] = ""


def _via_file(path: Path, load: Callable[[Path], object], error: type[Exception]) -> Callable[[str], object]:
    """A text parser made from a loader that reads a path (routes, aliases): the text is
    written to a private temporary file, and its name in errors is put back to ``path``."""
    def parse(text: str) -> object:
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / path.name
            copy.write_text(text, encoding="utf-8", errors="surrogateescape")
            try:
                return load(copy)
            except error as err:
                raise error(str(err).replace(str(copy), str(path))) from None
    return parse


def check_tls(report: Report, cfg) -> None:
    from mailward.ca.check import check_config

    tls = cfg.tls
    settings = {str(v): f"tls.{k}" for k, v in (("cert_file", tls.cert_file), ("key_file", tls.key_file),
                                               ("ca_file", tls.ca_file), ("ca_path", tls.ca_path),
                                               ("crl_file", tls.crl_file)) if v}
    for p in check_config(cfg):
        _add_tls_problem(report, p, settings.get(p.file), p.fix)


def _add_tls_problem(report: Report, p, setting: str | None, fix: str) -> None:
    """A TLS file's problem, placed at the configuration line that names the file if any."""
    if setting:
        report.add(p.severity, report.setting(setting), f"{setting} {p.file}: {p.what}; fix: {fix}")
    else:
        report.add(p.severity, p.file, f"{p.what}; fix: {fix}")


def check_client_tls(report: Report, cfg) -> None:
    """delivery.client_cert_file / client_key_file: the pair presented to next hops that ask."""
    from mailward.ca.check import check_tls_files

    d = cfg.delivery
    if not d.client_cert_file and not d.client_key_file:
        return
    names = {"cert": "delivery.client_cert_file", "key": "delivery.client_key_file"}
    settings = {str(d.client_cert_file): names["cert"], str(d.client_key_file): names["key"]}
    for p in check_tls_files(d.client_cert_file, d.client_key_file, names=names):
        if "serverAuth" in p.what or "no ca_file or ca_path" in p.what:
            continue   # server-side advice: a client certificate needs neither
        p_fix = p.fix.replace("[tls] cert_file", names["cert"]).replace("[tls] key_file", names["key"])
        _add_tls_problem(report, p, settings.get(p.file), p_fix)


def check_access_map(report: Report, cfg) -> None:
    from mailward.policy.accessmap import AccessMap, AccessMapError

    path = cfg.policy.access_map
    if not path:
        return
    amap, errors = _each_bad_line(Path(path), lambda text: AccessMap.from_text(text, str(path)), (AccessMapError,))
    if amap is None and errors and not errors[0].startswith(f"{path}:"):
        report.add("error", report.setting("policy.access_map"), f"policy.access_map {errors[0]}")
        return
    for message in errors:
        report.add_located("error", message)
    if amap is not None:
        for warning in amap.warnings:
            report.add_located("warning", warning)


def check_routes(report: Report, cfg) -> None:
    from mailward.deliver.routes import RouteError, load_routes

    path = cfg.delivery.route_file
    if path:
        _table_file(report, Path(path), "delivery.route_file", _via_file(Path(path), load_routes, RouteError),
                    (RouteError,), continued=False)


def check_aliases(report: Report, cfg) -> dict | None:
    from mailward.deliver.aliases import AliasError, load_aliases

    path = cfg.local.aliases
    if not path:
        return {}
    return _table_file(report, Path(path), "local.aliases", _via_file(Path(path), load_aliases, AliasError),
                       (AliasError,), continued=True)


def _table_file(report: Report, path: Path, setting: str, parse, errors, continued: bool):
    table, found = _each_bad_line(path, parse, errors, continued)
    for message in found:
        if re.match(re.escape(f"{path}:") + r"\d+: ", message):
            report.add_located("error", message)
        else:   # the file itself: missing or unreadable; the setting is what to fix
            report.add("error", report.setting(setting), f"{setting} {message}; fix: check the path in {setting}")
    return table


def check_users(report: Report, cfg, aliases: dict | None) -> None:
    from mailward.deliver.maildir import mailbox_name

    where = report.setting("local.users")
    for user in cfg.local.users:
        if mailbox_name(user) is None:
            report.add("error", where, f"local.users: {user!r} cannot be a mailbox name (empty, or longer than a "
                                       "file name may be); fix: remove it or give the user's name")
    if not aliases or cfg.local.accept_unknown_users:
        return
    known = {u.lower() for u in cfg.local.users} | {"postmaster"}
    root = Path(cfg.local.maildir_root)
    try:
        text = Path(cfg.local.aliases).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        text = []
    first_line = {}
    for number, raw in enumerate(text, 1):
        name = raw.partition(":")[0].strip().lower()
        if raw[:1] not in (" ", "\t", "#") and name:
            first_line.setdefault(name, number)
    for name, targets in aliases.items():
        for target in targets:
            if "@" in target or target.lower() in known or target.lower() in aliases:
                continue
            folder = mailbox_name(target)
            if folder and (root / folder).is_dir():
                continue
            line = first_line.get(name.lower())
            report.add("warning", f"{cfg.local.aliases}:{line}" if line else f"{cfg.local.aliases}",
                       f"alias {name}: target {target!r} is not a local user (local.users), an alias or an "
                       f"existing Maildir under {root}, so mail to it bounces with 550 5.1.1; fix: add it to "
                       "local.users, or correct the target")


def check_auth_users(report: Report, cfg) -> None:
    """auth.users_file: what the users-file backend refuses to start with (mode, bad lines)."""
    auth = getattr(cfg, "auth", None)
    if auth is None or auth.backend != "file":
        return
    from mailward.auth.users import UsersFileError, mode_problem, parse_users

    path = auth.users_file
    if not path:
        report.add("error", report.setting("auth.backend"), 'auth.backend is "file" but auth.users_file is '
                                                            "empty; fix: name the users file (mailward user add)")
        return
    try:
        st = Path(path).stat()
    except OSError as err:
        report.add("error", report.setting("auth.users_file"),
                   f"auth.users_file {path}: {err.strerror}; fix: check the path, or create it with mailward user add")
        return
    problem = mode_problem(st.st_mode)
    if problem:
        report.add("error", str(path), problem)
    _, errors = _each_bad_line(Path(path), lambda text: parse_users(text, str(path)), (UsersFileError,))
    for message in errors:
        report.add_located("error", message)


def check_listeners(report: Report, cfg) -> None:
    """server.listen's submission roles (TLS and AUTH needed) and the sender login map."""
    from mailward.listen import listener_problems

    try:
        problems = listener_problems(cfg.server.listen, has_tls=bool(cfg.tls.cert_file),
                                     has_auth=cfg.auth.backend != "none")
    except ValueError:
        problems = []   # an entry that does not parse is already reported by the config check
    for message in problems:
        report.add("error", report.setting("server.listen"), message)
    if cfg.submission.sender_login_map:
        from mailward.policy.sender_login import SenderLoginMap, SenderLoginMapError

        try:
            SenderLoginMap.load(cfg.submission.sender_login_map)
        except SenderLoginMapError as err:
            report.add_located("error", str(err))


def check_trust_stores(report: Report, cfg) -> None:
    """mta_sts.ca_file and tls_rpt.ca_file: PEM files of CA certificates, when set."""
    from cryptography import x509

    for setting in ("mta_sts.ca_file", "tls_rpt.ca_file"):
        section, key = setting.split(".")
        value = getattr(getattr(cfg, section, None), key, "")
        if not value:
            continue
        try:
            certs = x509.load_pem_x509_certificates(Path(value).read_bytes())
        except OSError as err:
            report.add("error", report.setting(setting), f"{setting} {value}: {err.strerror}; fix: check the path")
            continue
        except ValueError:
            certs = []
        if not certs:
            report.add("error", report.setting(setting), f"{setting} {value}: no PEM certificate in it; fix: name a "
                                                         "file of CA certificates (-----BEGIN CERTIFICATE-----)")


def _check(args) -> int:
    path = Path(args.config)
    report = Report(path.resolve() if path.exists() else path)
    cfg, problems = config_mod.problems(path)
    for problem in problems:
        report.add_located("error", problem)
    if cfg is not None:
        try:
            report.lines = config_mod.key_lines(path.read_text(encoding="utf-8"))
        except OSError:
            pass
        check_tls(report, cfg)
        check_client_tls(report, cfg)
        check_access_map(report, cfg)
        check_routes(report, cfg)
        aliases = check_aliases(report, cfg)
        check_users(report, cfg, aliases)
        check_listeners(report, cfg)
        check_auth_users(report, cfg)
        check_trust_stores(report, cfg)
    if report.errors:
        print(f"{path}: {report.errors} error{'s' if report.errors != 1 else ''}, "
              f"{report.warnings} warning{'s' if report.warnings != 1 else ''}: the server would not start")
        return 2
    note = f" ({report.warnings} warning{'s' if report.warnings != 1 else ''})" if report.warnings else ""
    print(f"{path}: ok{note}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="check everything a start would load; every problem as FILE:LINE",
                              description="Check the config file and every file it names (TLS files, access "
                                          "map, routes, aliases, users); exit 0 when clean, 2 with errors.")
    p.add_argument("-c", "--config", type=Path, default=config_mod.default_path(),
                   help="the TOML config file (default: $MAILWARD_CONFIG, else /etc/mailward/mailward.toml)")
    p.set_defaults(func=_check)
