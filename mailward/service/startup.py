"""Before the first byte: lock the spool, bind, hand over, drop privileges — in that order.

Contract: :func:`prepare` returns the bound listening sockets and the held spool lock, in a
process that already runs as the account it will serve as; only then may the caller recover
the spool and start receiving. It raises ``SpoolLocked`` (one line, exit 75) when another
server uses the spool, having changed nothing at all, and ``ConfigError`` (one line, exit 2)
for everything a person must fix: from step 1 with nothing changed; from a later step (an
address in use, a file out of the account's reach) the PID file may name this process, which
then holds no lock, so it names no running server.

1. Nothing changes yet: the tables the configuration names (routes, aliases, access map)
   must parse, ``server.user`` / ``server.group`` must exist, and the root rule must hold
   (the caller has run ``mailward ca check``'s checks on the TLS files before).
2. The spool lock is taken (``mailward.spool.store``, ONE SERVER PER SPOOL).
3. Every ``server.listen`` address is bound (as root, so port 25 works), then our PID is
   written into the locked PID file.
4. Started as root with ``server.user``: what runs as root made before is handed to that
   account (the spool and its files, the PID file, the log file, the Maildir folders down to
   ``USER/new``; files already in Maildirs are left as they are), then supplementary groups,
   group and user are set to it for good, as Postfix does (its set_ugid(3) manual page), and
   every file the server reads again later — TLS certificates and keys (each SIGHUP, each
   worker start), the access map, aliases, routes, and the config file for workers — must be
   readable as that account, and the spool, the Maildir root (and, for workers, the log file)
   writable, else one line names the file and the chown that fixes it.

PRIVILEGES. The only thing root is needed for is binding a port below 1024. Root without
``server.user`` is refused when it listens on such a port, unless ``server.allow_root = true``
says it is meant; on ports from 1024 up root is not needed at all, so the server runs but logs
a warning (test servers and ``make run`` started by root keep working). The TLS key is read as
``server.user``, at start and on every reload: a key only root could read would start the
server and then fail at the first certificate renewal, so it is refused at start instead; a key
owned by ``server.user`` with mode 0600 is what ``mailward ca check`` approves.

Failure behaviour: a failed step closes what earlier steps opened; the process exits.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import signal
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from mailward import log
from mailward.config import Config, ConfigError
from mailward.fsutil import give_to
from mailward.listen import parse_listen
from mailward.spool.store import SpoolLock

PRIVILEGED_PORTS = 1024   # below this, binding needs root (or CAP_NET_BIND_SERVICE)


@dataclass(frozen=True)
class Account:
    """The unprivileged account the server runs as (``server.user``, ``server.group``)."""

    user: str
    uid: int
    group: str
    gid: int


@dataclass
class Ready:
    socks: list[socket.socket]
    lock: SpoolLock
    account: Account | None


def _setting(config: Config, key: str, default):
    return getattr(config.server, key, default)


def account_from_config(config: Config) -> Account | None:
    user, group = _setting(config, "user", "") or "", _setting(config, "group", "") or ""
    if not user:
        if group:
            raise ConfigError(f"{config.path}: server.group: set server.user too (the group is that "
                              "account's group after the privilege drop)")
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"{config.path}: server.user: no account named {user!r}; fix: create it "
                          f"(useradd --system --no-create-home {user}) or name an existing one") from None
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"{config.path}: server.group: no group named {group!r}; fix: create it "
                              f"(groupadd --system {group}), name an existing one, or leave it empty "
                              f"for {user}'s own group") from None
    else:
        gid = pw.pw_gid
        try:
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            group = str(gid)
    return Account(user, pw.pw_uid, group, gid)


def _port(item: str) -> int:
    return parse_listen(item)[1]


def root_rule(config: Config, account: Account | None) -> str | None:
    """Refuse what the PRIVILEGES paragraph refuses (ConfigError); returns a warning to log,
    or None."""
    euid = os.geteuid()
    if euid != 0:
        if account is not None and account.uid != euid:
            raise ConfigError(f"{config.path}: server.user: mailward runs as uid {euid}, and only root can "
                              f"switch to {account.user!r}; fix: start it as root, or leave server.user empty")
        return None
    if account is not None and account.uid != 0:
        return None
    if _setting(config, "allow_root", False):
        return None
    low = [item for item in config.server.listen if _port(item) < PRIVILEGED_PORTS]
    if low:
        raise ConfigError(f"{config.path}: server.user: mailward would serve {low[0]} as root; fix: set "
                          "server.user to an unprivileged account (e.g. useradd --system --no-create-home "
                          "mailward), or server.allow_root = true to run as root on purpose")
    return "running as root (server.user is not set): the spool and the Maildirs are root's"


def bind(config: Config) -> list[socket.socket]:
    """A listening socket for every address of every ``server.listen`` entry (a host name may
    give IPv4 and IPv6), inheritable by worker processes."""
    socks: list[socket.socket] = []
    try:
        for item in config.server.listen:
            host, port = parse_listen(item)
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            except socket.gaierror as err:
                raise ConfigError(f"{config.path}: server.listen: cannot resolve {item}: {err.strerror}") from None
            for family, kind, proto, _, addr in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                socks.append(sock)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind(addr)
                    sock.listen(1024)
                except OSError as err:
                    hint = ""
                    if err.errno == errno.EACCES and int(port) < PRIVILEGED_PORTS:
                        hint = "; fix: start mailward as root (with server.user set) or listen on a port >= 1024"
                    raise ConfigError(f"{config.path}: server.listen: cannot listen on {item}: "
                                      f"{err.strerror}{hint}") from None
                sock.set_inheritable(True)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def hand_over(config: Config, account: Account) -> None:
    """Give the account what the server writes (see step 4), where root owns it now."""
    maildirs = Path(config.local.maildir_root)
    todo = [("spool.directory", Path(config.spool.directory), 2, True), ("local.maildir_root", maildirs, 2, False)]
    if config.log.file and os.path.exists(config.log.file):
        todo.append(("log.file", Path(config.log.file), 0, True))
    reports = Path(config.tls_rpt.state_dir) if config.tls_rpt.state_dir else None
    if reports is not None:   # the default, SPOOL/tlsrpt, goes with the spool
        todo.append(("tls_rpt.state_dir", reports, 1, True))
    for setting, path, depth, files in todo:
        try:
            if path == maildirs or path == reports:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            give_to(path, account.uid, account.gid, depth, files=files)
        except OSError as err:
            raise ConfigError(f"{path}: {setting}: cannot hand it over to server.user {account.user}: "
                              f"{err.strerror}") from None


def drop_privileges(account: Account) -> None:
    """For good: real, effective and saved IDs, and no supplementary group but the account's."""
    os.setgroups([account.gid])
    os.setresgid(account.gid, account.gid, account.gid)
    os.setresuid(account.uid, account.uid, account.uid)
    if os.getresuid() != (account.uid,) * 3 or os.getresgid() != (account.gid,) * 3:
        raise ConfigError(f"server.user: could not become {account.user} (uid {account.uid})")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise ConfigError(f"server.user: root privileges came back after becoming {account.user}")


