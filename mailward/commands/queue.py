"""``mailward queue``: list, show, flush, hold, release, delete, route — safe while the server runs.

The commands read the spool folder directly (it is the source of truth); ``flush`` asks a
running server to retry now with SIGUSR1 — the server that holds the spool's lock, whose pid
is in SPOOL/mailward.pid; a PID file nobody holds locked names no server, and no signal is
sent. The other commands take no lock: ``list`` and ``show`` only read, and ``hold``,
``release`` and ``delete`` each make one change (create or remove a ``.hold`` file, remove a
message's files) that the server copes with whether it runs or not, so they work the same
with the server up or down. A ``delete`` while that message is being delivered can still see
it delivered. ``list`` and
``show`` print when the next attempt is due (from the recorded attempts and the
``[delivery]`` retry settings, without the jitter) and why recipients are deferred;
``route DOMAIN`` shows where mail for a domain would go (route file, MX, addresses).

Every change (``hold``, ``release``, ``delete``, ``flush``) is logged once it is made, one line
per queue id, through the configured log (``[log]``: file, syslog or standard error), at
notice, in sendmail's form and naming who did it::

    KHRHCNKCJ34JNP: queue delete by root (uid 0)
    queue flush by alice (uid 1000)

(run through sudo, root's line also names the sudo user: ``by root (uid 0), sudo from alice
(uid 1000)``). A log that cannot be opened does not stop the action: the line goes to
standard error after a one-line warning.
"""

from __future__ import annotations

import errno
import os
import pwd
import signal
import sys
import time
from pathlib import Path

from mailward import config as config_mod
from mailward import log
from mailward.cli import UsageError
from mailward.spool.store import PID_FILE, Spool, running_server


def _spool(args) -> Spool:
    cfg = config_mod.load(args.config)
    args.cfg = cfg
    try:
        return Spool.from_settings(cfg.spool)
    except OSError as err:   # not a folder, not ours, a full disk: one line, not a traceback
        why = "it is not a folder" if err.errno == errno.EEXIST else err.strerror or str(err)
        raise UsageError(f"{cfg.spool.directory}: spool.directory cannot be opened: {why}; "
                         f"fix: check spool.directory in {cfg.path} and that this account may read it") from None


def _next_attempt(spool: Spool, env, cfg) -> float | None:
    """When the runner will try again (None: never tried, so: as soon as it sees it)."""
    from mailward.deliver.scheduler import RetryPolicy

    last = spool.last_attempt(env.queue_id)
    if last is None:
        return None
    attempts = max((r.attempts for r in env.recipients if not r.final), default=1)
    return RetryPolicy.from_config(cfg.delivery).next_attempt(env.received_at, last, attempts)


def _when(t: float | None, now: float) -> str:
    if t is None or t <= now:
        return "now"
    return "in " + _age(t - now)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"


def _state(spool: Spool, env) -> str:
    if spool.held(env.queue_id):
        return "hold"
    states = {r.state for r in env.recipients if not r.final}
    return "deferred" if "deferred" in states else "active"


def _list(args) -> int:
    spool = _spool(args)
    ids = spool.ids()
    print(f"{'QUEUE ID':<15} {'SIZE':>9} {'AGE':>7} {'STATE':<8} {'NEXT':>9} SENDER -> RECIPIENTS")
    now = time.time()
    for qid in ids:
        try:
            env = spool.load(qid)
        except (OSError, ValueError):
            continue  # delivered and removed while we looked
        rcpts = ", ".join(f"<{r.address}>" + ("" if r.state == "queued" else f" ({r.state}"
                          + (f": {r.detail}" if r.state == "deferred" and r.detail else "") + ")")
                          for r in env.recipients)
        state = _state(spool, env)
        nxt = "-" if state == "hold" else _when(_next_attempt(spool, env, args.cfg), now)
        print(f"{qid:<15} {env.content_size:>9} {_age(now - env.received_at):>7} {state:<8} {nxt:>9} "
              f"<{env.sender}> -> {rcpts}")
    print(f"-- {len(ids)} message{'s' if len(ids) != 1 else ''} in the queue")
    return 0


