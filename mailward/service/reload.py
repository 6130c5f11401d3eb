"""SIGHUP: read the whole configuration file again, and use what can change while running.

Contract: :meth:`Reloader.reload` reads the file the server was started with, checks it as
start-up does (the TLS files as ``mailward ca check``, the tables, the access map), builds
new receiving components (:func:`mailward.service.build_receiving`) and, in the process
that delivers, new delivery tables, and only when all of that succeeded puts them in use:

* live: local users, aliases, domains, routes, the access map and the policy settings,
  certificates, keys, CA files and CRLs, the session limits and timers (for new sessions;
  open ones keep theirs: a session's timers and limits are taken when it starts), the host name, delivery settings, and ``[log]`` (the log file is
  reopened, which is what logrotate's ``postrotate ... kill -HUP`` expects);
* not live: :data:`RESTART_KEYS` (sockets already bound, the spool in use, the account
  already switched to, processes already started). Each one that changed is named in one
  line, ``reload: server.listen changed; restart to apply``, and its old value stays in use.

A file that does not load, or anything it names that does not build, changes nothing: one
line ``reload=failed, reason=...`` and everything in use is kept. No connection is dropped:
the listening sockets stay open, and open sessions keep going (their next command asks the
new policy).

With workers, the master reloads first (its queue runner) and sends SIGHUP on to the workers
only when the file loaded; each worker then reloads itself with ``announce`` off (the
restart lines and the service manager's RELOADING=1/READY=1 come from the master alone).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from mailward import config as config_mod
from mailward import log
from mailward.config import Config, ConfigError
from mailward.service import build_delivery, build_receiving
from mailward.service import notify
from mailward.service.startup import check_tls_files

# Settings whose change needs a restart, and why (what is already done with the old value).
RESTART_KEYS = {
    ("server", "listen"): "the sockets are bound",
    ("server", "workers"): "the workers are started",
    ("server", "user"): "privileges are dropped at start",
    ("server", "group"): "privileges are dropped at start",
    ("server", "allow_root"): "checked at start",
    ("spool", "directory"): "the spool is locked and in use",
    ("spool", "fsync"): "the spool is in use",
    ("delivery", "max_deliveries"): "the queue runner's limits are in use",
    ("delivery", "max_per_destination"): "the queue runner's limits are in use",
    ("delivery", "connection_idle"): "the connection pool is in use",
    ("delivery", "max_messages_per_connection"): "the connection pool is in use",
    # the TLS-RPT reporter (counts, state folder, sending schedule) is built once at start
    **{("tls_rpt", key): "the TLS-RPT reporter is built at start"
       for key in ("enabled", "organization", "contact", "from_address", "state_dir", "ca_file", "send_hour",
                   "check_interval", "retry_interval", "http_timeout", "keep_days", "sync_interval",
                   "compact_bytes")},
}


def restart_needed(old: Config, new: Config) -> list[str]:
    """The RESTART_KEYS whose value differs, as 'section.key'."""
    return [f"{section}.{key}" for section, key in RESTART_KEYS
            if getattr(getattr(old, section), key, None) != getattr(getattr(new, section), key, None)]


def keep_restart_settings(old: Config, new: Config) -> Config:
    """``new`` with the RESTART_KEYS of ``old``: the configuration actually in use."""
    sections = {}
    for section, key in RESTART_KEYS:
        if hasattr(getattr(old, section), key):
            sections.setdefault(section, {})[key] = getattr(getattr(old, section), key)
    return dataclasses.replace(new, **{name: dataclasses.replace(getattr(new, name), **values)
                                       for name, values in sections.items()})


def rebuild_runner(runner, config: Config) -> None:
    """Give the queue runner tables and settings built from ``config``; its spool, schedule,
    limits and open connections stay (deliveries under way finish with what they started)."""
    fresh = build_delivery(config, runner.spool).ctx
    old = runner.ctx
    ctx = dataclasses.replace(fresh, spool=old.spool, submit=old.submit, limits=old.limits, rng=old.rng,
                              clock=old.clock)
    ctx.outbound.pool = old.outbound.pool
    runner.ctx = ctx


class Reloader:
    """The SIGHUP handler of one process: ``server`` (an SMTPServer, or None in a master),
    ``runner`` (the queue runner in the process that delivers), ``announce`` (this process
    names restart keys and talks to the service manager)."""

    def __init__(self, config: Config, *, server=None, runner=None, announce: bool = True,
                 after: Callable[[Config], None] | None = None):
        self.config = config
        self.server = server
        self.runner = runner
        self.announce = announce
        self.after = after      # called with the new configuration once it is in use

    def __call__(self) -> None:
        self.reload()

    def reload(self) -> bool:
        if self.announce:
            notify.reloading()
        try:
            return self._reload()
        finally:
            if self.announce:
                notify.ready()

    def _reload(self) -> bool:
        try:
            new = config_mod.load(self.config.path)
            pending = restart_needed(self.config, new)
            new = keep_restart_settings(self.config, new)
            if self.announce:
                check_tls_files(new)
            receiving = None
            if self.server is not None:
                receiving = build_receiving(new, self.server.spool)
                receiving.policy.reload()   # the access map is shared per file: read it now
            elif self.runner is not None:   # a master: its workers will build this; check it once here
                build_receiving(new, self.runner.spool)
            if self.runner is not None:
                rebuild_runner(self.runner, new)
            log.setup_from_config(new)      # reopens the log file (logrotate)
        except ConfigError as err:
            log.event(40, None, reload="failed", reason=str(err), kept="the running configuration")
            return False
        if self.server is not None:
            self.server.swap(new, receiving)
        self.config = new
        if self.after is not None:
            self.after(new)
        if self.announce:
            for key in pending:
                section, name = key.split(".")
                log.event(30, None, **{"reload:": f"{key} changed; restart to apply "
                                                  f"({RESTART_KEYS[section, name]})"})
        log.info(None, reload="ok", config=str(new.path), users=len(new.local.users),
                 starttls=None if receiving is None else "on" if receiving.tls_context else "off")
        return True