def _used_after_start(config: Config) -> list[tuple[str, Path, bool]]:
    """(setting, path, written) of each file or folder the server opens again after start."""
    t, d, p, loc = config.tls, config.delivery, config.policy, config.local
    files = [("tls.cert_file", t.cert_file, False), ("tls.key_file", t.key_file, False),
             ("tls.ca_file", t.ca_file, False), ("tls.ca_path", t.ca_path, False),
             ("tls.crl_file", t.crl_file, False), ("delivery.client_cert_file", d.client_cert_file, False),
             ("delivery.client_key_file", d.client_key_file, False), ("policy.access_map", p.access_map, False),
             ("local.aliases", loc.aliases, False), ("delivery.route_file", d.route_file, False),
             ("spool.directory", config.spool.directory, True), ("local.maildir_root", loc.maildir_root, True),
             ("tls_rpt.state_dir", config.tls_rpt.state_dir, True), ("tls_rpt.ca_file", config.tls_rpt.ca_file, False),
             ("mta_sts.ca_file", config.mta_sts.ca_file, False), ("auth.users_file", config.auth.users_file, False)]
    if config.server.workers > 1:   # each worker (and each restarted one) opens these itself
        files += [("the config file (server.workers > 1)", config.path, False), ("log.file", config.log.file, True)]
    return [(name, Path(path), written) for name, path, written in files if path]