def _need(spool: Spool, qid: str) -> None:
    if not spool.exists(qid):
        raise UsageError(f"{spool.queue}: no message {qid} in the queue")


def _show(args) -> int:
    spool = _spool(args)
    _need(spool, args.id)
    env = spool.load(args.id)
    print(f"queue id:  {env.queue_id}\nstate:     {_state(spool, env)}\nsize:      {env.content_size}")
    print(f"received:  {time.strftime('%Y-%m-%d %H:%M:%S %z', time.localtime(env.received_at))} "
          f"from {env.client_name} [{env.client_addr}] (HELO {env.helo})")
    if env.tls:
        t = env.tls
        print(f"tls:       version={t.get('tls_version')} cipher={t.get('cipher')} bits={t.get('cipher_bits')} "
              f"verify={t.get('verify')}")
    print(f"sender:    <{env.sender}> {' '.join(f'{k}={v}' if v else k for k, v in env.sender_params.items())}")
    for r in env.recipients:
        params = " ".join(f"{k}={v}" if v else k for k, v in r.params.items() if not k.startswith("X-"))
        print(f"recipient: <{r.address}> {params} state={r.state} attempts={r.attempts} {r.detail}".rstrip())
    now = time.time()
    if not all(r.final for r in env.recipients):
        from mailward.deliver.scheduler import RetryPolicy

        expiry = env.received_at + RetryPolicy.from_config(args.cfg.delivery).give_up_after
        nxt = "held" if spool.held(env.queue_id) else _when(_next_attempt(spool, env, args.cfg), now)
        print(f"next try:  {nxt}; bounced if still undelivered after "
              f"{time.strftime('%Y-%m-%d %H:%M:%S %z', time.localtime(expiry))}")
    for h in spool.history(env.queue_id):
        try:
            addr = env.recipients[h["rcpt"]].address
        except (KeyError, IndexError, TypeError):
            continue
        print(f"attempt:   {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(h.get('at', 0)))} <{addr}> "
              f"{h.get('state')} {h.get('detail', '')}".rstrip())
    if args.content:
        print()
        for chunk in spool.content(args.id):
            print(chunk.decode("utf-8", "replace"), end="")
    return 0


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def who() -> tuple[str, dict]:
    """'root (uid 0)' for the invoking user (the real uid), plus the sudo user behind root."""
    uid = os.getuid()
    text, fields = f"{_user(uid)} (uid {uid})", {"user": _user(uid), "uid": uid}
    sudo_user, sudo_uid = os.environ.get("SUDO_USER"), os.environ.get("SUDO_UID", "")
    if uid == 0 and sudo_user and sudo_uid.isdigit():
        text += f", sudo from {sudo_user} (uid {sudo_uid})"
        fields.update(sudo_user=sudo_user, sudo_uid=int(sudo_uid))
    return text, fields


def _audit(args, action: str, qids: list[str | None]) -> None:
    """One log line per queue id (None: the whole queue) saying what was done and by whom."""
    if not getattr(args, "log_ready", False):
        try:
            log.setup_from_config(args.cfg)
        except config_mod.ConfigError as err:
            print(f"mailward: warning: {err}; logging to standard error", file=sys.stderr)
            log.setup()
        args.log_ready = True
    by, fields = who()
    for qid in qids:
        text = f"queue {action} by {by}"
        log.logger.log(log.NOTICE, f"{qid}: {text}" if qid else text,
                       extra={"fields": {"action": f"queue {action}", **fields}, "qid": qid})


def _flush(args) -> int:
    spool = _spool(args)
    if args.id:
        _need(spool, args.id)
    pidfile = spool.directory / PID_FILE
    pid = running_server(spool.directory)
    if pid is None:
        raise UsageError(f"{pidfile}: no running mailward server to flush the queue (none holds the "
                         f"spool's lock); fix: start it: mailward serve -c {args.config}")
    if pid == 0:
        raise UsageError(f"{pidfile}: the mailward server is still starting; fix: try again in a moment")
    if args.id:
        spool.release(args.id)
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError as err:
        raise UsageError(f"{pidfile}: cannot signal the mailward server (pid {pid}): {err.strerror}") from None
    _audit(args, "flush", [args.id])
    print("queue run requested")
    return 0


def _each_message(name: str, action: str, done: str):
    """hold / release / delete of one or more ids: every id is checked before any is changed."""
    def command(args) -> int:
        spool = _spool(args)
        ids = list(dict.fromkeys(args.ids))
        for qid in ids:
            _need(spool, qid)
        for qid in ids:
            getattr(spool, action)(qid)
            _audit(args, name, [qid])
            print(f"{qid}: {done}")
        return 0
    return command


_hold = _each_message("hold", "hold", "held")
_release = _each_message("release", "release", "released")
_delete = _each_message("delete", "remove", "deleted")


def _route(args) -> int:
    """Where mail for a domain goes: route file entry, then MX hosts and addresses."""
    import asyncio

    from mailward.deliver.routes import RouteError, RouteTable, next_hops
    from mailward.dns import DNSError, Resolver

    cfg = config_mod.load(args.config)
    d = cfg.delivery
    domain = args.domain.lower().rstrip(".")
    if domain in {x.lower() for x in cfg.local.domains}:
        print(f"{domain}: local (local.domains) -> Maildir under {cfg.local.maildir_root}")
        return 0
    try:
        route = RouteTable(d.route_file or None).route(domain)
        resolver = Resolver(list(d.resolver), timeout=d.dns_timeout)
    except (RouteError, ValueError) as err:
        raise UsageError(str(err)) from None
    if route is not None and route.kind == "local":
        print(f"{domain}: local (route {route.key} in {d.route_file})")
        return 0
    if route is not None and route.kind in ("error", "discard"):
        print(f"{domain}: route {route.key} -> {route.text}")
        return 0
    where = f"route {route.key} -> {route.text}" if route else "DNS (no route)"
    print(f"{domain}: {where}; resolver: {', '.join(d.resolver) or 'system (resolv.conf)'}")
    try:
        hops = asyncio.run(next_hops(route, domain, resolver, d.smtp_port))
    except DNSError as err:
        print(f"  {'deferred' if err.temporary else 'bounced'}: {err.code} {err.status} {err}")
        return 1
    for hop in hops:
        print(f"  {hop.preference:>5} {hop.name} [{hop.addr}]:{hop.port}")   # name: ${server_name}
    return 0


def register(subparsers) -> None:
    q = subparsers.add_parser("queue", help="look at and manage the mail queue",
                              description="Look at and manage the mail queue (safe while the server runs).")
    q.add_argument("-c", "--config", default=config_mod.default_path(), type=Path,
                   help="the TOML config file (default: $MAILWARD_CONFIG, else /etc/mailward/mailward.toml)")
    sub = q.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="id, size, age, state, sender and recipients of each message")
    p.set_defaults(func=_list)
    p = sub.add_parser("show", help="envelope, TLS facts and recipient states of one message")
    p.add_argument("id")
    p.add_argument("--content", action="store_true", help="also print the message")
    p.set_defaults(func=_show)
    p = sub.add_parser("flush", help="ask the running server to retry now (one message, or all)")
    p.add_argument("id", nargs="?")
    p.set_defaults(func=_flush)
    p = sub.add_parser("route", help="where mail for a domain goes (route file, MX hosts, addresses)")
    p.add_argument("domain")
    p.set_defaults(func=_route)
    for name, func, text in (("hold", _hold, "keep messages from being delivered"),
                             ("release", _release, "let held messages be delivered again"),
                             ("delete", _delete, "remove messages from the queue (no bounce)")):
        p = sub.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}; logged with the ids and "
                           "the invoking user (e.g. 'QID: queue " + name + " by root (uid 0)').")
        p.add_argument("ids", nargs="+", metavar="ID", help="queue ids, as mailward queue list prints them")
        p.set_defaults(func=func)