def check_reachable(config: Config, account: Account) -> None:
    """After the drop: what the server reads again must be readable (folders: listable), what
    it writes writable, as the account. A missing file is left to the checks that name what
    it should contain."""
    for setting, path, written in _used_after_start(config):
        try:
            st = path.stat()
        except PermissionError:
            st = None
        except OSError:
            continue
        need = os.R_OK | (os.W_OK if written else 0)
        if st is not None and stat.S_ISDIR(st.st_mode):
            need |= os.X_OK
        if st is not None and os.access(path, need):
            continue
        blocked = next((d for d in reversed(path.parents) if not os.access(d, os.X_OK)), None)
        if blocked is not None:
            raise ConfigError(f"{path}: {setting} is out of reach of server.user {account.user}: its folder "
                              f"{blocked} cannot be searched after the privilege drop; fix: "
                              f"chown {account.user} {blocked} (or chmod o+x {blocked})")
        what = "writable" if written else "readable"
        fix = f"chown {account.user} {path}"
        if setting.endswith("key_file"):
            fix += " (keep mode 0600)"
        elif not written:
            fix += f" (or chmod o+r {path})"
        raise ConfigError(f"{path}: {setting} is not {what} by server.user {account.user} after the "
                          f"privilege drop; fix: {fix}")


def check_tables(config: Config) -> None:
    """The routes, aliases and access map parse (the server builds them again, after the drop;
    the access map is shared within the process, so it is parsed once)."""
    from mailward.deliver.aliases import AliasError, AliasTable
    from mailward.deliver.routes import RouteError, RouteTable
    from mailward.policy.receive import ReceivePolicy

    try:
        RouteTable(config.delivery.route_file or None)
        AliasTable(config.local.aliases or None)
    except (RouteError, AliasError) as err:
        raise ConfigError(str(err)) from None
    ReceivePolicy.from_config(config)


def check_tls_files(config: Config) -> None:
    """``mailward ca check`` at start: errors stop the server (one line), warnings are logged."""
    from mailward.ca.check import check_config

    problems = check_config(config)
    errors = [p for p in problems if p.severity == "error"]
    for p in problems:
        if p.severity != "error":
            log.event(30, None, check="warning", file=p.file, problem=p.what, fix=p.fix)
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more: mailward ca check -c {config.path})" if len(errors) > 1 else ""
        raise ConfigError(f"{first.file}: {first.what}; fix: {first.fix}{more}")


def prepare(config: Config) -> Ready:
    check_tables(config)
    account = account_from_config(config)
    warning = root_rule(config, account)
    spool = Path(config.spool.directory)
    try:
        lock = SpoolLock.acquire(spool)
    except OSError as err:
        raise ConfigError(f"{config.path}: spool.directory: cannot lock {spool}: {err.strerror}") from None
    socks: list[socket.socket] = []
    try:
        socks = bind(config)
        # From the moment the PID file names us, queue commands and admins may signal us:
        # until the event loop installs its handlers, these must not kill a starting server
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_IGN)
        lock.write_pid(os.getpid())
        if account is not None and os.geteuid() == 0 and account.uid != 0:
            hand_over(config, account)
            drop_privileges(account)
            check_reachable(config, account)
            log.info(None, privileges="dropped", user=account.user, uid=account.uid, group=account.group,
                     gid=account.gid)
    except BaseException:
        for sock in socks:
            sock.close()
        lock.release()
        raise
    if warning:
        log.event(30, None, check="warning", file=str(config.path), problem=warning,
                  fix="set server.user to an unprivileged account (or server.allow_root = true)")
    return Ready(socks, lock, account)
